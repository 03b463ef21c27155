/**
 * A linear layer y = x W^T + b, with W stored [out, in] as in PyTorch and Hugging Face
 * checkpoints, that can host one adapter. With the adapter absent, disabled or merged, the output
 * is the base computation and nothing else, so it matches the unadapted model bit for bit.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Adapter, LinearTarget } from "./Adapter.js"
import { ShapeMismatch } from "./Errors.js"
import type { Parameter } from "./Parameter.js"

export class Linear implements LinearTarget {
  readonly weight: tf.Variable<tf.Rank.R2>
  readonly bias: tf.Variable<tf.Rank.R1> | undefined
  /** The hosted adapter, if any. */
  adapter: Adapter | undefined = undefined
  /** When false the adapter is skipped (PEFT's `disable_adapter`). */
  adapterEnabled = true
  /** True while the adapter's delta is folded into `weight`. */
  merged = false
  /** The delta added by `merge`, kept only for variants whose delta depends on W. */
  private mergedDelta: tf.Tensor2D | undefined = undefined

  constructor(
    readonly name: string,
    weight: tf.Tensor2D,
    bias?: tf.Tensor1D,
    options: { readonly trainable?: boolean } = {}
  ) {
    const trainable = options.trainable ?? false
    if (bias !== undefined && bias.shape[0] !== weight.shape[0]) {
      throw new ShapeMismatch({ what: `${name}.bias`, expected: [weight.shape[0]], actual: bias.shape })
    }
    // Frozen variables are not recorded on the gradient tape, so full fine-tuning is opt-in.
    this.weight = tf.variable(weight, trainable, undefined, "float32") as tf.Variable<tf.Rank.R2>
    this.bias = bias === undefined ? undefined : (tf.variable(bias, trainable, undefined, "float32") as tf.Variable<tf.Rank.R1>)
  }

  get inFeatures(): number {
    return this.weight.shape[1]
  }

  get outFeatures(): number {
    return this.weight.shape[0]
  }

  /** Whether `apply` currently routes through the adapter. */
  get adapterActive(): boolean {
    return this.adapter !== undefined && this.adapterEnabled && !this.merged
  }

  /** x: [..., in] -> [..., out]. */
  apply(x: tf.Tensor, training = false): tf.Tensor {
    return tf.tidy(() => {
      const inFeatures = x.shape[x.shape.length - 1]
      if (inFeatures !== this.inFeatures) {
        throw new ShapeMismatch({ what: `input of ${this.name}`, expected: [-1, this.inFeatures], actual: x.shape })
      }
      const leading = x.shape.slice(0, -1)
      const x2 = (x.rank === 2 ? x : tf.reshape(x, [-1, this.inFeatures])) as tf.Tensor2D
      // Not tf.fused.matMul: tfjs-backend-wasm 4.22 computes transposeB + bias wrong (see backend-cpu's tests).
      // A plain transposed product: backends that want W^T kept (wasm) do that in their kernel.
      let y: tf.Tensor2D = tf.matMul(x2, this.weight, false, true)
      if (this.bias !== undefined) y = tf.add(y, this.bias)
      if (this.adapterActive) y = this.adapter!.forward(x2, y, this, training)
      return x.rank === 2 ? y : tf.reshape(y, [...leading, this.outFeatures])
    })
  }

  /** W <- W + delta, computed and added in float32. No-op when already merged or without adapter. */
  merge(): void {
    if (this.adapter === undefined || this.merged) return
    const delta = this.adapter.delta(this)
    if (!tf.util.arraysEqual(delta.shape, this.weight.shape)) {
      delta.dispose()
      throw new ShapeMismatch({ what: `delta of ${this.name}`, expected: this.weight.shape, actual: delta.shape })
    }
    tf.tidy(() => {
      this.weight.assign(tf.add(this.weight, delta))
    })
    if (this.adapter.deltaDependsOnWeight === true) this.mergedDelta = delta
    else delta.dispose()
    this.merged = true
  }

  /** W <- W - delta: undoes `merge` (exact up to float32 rounding of the add/subtract pair). */
  unmerge(): void {
    if (this.adapter === undefined || !this.merged) return
    const delta = this.mergedDelta ?? this.adapter.delta(this)
    tf.tidy(() => {
      this.weight.assign(tf.sub(this.weight, delta))
    })
    delta.dispose()
    this.mergedDelta = undefined
    this.merged = false
  }

  /** Marks the adapter as not merged without touching W (a COLA knot keeps the merge, starts a fresh link). */
  keepMerged(): void {
    this.mergedDelta?.dispose()
    this.mergedDelta = undefined
    this.merged = false
  }

  /** The base weights as named parameters (used by full fine-tuning). */
  baseParameters(): ReadonlyArray<Parameter> {
    const params: Array<Parameter> = [{ name: `${this.name}.weight`, variable: this.weight }]
    if (this.bias !== undefined) params.push({ name: `${this.name}.bias`, variable: this.bias })
    return params
  }

  /** Frees the layer's variables and its adapter. */
  dispose(): void {
    this.mergedDelta?.dispose()
    this.adapter?.dispose()
    this.adapter = undefined
    this.weight.dispose()
    this.bias?.dispose()
  }
}

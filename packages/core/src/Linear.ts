/**
 * A linear layer y = x W^T + b, with W stored [out, in] as in PyTorch and Hugging Face
 * checkpoints, that can host one adapter. With the adapter absent, disabled or merged, the output
 * is the base computation and nothing else, so it matches the unadapted model bit for bit.
 *
 * An adapter whose fresh state already stands for an update (`Adapter.initialDelta`, PiSSA's
 * s B0 A0) has it folded out of W while it is hosted: W holds the residual W - b0 a0, so the adapted
 * output at init is the output before. Detaching an unmerged adapter, or re-initialising it
 * (`reinitializeAdapter`), adds the fold back first; a merge consumes it (W then holds the
 * adapted weight). While such an adapter is disabled the layer adds x a0^T b0^T, so "disabled"
 * is still the model before the adapter (PEFT's `disable_adapter` would give the residual model).
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Adapter, AdapterFactors, LinearTarget } from "./Adapter.js"
import { ShapeMismatch } from "./Errors.js"
import type { Parameter } from "./Parameter.js"

export class Linear implements LinearTarget {
  readonly weight: tf.Variable<tf.Rank.R2>
  readonly bias: tf.Variable<tf.Rank.R1> | undefined
  private hosted: Adapter | undefined = undefined
  private enabled = true
  private isMerged = false
  /** The delta added by `merge`, kept only for variants whose delta depends on W. */
  private mergedDelta: tf.Tensor2D | undefined = undefined
  /** The scale the current merge used, so `unmerge` subtracts what was added. */
  private mergeScale = 1
  /** The hosted adapter's initial update, folded out of W (absent for LoRA, DoRA, VeRA). */
  private folded: AdapterFactors | undefined = undefined

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

  /** The hosted adapter, if any. */
  get adapter(): Adapter | undefined {
    return this.hosted
  }

  /** False while the adapter is skipped (PEFT's `disable_adapter`). */
  get adapterEnabled(): boolean {
    return this.enabled
  }

  /** True while the adapter's delta is folded into `weight`. */
  get merged(): boolean {
    return this.isMerged
  }

  /** Whether `apply` currently routes through the adapter. */
  get adapterActive(): boolean {
    return this.hosted !== undefined && this.enabled && !this.isMerged
  }

  /**
   * Hosts `adapter`, enabled and unmerged. An adapter hosted before is disposed first (with its
   * merge, if any, kept in W).
   */
  attach(adapter: Adapter): void {
    this.detach()
    this.hosted = adapter
    this.enabled = true
    this.fold()
  }

  /**
   * Removes and disposes the adapter; W keeps whatever was merged into it (an unmerged adapter's
   * folded initial update goes back into W).
   */
  detach(): void {
    this.unfold()
    this.hosted?.dispose()
    this.hosted = undefined
    this.forgetMerge()
  }

  /**
   * Re-initialises the hosted adapter from `seed` (a new COLA link) and refolds its initial update
   * from the weight as it is now: the fold of an unmerged adapter goes back into W first, a merged
   * one's merge is committed. For adapters without an initial update: `adapter.reinitialize(seed)`.
   */
  reinitializeAdapter(seed: number): void {
    const adapter = this.hosted
    if (adapter === undefined) return
    if (this.folded !== undefined) {
      this.unfold()
      this.forgetMerge()
    }
    adapter.reinitialize(seed)
    this.fold()
  }

  /** The folded initial update b0 a0 (copies the caller owns), or undefined. */
  initialDelta(): AdapterFactors | undefined {
    const folded = this.folded
    return folded === undefined ? undefined : { a: folded.a.clone(), b: folded.b.clone() }
  }

  /** W <- W - b0 a0 with the hosted adapter's initial update, if it has one. */
  private fold(): void {
    const initial = this.hosted?.initialDelta?.()
    if (initial === undefined) return
    const { a, b } = initial
    if (b.shape[0] !== this.outFeatures || a.shape[1] !== this.inFeatures || a.shape[0] !== b.shape[1]) {
      tf.dispose([a, b])
      throw new ShapeMismatch({ what: `initial delta of ${this.name}`, expected: this.weight.shape, actual: [b.shape[0], a.shape[1]] })
    }
    tf.tidy(() => {
      this.weight.assign(tf.sub(this.weight, tf.matMul(b, a)))
    })
    this.folded = { a, b }
  }

  /** Drops the fold: added back into W unless a merge consumed it. */
  private unfold(): void {
    const folded = this.folded
    if (folded === undefined) return
    if (!this.isMerged) {
      tf.tidy(() => {
        this.weight.assign(tf.add(this.weight, tf.matMul(folded.b, folded.a)))
      })
    }
    tf.dispose([folded.a, folded.b])
    this.folded = undefined
  }

  /** Skips (false) or applies (true) the adapter without removing it. */
  setAdapterEnabled(enabled: boolean): void {
    this.enabled = enabled
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
      // A plain transposed product: backends that want W^T kept (wasm) do that in their kernel.
      let y: tf.Tensor2D = tf.matMul(x2, this.weight, false, true)
      if (this.bias !== undefined) y = tf.add(y, this.bias)
      if (this.hosted !== undefined && this.enabled && !this.isMerged) y = this.hosted.forward(x2, y, this, training)
      // Disabled with a fold: the weight before the adapter, W_res + b0 a0.
      else if (this.folded !== undefined && !this.isMerged) y = tf.add(y, tf.matMul(tf.matMul(x2, this.folded.a, false, true), this.folded.b, false, true))
      return x.rank === 2 ? y : tf.reshape(y, [...leading, this.outFeatures])
    })
  }

  /**
   * W <- W + scale delta, computed and added in float32. No-op when already merged or without
   * adapter. `scale` below 1 is a step size (XGBLoRA merges each link that way); with a fold W gets
   * the weight before the fold plus `scale` times the net update, so it adds (1 - scale) b0 a0 too.
   */
  merge(scale = 1): void {
    const adapter = this.hosted
    if (adapter === undefined || this.isMerged) return
    const raw = adapter.delta(this)
    if (!tf.util.arraysEqual(raw.shape, this.weight.shape)) {
      raw.dispose()
      throw new ShapeMismatch({ what: `delta of ${this.name}`, expected: this.weight.shape, actual: raw.shape })
    }
    const folded = this.folded
    const delta = scale === 1
      ? raw
      : tf.tidy(() => {
        const stepped = tf.mul(raw, scale) as tf.Tensor2D
        return folded === undefined ? stepped : tf.add(stepped, tf.mul(tf.matMul(folded.b, folded.a), 1 - scale)) as tf.Tensor2D
      })
    if (delta !== raw) raw.dispose()
    tf.tidy(() => {
      this.weight.assign(tf.add(this.weight, delta))
    })
    // A stepped merge with a fold is not `scale * delta`: keep what was added, so unmerge subtracts exactly it.
    if (adapter.deltaDependsOnWeight === true || (folded !== undefined && scale !== 1)) this.mergedDelta = delta
    else delta.dispose()
    this.mergeScale = scale
    this.isMerged = true
  }

  /** W <- W - delta: undoes `merge` (exact up to float32 rounding of the add/subtract pair). */
  unmerge(): void {
    const adapter = this.hosted
    if (adapter === undefined || !this.isMerged) return
    const delta = this.mergedDelta ?? tf.tidy(() => (this.mergeScale === 1 ? adapter.delta(this) : (tf.mul(adapter.delta(this), this.mergeScale) as tf.Tensor2D)))
    tf.tidy(() => {
      this.weight.assign(tf.sub(this.weight, delta))
    })
    delta.dispose()
    this.mergedDelta = undefined
    this.isMerged = false
  }

  /**
   * Folds the adapter's update (times `scale`) into W for good (merging first if needed): afterwards the adapter
   * counts as unmerged again, so the caller re-initialises it before the next forward (a COLA knot).
   * A fold is consumed: W is now the adapted weight, the base the next initialisation starts from.
   */
  commitMerge(scale = 1): void {
    this.merge(scale)
    this.unfold()
    this.forgetMerge()
  }

  private forgetMerge(): void {
    this.mergedDelta?.dispose()
    this.mergedDelta = undefined
    this.isMerged = false
  }

  /** The base weights as named parameters (used by full fine-tuning). */
  baseParameters(): ReadonlyArray<Parameter> {
    const params: Array<Parameter> = [{ name: `${this.name}.weight`, variable: this.weight }]
    if (this.bias !== undefined) params.push({ name: `${this.name}.bias`, variable: this.bias })
    return params
  }

  /** Frees the layer's variables and its adapter. */
  dispose(): void {
    this.detach()
    this.weight.dispose()
    this.bias?.dispose()
  }
}

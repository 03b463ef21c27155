/**
 * RMSNorm (Llama): y = x / sqrt(mean(x^2) + eps) * weight, over the last axis. Computed in float32,
 * as HF does after upcasting, so there is nothing to upcast here.
 */
import { backendOps, type Parameter } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { variableFrom, type WeightSource } from "./internal/WeightSource.js"

export class RmsNorm {
  readonly weight: tf.Variable

  constructor(
    /** HF module name, e.g. `model.layers.0.input_layernorm`. */
    readonly name: string,
    readonly size: number,
    readonly eps: number,
    source: WeightSource
  ) {
    this.weight = variableFrom(source, source.take(`${name}.weight`, [size], "norm-weight"))
  }

  /** x [..., size] -> same shape. A backend may compute it its own way (core's `BackendOps.rmsNorm`). */
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const fast = backendOps().rmsNorm?.(x, this.weight, this.eps)
      if (fast !== undefined) return fast
      const meanSquare = tf.mean(tf.square(x), -1, true)
      return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, this.eps))), this.weight)
    })
  }

  parameters(): ReadonlyArray<Parameter> {
    return [{ name: `${this.name}.weight`, variable: this.weight }]
  }

  dispose(): void {
    this.weight.dispose()
  }
}

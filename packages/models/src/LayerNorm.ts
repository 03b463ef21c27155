/**
 * LayerNorm (OPT): y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis, with the
 * biased variance as PyTorch uses. Without elementwise affine (`layer_norm_elementwise_affine:
 * false`) there are no weight and bias tensors at all, as in HF.
 */
import type { Parameter } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { variableFrom, type WeightSource } from "./internal/WeightSource.js"

export class LayerNorm {
  readonly weight: tf.Variable | undefined
  readonly bias: tf.Variable | undefined

  constructor(
    /** HF module name, e.g. `model.decoder.layers.0.self_attn_layer_norm`. */
    readonly name: string,
    readonly size: number,
    readonly eps: number,
    readonly affine: boolean,
    source: WeightSource
  ) {
    this.weight = affine ? variableFrom(source, source.take(`${name}.weight`, [size], "norm-weight")) : undefined
    this.bias = affine ? variableFrom(source, source.take(`${name}.bias`, [size], "norm-bias")) : undefined
  }

  /** x [..., size] -> same shape. */
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const { mean, variance } = tf.moments(x, -1, true)
      let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps)))
      if (this.weight !== undefined) y = tf.mul(y, this.weight)
      if (this.bias !== undefined) y = tf.add(y, this.bias)
      return y
    })
  }

  parameters(): ReadonlyArray<Parameter> {
    const params: Array<Parameter> = []
    if (this.weight !== undefined) params.push({ name: `${this.name}.weight`, variable: this.weight })
    if (this.bias !== undefined) params.push({ name: `${this.name}.bias`, variable: this.bias })
    return params
  }

  dispose(): void {
    this.weight?.dispose()
    this.bias?.dispose()
  }
}

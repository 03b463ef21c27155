/**
 * A lookup table [num, dim] (token or learned position embeddings), named like HF's `nn.Embedding`
 * (`model.embed_tokens`). For a tied output head the same table is also the head's weight.
 */
import type { Parameter } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { variableFrom, type WeightSource } from "./internal/WeightSource.js"

export class Embedding {
  readonly weight: tf.Variable<tf.Rank.R2>

  constructor(
    readonly name: string,
    readonly num: number,
    readonly dim: number,
    source: WeightSource
  ) {
    this.weight = variableFrom(source, source.take(`${name}.weight`, [num, dim], "matrix")) as tf.Variable<tf.Rank.R2>
  }

  /**
   * ids [...] int32 -> [..., dim]. A frozen table (the usual PEFT case) is read with a gather. A
   * trainable one uses a one-hot matMul instead: gather's gradient needs UnsortedSegmentSum, which
   * the wasm backend lacks, while a matMul's gradient runs everywhere. That costs a [tokens, num]
   * one-hot per call, fine for small vocabularies and full fine-tuning of small models.
   */
  lookup(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const intIds = ids.dtype === "int32" ? ids : tf.cast(ids, "int32")
      if (!this.weight.trainable) return tf.gather(this.weight, intIds)
      const flat = tf.reshape(intIds, [-1])
      // int32 one-hot cast to float32: tfjs-backend-wasm 4.22's OneHot ignores a float32 dtype.
      const onehot = tf.cast(tf.oneHot(flat, this.num), "float32")
      return tf.reshape(tf.matMul(onehot, this.weight), [...ids.shape, this.dim])
    })
  }

  /** Rows start .. start + count as [count, dim]: contiguous positions need no gather. */
  rows(start: number, count: number): tf.Tensor2D {
    return tf.slice(this.weight, [start, 0], [count, this.dim])
  }

  parameters(): ReadonlyArray<Parameter> {
    return [{ name: `${this.name}.weight`, variable: this.weight }]
  }

  dispose(): void {
    this.weight.dispose()
  }
}

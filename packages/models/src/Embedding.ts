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

  /** ids [...] int32 -> [..., dim]. */
  lookup(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.gather(this.weight, ids.dtype === "int32" ? ids : tf.cast(ids, "int32")))
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

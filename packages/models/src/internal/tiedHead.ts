/**
 * Logits through a head tied to the token embedding: h [n, D] times E^T, E [V, D].
 *
 * On tfjs-backend-wasm 4.22, matMul reaches XNNPACK only when neither operand is transposed (and
 * the batch is 1); any transposed operand falls back to a naive blocked loop, measured 9x slower
 * for a [512, 256] x [256, 1024] product. So on wasm, with a frozen embedding, the forward uses a
 * kept transpose E^T (E's size in memory once more; rebuilt when the variable is assigned, as its
 * dataId changes) and a custom gradient computes dh = dy E, also without a transpose. A trainable
 * embedding (full fine-tuning) takes the plain path, so E gets its gradient. Other backends
 * transpose inside the kernel for free.
 */
import * as tf from "@tensorflow/tfjs-core"

export class TiedHead {
  private transposed: tf.Tensor2D | undefined = undefined
  private transposedOf: object | undefined = undefined

  constructor(private readonly embedding: tf.Variable<tf.Rank.R2>) {}

  /** h [n, D] -> logits [n, V]. */
  apply(h: tf.Tensor2D): tf.Tensor2D {
    if (tf.getBackend() !== "wasm" || this.embedding.trainable) return tf.matMul(h, this.embedding, false, true)
    const embedding = this.embedding
    const transposed = this.transposedEmbedding()
    const head = tf.customGrad<tf.Tensor2D>((...inputs) => ({
      value: tf.matMul(inputs[0] as tf.Tensor2D, transposed),
      gradFunc: (dy) => tf.matMul(dy, embedding)
    }))
    return head(h)
  }

  private transposedEmbedding(): tf.Tensor2D {
    if (this.transposed === undefined || this.transposedOf !== this.embedding.dataId) {
      this.transposed?.dispose()
      this.transposed = tf.keep(tf.tidy(() => tf.transpose(this.embedding)))
      this.transposedOf = this.embedding.dataId
    }
    return this.transposed
  }

  dispose(): void {
    this.transposed?.dispose()
    this.transposed = undefined
    this.transposedOf = undefined
  }
}

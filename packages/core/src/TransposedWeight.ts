/**
 * x W^T for a frozen weight W [out, in] (PyTorch's layout) on backends that want untransposed
 * products (see `MatMul.ts`): keeps W^T [in, out] and differentiates by hand, dx = dy W, so
 * neither direction transposes anything per step. On wasm a kept operand also keeps its packed
 * XNNPACK operator, so W is packed once, not every step.
 *
 * The copy costs W's size in memory once more. It is rebuilt when W is assigned (merge, a COLA
 * knot, a loaded checkpoint), detected by W's dataId changing, so it can never be stale. A
 * trainable W (full fine-tuning) takes `matMul2d`, which also yields W's gradient.
 */
import * as tf from "@tensorflow/tfjs-core"
import { matMul2d, prefersPlainMatMul } from "./MatMul.js"

export class TransposedWeight {
  private transposed: tf.Tensor2D | undefined = undefined
  private transposedOf: object | undefined = undefined

  constructor(private readonly weight: tf.Variable<tf.Rank.R2>) {}

  /** x [n, in] -> x W^T [n, out]. */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    const weight = this.weight
    if (weight.trainable || !prefersPlainMatMul()) {
      this.release()
      return matMul2d(x, weight, false, true)
    }
    const transposed = this.current()
    const product = tf.customGrad<tf.Tensor2D>((input) => ({
      value: tf.matMul<tf.Tensor2D>(input as tf.Tensor2D, transposed),
      gradFunc: (dy: tf.Tensor2D) => tf.matMul(dy, weight)
    }))
    return product(x) as tf.Tensor2D
  }

  /** Frees the kept transpose (rebuilt on the next `apply` that needs it). */
  release(): void {
    this.transposed?.dispose()
    this.transposed = undefined
    this.transposedOf = undefined
  }

  private current(): tf.Tensor2D {
    if (this.transposed === undefined || this.transposedOf !== this.weight.dataId) {
      this.release()
      this.transposed = tf.keep(tf.tidy(() => tf.transpose(this.weight) as tf.Tensor2D))
      this.transposedOf = this.weight.dataId
    }
    return this.transposed
  }
}

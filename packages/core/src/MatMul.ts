/**
 * Matrix products that stay on each backend's fast path.
 *
 * tfjs-backend-wasm 4.22 sends a matMul to XNNPACK only when neither operand is transposed and the
 * batch is 1; anything else falls back to a scalar blocked loop (batch_mat_mul_impl.cc's
 * slow_batch_matmul), several times slower. tfjs's own matMul gradient asks for transposed
 * products, so on wasm even a plain `x W` trains on the slow path. `matMul2d` materialises the
 * transposed operand instead (choosing the cheaper of the two ways to write the product), in the
 * forward and in its gradient. Other backends transpose inside the kernel for free and get
 * `tf.matMul` unchanged.
 */
import * as tf from "@tensorflow/tfjs-core"

/** Whether the active backend runs transposed or batched matmuls far slower than plain 2D ones. */
export const prefersPlainMatMul = (): boolean => tf.getBackend() === "wasm"

const size = (t: tf.Tensor): number => t.size

/**
 * op(a) op(b) using only untransposed kernels: either transpose the operands that need it, or
 * compute the transposed product op(b)^T op(a)^T and transpose the result, whichever moves fewer
 * elements.
 */
export const plainProduct = (a: tf.Tensor2D, b: tf.Tensor2D, transposeA: boolean, transposeB: boolean): tf.Tensor2D =>
  tf.tidy((): tf.Tensor2D => {
    if (!transposeA && !transposeB) return tf.matMul(a, b)
    const rows = transposeA ? a.shape[1] : a.shape[0]
    const cols = transposeB ? b.shape[0] : b.shape[1]
    const direct = (transposeA ? size(a) : 0) + (transposeB ? size(b) : 0)
    const flipped = (transposeB ? 0 : size(b)) + (transposeA ? 0 : size(a)) + rows * cols
    if (direct <= flipped) {
      return tf.matMul(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b)
    }
    // (op(a) op(b))^T = op(b)^T op(a)^T: b is transposed unless it already was, likewise a.
    return tf.transpose(tf.matMul(transposeB ? b : tf.transpose(b), transposeA ? a : tf.transpose(a))) as tf.Tensor2D
  })

/**
 * a [m, k] (or [k, m] with `transposeA`) times b [k, n] (or [n, k] with `transposeB`): [m, n].
 * Same values and gradients as `tf.matMul`; on wasm every product, forward and backward, is an
 * untransposed XNNPACK one.
 */
export const matMul2d = (a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false): tf.Tensor2D => {
  if (!prefersPlainMatMul()) return tf.matMul(a, b, transposeA, transposeB)
  const product = tf.customGrad((x, y, save) => {
    const left = x as tf.Tensor2D
    const right = y as tf.Tensor2D
    ;(save as tf.GradSaveFunc)([left, right])
    return {
      value: plainProduct(left, right, transposeA, transposeB),
      gradFunc: (dy: tf.Tensor2D, saved: Array<tf.Tensor>) => {
        const [sa, sb] = saved as [tf.Tensor2D, tf.Tensor2D]
        // tfjs's BatchMatMul gradient table, with every product routed through plainProduct.
        if (!transposeA && !transposeB) return [plainProduct(dy, sb, false, true), plainProduct(sa, dy, true, false)]
        if (!transposeA && transposeB) return [plainProduct(dy, sb, false, false), plainProduct(dy, sa, true, false)]
        if (transposeA && !transposeB) return [plainProduct(sb, dy, false, true), plainProduct(sa, dy, false, false)]
        return [plainProduct(sb, dy, true, true), plainProduct(dy, sa, true, true)]
      }
    }
  })
  return product(a, b) as tf.Tensor2D
}

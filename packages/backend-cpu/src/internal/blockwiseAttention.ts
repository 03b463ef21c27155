/**
 * softmax(q k^T + bias) v one (batch row, kv head) block at a time: the wasm backend's `attention`
 * op (core's `BackendOps`), because tfjs-backend-wasm's batched matmul is slow (see
 * `transposeFreeMatMul.ts`). Each block is a handful of plain 2D products (XNNPACK) and the
 * [g * t, L] scores and probabilities of one block at a time, freed before the next block: nothing
 * of size [b, heads, t, L] is ever kept.
 *
 * The gradient is written by hand (FlashAttention's recipe): only q, k, v and the output are saved;
 * the backward recomputes each block's probabilities, and uses rowsum(dP * P) = rowsum(dO * O),
 * computed once for all blocks. Every product is arranged so that no big operand is transposed:
 * the transposed gradients dK^T = Q^T dS and dV^T = dO^T P come out [d, L] and only those small
 * results are transposed back.
 */
import * as tf from "@tensorflow/tfjs-core"

/** Whether `bias` (broadcastable to [b, heads, t, L]) is shared by all heads, as `attentionBias` builds it. */
export const blockwiseSupports = (bias: tf.Tensor4D | undefined): boolean => bias === undefined || bias.shape[1] === 1

interface Layout {
  readonly b: number
  readonly heads: number
  readonly t: number
  readonly d: number
  readonly kvHeads: number
  readonly length: number
  /** Query heads per kv head. */
  readonly groups: number
}

/** Row block `index` of a [blocks, rows, cols] tensor, as [rows, cols]. */
const block = (x: tf.Tensor3D, index: number): tf.Tensor2D => {
  const [, rows, cols] = x.shape
  return tf.reshape(tf.slice(x, [index, 0, 0], [1, rows, cols]), [rows, cols])
}

/** The bias rows of batch row `bi`, [1, t or 1, L], or undefined. */
const biasRows = (bias: tf.Tensor4D | undefined, bi: number): tf.Tensor3D | undefined => {
  if (bias === undefined) return undefined
  const [bb, , bt, bl] = bias.shape
  return tf.reshape(bb === 1 ? bias : tf.slice(bias, [bi, 0, 0, 0], [1, 1, bt, bl]), [1, bt, bl])
}

/** Probabilities of one block: softmax(Q_j K_j^T + bias) [g * t, L] from Q_j [g * t, d] and K_j^T [d, L]. */
const probabilities = (qj: tf.Tensor2D, ktj: tf.Tensor2D, bias: tf.Tensor3D | undefined, layout: Layout): tf.Tensor2D => {
  const { groups, t, length } = layout
  let scores: tf.Tensor = tf.matMul(qj, ktj)
  if (bias !== undefined) scores = tf.reshape(tf.add(tf.reshape(scores, [groups, t, length]), bias), [groups * t, length])
  return tf.softmax(scores) as tf.Tensor2D
}

/** The `attention` op: undefined (the caller's plain form) for a bias that differs per head. */
export const blockwiseAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D | undefined): tf.Tensor4D | undefined =>
  blockwiseSupports(bias) ? blockwiseAttend(q, k, v, bias) : undefined

/** q [b, heads, t, d] (scaled, rotated), k and v [b, kvHeads, L, d]: [b, heads, t, d]. */
export const blockwiseAttend = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D | undefined): tf.Tensor4D => {
  const [b, heads, t, d] = q.shape
  const kvHeads = k.shape[1]
  const length = k.shape[2]
  const layout: Layout = { b, heads, t, d, kvHeads, length, groups: heads / kvHeads }
  const blocks = b * kvHeads
  const rows = layout.groups * t
  // Query head h = kvHead * g + i, so per kv head the g query heads are g * t contiguous rows.
  const attention = tf.customGrad((qIn, kIn, vIn, save) => {
    const q3 = tf.reshape(qIn as tf.Tensor, [blocks, rows, d]) as tf.Tensor3D
    const k3 = tf.reshape(kIn as tf.Tensor, [blocks, length, d]) as tf.Tensor3D
    const v3 = tf.reshape(vIn as tf.Tensor, [blocks, length, d]) as tf.Tensor3D
    const kt = tf.transpose(k3, [0, 2, 1])
    const outputs: Array<tf.Tensor2D> = []
    for (let j = 0; j < blocks; j++) {
      outputs.push(tf.tidy(() => {
        const probs = probabilities(block(q3, j), block(kt, j), biasRows(bias, Math.floor(j / kvHeads)), layout)
        return tf.matMul(probs, block(v3, j))
      }))
    }
    const out = tf.reshape(tf.stack(outputs), [b, heads, t, d]) as tf.Tensor4D
    // The bias too: it belongs to the model's forward scope, which ends before the backward runs.
    ;(save as tf.GradSaveFunc)(bias === undefined ? [q3, k3, v3, out] : [q3, k3, v3, out, bias])
    return {
      value: out,
      gradFunc: (dy: tf.Tensor4D, saved: Array<tf.Tensor>) => {
        const [sq, sk, sv, so, sbias] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor4D, tf.Tensor4D | undefined]
        const dout = tf.reshape(dy, [blocks, rows, d]) as tf.Tensor3D
        // rowsum(dP * P) for every row of every block, [blocks, rows, 1].
        const delta = tf.sum(tf.mul(dout, tf.reshape(so, [blocks, rows, d])), -1, true) as tf.Tensor3D
        const skt = tf.transpose(sk, [0, 2, 1])
        const svt = tf.transpose(sv, [0, 2, 1])
        const sqt = tf.transpose(sq, [0, 2, 1])
        const doutT = tf.transpose(dout, [0, 2, 1])
        const dq: Array<tf.Tensor2D> = []
        const dkt: Array<tf.Tensor2D> = []
        const dvt: Array<tf.Tensor2D> = []
        for (let j = 0; j < blocks; j++) {
          const [dqj, dktj, dvtj] = tf.tidy(() => {
            const probs = probabilities(block(sq, j), block(skt, j), biasRows(sbias, Math.floor(j / kvHeads)), layout)
            const dprobs = tf.matMul(block(dout, j), block(svt, j))
            const dscores = tf.mul(probs, tf.sub(dprobs, block(delta, j))) as tf.Tensor2D
            return [tf.matMul(dscores, block(sk, j)), tf.matMul(block(sqt, j), dscores), tf.matMul(block(doutT, j), probs)]
          })
          dq.push(dqj!)
          dkt.push(dktj!)
          dvt.push(dvtj!)
        }
        return [
          tf.reshape(tf.stack(dq), q.shape),
          tf.reshape(tf.transpose(tf.stack(dkt), [0, 2, 1]), k.shape),
          tf.reshape(tf.transpose(tf.stack(dvt), [0, 2, 1]), v.shape)
        ]
      }
    }
  })
  return attention(q, k, v) as tf.Tensor4D
}

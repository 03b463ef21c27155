/**
 * RoPE layouts of q/k projection weights. llama2.c (and Meta's original checkpoints) rotate
 * consecutive pairs (2i, 2i + 1) of each head; Hugging Face rotates halves (i, i + d/2). The two
 * compute the same attention when each head's output rows are permuted: HF row `j * d/2 + i` is
 * interleaved row `2i + j` (transformers' `convert_llama_weights_to_hf.py` permute). Attention scores
 * only see dot products of rotated q and k within a head, so permuting both q and k rows the same way
 * leaves them unchanged.
 */
import * as tf from "@tensorflow/tfjs-core"

const permuteRows = <T extends tf.Tensor>(weight: T, numHeads: number, toHalf: boolean): T =>
  tf.tidy(() => {
    const [rows, ...rest] = weight.shape
    const headDim = rows! / numHeads
    if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
      throw new Error(`cannot permute ${rows} rows into ${numHeads} heads of even size`)
    }
    const width = rest.reduce((a, b) => a * b, 1)
    // interleaved [heads, d/2, 2, width] <-> half [heads, 2, d/2, width]
    const from = toHalf ? [numHeads, headDim / 2, 2, width] : [numHeads, 2, headDim / 2, width]
    return tf.reshape(tf.transpose(tf.reshape(weight, from), [0, 2, 1, 3]), weight.shape) as T
  })

/** q_proj/k_proj weight [heads * headDim, in] (or bias [heads * headDim]) from the interleaved to the HF (half) layout. */
export const interleavedToHalf = <T extends tf.Tensor>(weight: T, numHeads: number): T => permuteRows(weight, numHeads, true)

/** The inverse: HF (half) layout to interleaved (llama2.c) layout. */
export const halfToInterleaved = <T extends tf.Tensor>(weight: T, numHeads: number): T => permuteRows(weight, numHeads, false)

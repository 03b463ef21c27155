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

/**
 * The HF (half) row order of a q_proj/k_proj with `numHeads` heads of `headDim` rows kept in the
 * interleaved layout: HF row `i` is interleaved row `order[i]` (what `interleavedToHalf` gathers).
 */
export const interleavedToHalfOrder = (numHeads: number, headDim: number): ReadonlyArray<number> => {
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`cannot permute rows of heads of odd size ${headDim}`)
  const half = headDim / 2
  return Array.from({ length: numHeads * headDim }, (_, row) => {
    const head = Math.floor(row / headDim)
    const within = row % headDim
    // HF row j * d/2 + i of a head is interleaved row 2i + j.
    return head * headDim + 2 * (within % half) + Math.floor(within / half)
  })
}

const ROPE_MODULE = /^model\.layers\.\d+\.self_attn\.(q|k)_proj$/

/**
 * The `AdaptableModel.peftRowOrder` of a Llama-family model: undefined for HF-layout ("half") models;
 * for llama2.c ("interleaved") models, q_proj/k_proj rows go to HF's half order, so PEFT adapters
 * match the model `saveHfModel` writes (and the HF checkpoint of the same model).
 */
export const ropePeftRowOrder = (config: {
  readonly ropeLayout: "half" | "interleaved"
  readonly numAttentionHeads: number
  readonly numKeyValueHeads: number
  readonly headDim: number
}): ((moduleName: string) => ReadonlyArray<number> | undefined) | undefined => {
  if (config.ropeLayout !== "interleaved") return undefined
  const q = interleavedToHalfOrder(config.numAttentionHeads, config.headDim)
  const k = interleavedToHalfOrder(config.numKeyValueHeads, config.headDim)
  return (moduleName) => {
    const match = ROPE_MODULE.exec(moduleName)
    return match === null ? undefined : match[1] === "q" ? q : k
  }
}

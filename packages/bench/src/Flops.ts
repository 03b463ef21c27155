/**
 * Analytic FLOP count of one LoRA training step of a Llama stack, for achieved GFLOP/s. Only matrix
 * products are counted (a multiply-add is 2 FLOPs); norms, RoPE, softmax, SiLU, the loss and the
 * optimizer update are O(tokens x width) and left out, so the figure slightly understates the work.
 *
 * With N = batch x seqLen tokens, W = the number of weights in every linear layer (q, k, v, o,
 * gate, up, down of each layer, plus the output head, tied or not: a tied head still multiplies),
 * and per adapted layer of shape [out, in] a rank-r pair A [r, in], B [out, r]:
 *
 *   forward   = 2 N W                                   every linear layer
 *             + layers x 2 x 2 b heads t^2 headDim      Q K^T and P V, full t x t (no causal saving:
 *                                                       both implementations compute the square)
 *             + sum over adapted 2 N r (in + out)       x A^T, then (x A^T) B^T
 *   backward  = 2 N W                                   input gradients only: frozen weights get none
 *             + 2 x attention forward                   gradients of Q, K, V
 *             + 2 x LoRA forward                        grads of both factors and of their inputs
 *
 * so one step is 4 N W + 3 x attention + 3 x LoRA (where the LoRA terms are tiny at r = 8).
 */
import type { LlamaConfig } from "@peftkit/models"

export interface StepFlops {
  /** Every linear layer's weights, head included. */
  readonly linearWeights: number
  readonly forwardLinear: number
  readonly forwardAttention: number
  readonly forwardLora: number
  readonly backward: number
  readonly total: number
}

export interface FlopsInput {
  readonly config: Pick<LlamaConfig, "vocabSize" | "hiddenSize" | "intermediateSize" | "numHiddenLayers" | "numAttentionHeads" | "numKeyValueHeads" | "headDim">
  readonly batch: number
  readonly seqLen: number
  readonly rank: number
  /** Module suffixes with an adapter, e.g. ["q_proj", "v_proj"]. */
  readonly targetModules: ReadonlyArray<string>
}

/** [out, in] of each per-layer projection, by HF module suffix. */
export const projectionShapes = (config: FlopsInput["config"]): Readonly<Record<string, readonly [number, number]>> => {
  const { hiddenSize: d, intermediateSize: ffn, numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim } = config
  return {
    q_proj: [heads * headDim, d],
    k_proj: [kvHeads * headDim, d],
    v_proj: [kvHeads * headDim, d],
    o_proj: [d, heads * headDim],
    gate_proj: [ffn, d],
    up_proj: [ffn, d],
    down_proj: [d, ffn]
  }
}

export const loraStepFlops = ({ config, batch, seqLen, rank, targetModules }: FlopsInput): StepFlops => {
  const tokens = batch * seqLen
  const projections = projectionShapes(config)
  const perLayer = Object.values(projections).reduce((sum, [out, inp]) => sum + out * inp, 0)
  const linearWeights = config.numHiddenLayers * perLayer + config.vocabSize * config.hiddenSize
  const forwardLinear = 2 * tokens * linearWeights
  const forwardAttention = config.numHiddenLayers * 2 * 2 * batch * config.numAttentionHeads * seqLen * seqLen * config.headDim
  const loraPerLayer = targetModules.reduce((sum, name) => {
    const shape = projections[name]
    if (shape === undefined) throw new RangeError(`unknown target module '${name}'`)
    return sum + 2 * tokens * rank * (shape[0] + shape[1])
  }, 0)
  const forwardLora = config.numHiddenLayers * loraPerLayer
  const backward = forwardLinear + 2 * forwardAttention + 2 * forwardLora
  return { linearWeights, forwardLinear, forwardAttention, forwardLora, backward, total: forwardLinear + forwardAttention + forwardLora + backward }
}

/** GFLOP/s of `flops` done in `ms` milliseconds. */
export const gflopsPerSecond = (flops: number, ms: number): number => flops / (ms / 1000) / 1e9

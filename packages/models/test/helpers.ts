/**
 * Tiny configs and an independent float64 reference implementation of Llama and OPT (plain loops,
 * one unpadded sequence, no tfjs), written from HF's modeling code, for tests to compare against.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { LlamaConfig, OptConfig } from "../src/ModelConfig.js"

export const tinyLlama = (overrides: Partial<LlamaConfig> = {}): LlamaConfig => ({
  modelType: "llama",
  vocabSize: 40,
  hiddenSize: 24,
  intermediateSize: 40,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 6,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxPositionEmbeddings: 64,
  tieWordEmbeddings: true,
  attentionBias: false,
  ropeLayout: "half",
  bosTokenId: 1,
  eosTokenId: [2],
  ...overrides
})

export const tinyOpt = (overrides: Partial<OptConfig> = {}): OptConfig => ({
  modelType: "opt",
  vocabSize: 40,
  hiddenSize: 24,
  ffnDim: 48,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  maxPositionEmbeddings: 32,
  doLayerNormBefore: true,
  wordEmbedProjDim: 24,
  enableBias: true,
  layerNormElementwiseAffine: true,
  activationFunction: "relu",
  padTokenId: 1,
  bosTokenId: 2,
  eosTokenId: [2],
  tieWordEmbeddings: true,
  ...overrides
})

/** Random weights for every tensor of a state dict (norms and biases perturbed so they matter). */
export const randomize = (state: Record<string, tf.Tensor>, seed: number, std = 0.3): Map<string, tf.Tensor> => {
  const out = new Map<string, tf.Tensor>()
  Object.entries(state).forEach(([name, tensor], i) => {
    const isNormWeight = tensor.rank === 1 && /norm\.weight$/.test(name)
    const noise = tf.randomNormal(tensor.shape, 0, isNormWeight ? 0.2 : std, "float32", seed * 1000 + i)
    out.set(name, isNormWeight ? tf.tidy(() => tf.add(noise, 1)) : noise)
    if (isNormWeight) noise.dispose()
    tensor.dispose()
  })
  return out
}

export const disposeMap = (weights: Map<string, tf.Tensor>): void => {
  for (const tensor of weights.values()) tensor.dispose()
}

export const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor): number =>
  tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!)

// ---------------------------------------------------------------------------------------------
// float64 reference

type Vec = Array<number>
type Mat = Array<Vec>
type Weights = Map<string, tf.Tensor>

const mat = (w: Weights, name: string): Mat => w.get(name)!.arraySync() as Mat
const vec = (w: Weights, name: string): Vec | undefined => (w.has(name) ? (w.get(name)!.arraySync() as Vec) : undefined)
const dot = (a: Vec, b: Vec): number => a.reduce((s, v, i) => s + v * b[i]!, 0)
/** x [t, in] W^T [out, in] + b. */
const linear = (x: Mat, w: Mat, b?: Vec): Mat => x.map((row) => w.map((wr, o) => dot(row, wr) + (b?.[o] ?? 0)))
const add = (a: Mat, b: Mat): Mat => a.map((row, i) => row.map((v, j) => v + b[i]![j]!))
const rmsNorm = (x: Mat, w: Vec, eps: number): Mat =>
  x.map((row) => {
    const r = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / row.length + eps)
    return row.map((v, j) => v * r * w[j]!)
  })
const layerNorm = (x: Mat, w: Vec | undefined, b: Vec | undefined, eps = 1e-5): Mat =>
  x.map((row) => {
    const mean = row.reduce((s, v) => s + v, 0) / row.length
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / row.length
    return row.map((v, j) => ((v - mean) / Math.sqrt(variance + eps)) * (w?.[j] ?? 1) + (b?.[j] ?? 0))
  })
const softmax = (row: Vec): Vec => {
  const m = Math.max(...row)
  const e = row.map((v) => Math.exp(v - m))
  const s = e.reduce((a, v) => a + v, 0)
  return e.map((v) => v / s)
}

/** Rotates one head vector at `pos`, pairing dimensions as the layout says (HF rotate_half or llama2.c). */
const rope = (x: Vec, pos: number, theta: number, layout: "half" | "interleaved"): Vec => {
  const d = x.length
  const out = [...x]
  for (let j = 0; j < d / 2; j++) {
    const angle = pos * theta ** (-(2 * j) / d)
    const [a, b] = layout === "half" ? [j, j + d / 2] : [2 * j, 2 * j + 1]
    out[a] = x[a]! * Math.cos(angle) - x[b]! * Math.sin(angle)
    out[b] = x[b]! * Math.cos(angle) + x[a]! * Math.sin(angle)
  }
  return out
}

/** Causal attention of one sequence: q [t, H*d], k/v [t, KV*d] -> [t, H*d]; query head h uses kv head h / (H/KV). */
const attention = (q: Mat, k: Mat, v: Mat, heads: number, kvHeads: number, d: number): Mat =>
  q.map((qRow, i) => {
    const out: Vec = []
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads))
      const qh = qRow.slice(h * d, (h + 1) * d)
      const scores = k.slice(0, i + 1).map((kRow) => dot(qh, kRow.slice(g * d, (g + 1) * d)) / Math.sqrt(d))
      const p = softmax(scores)
      for (let j = 0; j < d; j++) out.push(p.reduce((s, pk, kk) => s + pk * v[kk]![g * d + j]!, 0))
    }
    return out
  })

/** Logits [t, V] of one sequence at positions 0 .. t - 1. */
export const referenceLlama = (config: LlamaConfig, w: Weights, ids: ReadonlyArray<number>): Mat => {
  const { numAttentionHeads: H, numKeyValueHeads: KV, headDim: d } = config
  const embed = mat(w, "model.embed_tokens.weight")
  let h: Mat = ids.map((id) => [...embed[id]!])
  const ropeAll = (x: Mat, heads: number): Mat =>
    x.map((row, pos) => Array.from({ length: heads }, (_, hh) => rope(row.slice(hh * d, (hh + 1) * d), pos, config.ropeTheta, config.ropeLayout)).flat())
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const p = `model.layers.${i}`
    const x = rmsNorm(h, vec(w, `${p}.input_layernorm.weight`)!, config.rmsNormEps)
    const q = ropeAll(linear(x, mat(w, `${p}.self_attn.q_proj.weight`), vec(w, `${p}.self_attn.q_proj.bias`)), H)
    const k = ropeAll(linear(x, mat(w, `${p}.self_attn.k_proj.weight`), vec(w, `${p}.self_attn.k_proj.bias`)), KV)
    const v = linear(x, mat(w, `${p}.self_attn.v_proj.weight`), vec(w, `${p}.self_attn.v_proj.bias`))
    h = add(h, linear(attention(q, k, v, H, KV, d), mat(w, `${p}.self_attn.o_proj.weight`), vec(w, `${p}.self_attn.o_proj.bias`)))
    const x2 = rmsNorm(h, vec(w, `${p}.post_attention_layernorm.weight`)!, config.rmsNormEps)
    const gate = linear(x2, mat(w, `${p}.mlp.gate_proj.weight`))
    const up = linear(x2, mat(w, `${p}.mlp.up_proj.weight`))
    const act = gate.map((row, r) => row.map((g, c) => (g / (1 + Math.exp(-g))) * up[r]![c]!))
    h = add(h, linear(act, mat(w, `${p}.mlp.down_proj.weight`)))
  }
  h = rmsNorm(h, vec(w, "model.norm.weight")!, config.rmsNormEps)
  return linear(h, config.tieWordEmbeddings ? embed : mat(w, "lm_head.weight"))
}

/** Logits [t, V] of one sequence at positions 0 .. t - 1 (table rows 2 .. t + 1). */
export const referenceOpt = (config: OptConfig, w: Weights, ids: ReadonlyArray<number>): Mat => {
  const H = config.numAttentionHeads
  const d = config.hiddenSize / H
  const pre = "model.decoder"
  const embed = mat(w, `${pre}.embed_tokens.weight`)
  const positions = mat(w, `${pre}.embed_positions.weight`)
  let tokens: Mat = ids.map((id) => [...embed[id]!])
  if (w.has(`${pre}.project_in.weight`)) tokens = linear(tokens, mat(w, `${pre}.project_in.weight`))
  let h = tokens.map((row, pos) => row.map((v, j) => v + positions[pos + 2]![j]!))
  const ln = (x: Mat, name: string) => layerNorm(x, vec(w, `${name}.weight`), vec(w, `${name}.bias`))
  const before = config.doLayerNormBefore
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const p = `${pre}.layers.${i}`
    const lin = (x: Mat, name: string) => linear(x, mat(w, `${p}.${name}.weight`), vec(w, `${p}.${name}.bias`))
    let x = before ? ln(h, `${p}.self_attn_layer_norm`) : h
    const q = lin(x, "self_attn.q_proj")
    const attn = attention(q, lin(x, "self_attn.k_proj"), lin(x, "self_attn.v_proj"), H, H, d)
    h = add(h, lin(attn, "self_attn.out_proj"))
    if (!before) h = ln(h, `${p}.self_attn_layer_norm`)
    x = before ? ln(h, `${p}.final_layer_norm`) : h
    const hidden = lin(x, "fc1").map((row) =>
      row.map((v) => (config.activationFunction === "relu" ? Math.max(v, 0) : 0.5 * v * (1 + erf(v / Math.SQRT2))))
    )
    h = add(h, lin(hidden, "fc2"))
    if (!before) h = ln(h, `${p}.final_layer_norm`)
  }
  if (before) h = ln(h, `${pre}.final_layer_norm`)
  if (w.has(`${pre}.project_out.weight`)) h = linear(h, mat(w, `${pre}.project_out.weight`))
  return linear(h, config.tieWordEmbeddings ? embed : mat(w, "lm_head.weight"))
}

/** Abramowitz-Stegun 7.1.26 is too coarse for 1e-4 checks; a series/continued-fraction erf instead. */
const erf = (x: number): number => {
  const sign = Math.sign(x)
  const ax = Math.abs(x)
  if (ax < 3) {
    // Maclaurin series, converges fast for |x| < 3.
    let sum = 0
    let term = ax
    for (let n = 0; n < 60; n++) {
      sum += term / (2 * n + 1)
      term *= (-ax * ax) / (n + 1)
    }
    return (sign * 2 * sum) / Math.sqrt(Math.PI)
  }
  return sign * (1 - Math.exp(-ax * ax) / (ax * Math.sqrt(Math.PI)))
}

/** Max |a - b| over two row-major matrices. */
export const maxAbsDiffMat = (a: Mat, b: Mat): number => Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - b[i]![j]!))))

/**
 * HF's `permute` from convert_llama_weights_to_hf.py: rows of a q/k weight ordered for interleaved
 * RoPE (pairs 2i, 2i + 1 within a head) reordered for rotate_half (pairs i, i + d/2):
 * w.view(heads, d / 2, 2, in).transpose(1, 2).reshape(heads * d, in).
 */
export const permuteForHalfRope = (w: tf.Tensor2D, heads: number): tf.Tensor2D =>
  tf.tidy(() => {
    const [out, inF] = w.shape
    const d = out / heads
    return tf.reshape(tf.transpose(tf.reshape(w, [heads, d / 2, 2, inF]), [0, 2, 1, 3]), [out, inF]) as tf.Tensor2D
  })

/**
 * The weights an architecture needs, by Hugging Face name, with their shapes, derived from the
 * config alone (see `CausalLM.ts` for the naming). Loaders check a checkpoint against this before
 * any model is built, so a wrong or missing tensor is an error naming it rather than a broken model;
 * the writer checks a state dict against it before anything is written.
 */
import type { LlamaConfig, ModelConfig, OptConfig } from "../ModelConfig.js"

/** Hugging Face name -> shape ([out, in] for linear weights, like PyTorch). Insertion order is module order. */
export type WeightShapes = ReadonlyMap<string, ReadonlyArray<number>>

/** The output head's name in every supported architecture. */
export const LM_HEAD = "lm_head.weight"

const llamaShapes = (c: LlamaConfig): Map<string, ReadonlyArray<number>> => {
  const d = c.hiddenSize
  const q = c.numAttentionHeads * c.headDim
  const kv = c.numKeyValueHeads * c.headDim
  const shapes = new Map<string, ReadonlyArray<number>>([["model.embed_tokens.weight", [c.vocabSize, d]]])
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `model.layers.${i}`
    shapes.set(`${p}.input_layernorm.weight`, [d])
    shapes.set(`${p}.self_attn.q_proj.weight`, [q, d])
    if (c.attentionBias) shapes.set(`${p}.self_attn.q_proj.bias`, [q])
    shapes.set(`${p}.self_attn.k_proj.weight`, [kv, d])
    if (c.attentionBias) shapes.set(`${p}.self_attn.k_proj.bias`, [kv])
    shapes.set(`${p}.self_attn.v_proj.weight`, [kv, d])
    if (c.attentionBias) shapes.set(`${p}.self_attn.v_proj.bias`, [kv])
    shapes.set(`${p}.self_attn.o_proj.weight`, [d, q])
    // HF's LlamaAttention puts attention_bias on o_proj too; Qwen2 has q/k/v biases only.
    if (c.attentionBias && c.modelType === "llama") shapes.set(`${p}.self_attn.o_proj.bias`, [d])
    shapes.set(`${p}.post_attention_layernorm.weight`, [d])
    shapes.set(`${p}.mlp.gate_proj.weight`, [c.intermediateSize, d])
    shapes.set(`${p}.mlp.up_proj.weight`, [c.intermediateSize, d])
    shapes.set(`${p}.mlp.down_proj.weight`, [d, c.intermediateSize])
  }
  shapes.set("model.norm.weight", [d])
  if (!c.tieWordEmbeddings) shapes.set(LM_HEAD, [c.vocabSize, d])
  return shapes
}

const optShapes = (c: OptConfig): Map<string, ReadonlyArray<number>> => {
  const d = c.hiddenSize
  const e = c.wordEmbedProjDim
  const p = "model.decoder"
  const shapes = new Map<string, ReadonlyArray<number>>([
    [`${p}.embed_tokens.weight`, [c.vocabSize, e]],
    // OPT's learned positions are offset by 2 (a fairseq leftover).
    [`${p}.embed_positions.weight`, [c.maxPositionEmbeddings + 2, d]]
  ])
  // HF: project_out (hidden -> embed) and project_in (embed -> hidden) exist only when the widths differ.
  if (e !== d) {
    shapes.set(`${p}.project_out.weight`, [e, d])
    shapes.set(`${p}.project_in.weight`, [d, e])
  }
  const linear = (name: string, out: number, inFeatures: number) => {
    shapes.set(`${name}.weight`, [out, inFeatures])
    if (c.enableBias) shapes.set(`${name}.bias`, [out])
  }
  const norm = (name: string) => {
    if (!c.layerNormElementwiseAffine) return
    shapes.set(`${name}.weight`, [d])
    shapes.set(`${name}.bias`, [d])
  }
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const l = `${p}.layers.${i}`
    for (const proj of ["k_proj", "v_proj", "q_proj", "out_proj"]) linear(`${l}.self_attn.${proj}`, d, d)
    norm(`${l}.self_attn_layer_norm`)
    linear(`${l}.fc1`, c.ffnDim, d)
    linear(`${l}.fc2`, d, c.ffnDim)
    norm(`${l}.final_layer_norm`)
  }
  if (c.doLayerNormBefore) norm(`${p}.final_layer_norm`)
  if (!c.tieWordEmbeddings) shapes.set(LM_HEAD, [c.vocabSize, e])
  return shapes
}

/** Every weight the architecture of `config` needs (and nothing else), with its shape. */
export const hfWeightShapes = (config: ModelConfig): WeightShapes => (config.modelType === "opt" ? optShapes(config) : llamaShapes(config))

/**
 * How many tensors `hfWeightShapes(config)` lists, without listing them: a config claiming 1e9
 * layers is compared with the files' tensor count before a billion names are made.
 */
export const hfWeightCount = (config: ModelConfig): number => {
  const none = hfWeightShapes({ ...config, numHiddenLayers: 0 }).size
  const one = hfWeightShapes({ ...config, numHiddenLayers: 1 }).size
  return none + config.numHiddenLayers * (one - none)
}

/**
 * Checkpoint keys under the names our models use. OPT checkpoints saved from `OPTModel` (the hub's
 * `facebook/opt-*` files) lack the `model.` prefix: `decoder.layers.0...` becomes `model.decoder.layers.0...`.
 */
export const normalizeWeightName = (config: ModelConfig, name: string): string =>
  config.modelType === "opt" && name.startsWith("decoder.") ? `model.${name}` : name

/** Buffers some checkpoints carry that are recomputed from the config (RoPE inverse frequencies); dropped silently. */
export const isDerivedBuffer = (name: string): boolean => /(^|\.)rotary_emb\.inv_freq$/.test(name)

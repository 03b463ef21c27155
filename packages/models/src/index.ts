/**
 * @peftkit/models: causal language models with Hugging Face module names, generation, and
 * checkpoint loaders (HF directories, llama2.c).
 */
export * from "./Attention.js"
export * from "./AttentionMask.js"
export * from "./CausalLM.js"
export * from "./CausalLmLoss.js"
export * from "./Generate.js"
export * from "./KvCache.js"
export * from "./Llama.js"
export * from "./ModelConfig.js"
export * from "./Opt.js"
export * from "./loaders/index.js"
export { Embedding } from "./Embedding.js"
export { LayerNorm } from "./LayerNorm.js"
export { RmsNorm } from "./RmsNorm.js"
export * from "./Rope.js"
export * from "./SwiGlu.js"

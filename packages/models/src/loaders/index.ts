/**
 * Checkpoint I/O: Hugging Face model directories (read and write), llama2.c checkpoints (read),
 * `config.json` decoding, and the weight names and shapes each architecture needs.
 */
export * from "./HfCheckpoint.js"
export * from "./HfConfig.js"
export * from "./HfWriter.js"
export * from "./Llama2c.js"
export * from "./LoadedCheckpoint.js"
export * from "./LoadCausalLM.js"
export * from "./LoadModel.js"
export * from "./RopePermutation.js"
export * from "./WeightSpec.js"

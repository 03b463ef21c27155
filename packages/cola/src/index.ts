/**
 * @peftkit/cola: Chain of LoRA.
 */
export * from "./Chain.js"
export * from "./ChainConfig.js"
export * from "./ChainExport.js"
export * from "./ChainCheckpoint.js"

/**
 * @peftkit/cola: Chain of LoRA.
 */
export * from "./Chain.js"
export * from "./ChainConfig.js"
export * from "./ChainExport.js"
export * from "./ChainCheckpoint.js"
export * from "./LinkPolicy.js"
export * from "./ChainPolicy.js"
export * from "./policies/RacLora.js"
export * from "./policies/XgbLora.js"

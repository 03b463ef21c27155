/**
 * @peftkit/vera: VeRA adapters and their Hugging Face PEFT format.
 */
export * from "./TorchRandom.js"
export * from "./Vera.js"
export * from "./VeraConfig.js"
export * from "./VeraFormat.js"

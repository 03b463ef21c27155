/**
 * @peftkit/lora: LoRA and DoRA adapters and their Hugging Face PEFT format.
 */
export * from "./Dora.js"
export * from "./DoraFormat.js"
export * from "./Lora.js"
export * from "./LoraConfig.js"
export * from "./LoraFormat.js"
export * from "./LoraPatterns.js"
export * from "./LoraPlus.js"
export * from "./Pissa.js"
export * from "./TopSingular.js"

/**
 * @peftkit/lora: LoRA adapters and their Hugging Face PEFT format.
 */
export * from "./Lora.js"
export * from "./LoraConfig.js"
export * from "./LoraFormat.js"
export * from "./LoraPlus.js"

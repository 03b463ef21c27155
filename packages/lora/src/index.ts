/**
 * @peftkit/lora: LoRA adapters and the Hugging Face PEFT adapter format.
 */
export * from "./Lora.js"
export * from "./LoraConfig.js"
export * from "./LoraPlus.js"
export * from "./PeftAdapter.js"

/**
 * DoRA's Hugging Face PEFT format: a LoRA config with `use_dora: true` (PEFT has no DORA peft_type),
 * tensors `lora_A.weight`, `lora_B.weight` and `lora_magnitude_vector` ([out]; PEFT's
 * `save_pretrained` drops the DoraLinearLayer's ".weight" from the key and its loader adds it back).
 */
import type { PeftFormat } from "@peftkit/core"
import type { LoraConfig } from "./LoraConfig.js"
import { fromPeftConfig, toPeftConfig } from "./LoraFormat.js"

export const doraFormat: PeftFormat<LoraConfig> = {
  peftType: "LORA",
  accepts: (json) => json.peft_type === "LORA" && json.use_dora === true,
  encodeConfig: (config) => toPeftConfig(config, { dora: true }),
  decodeConfig: (json) => fromPeftConfig(json, { dora: true })
}

/**
 * LoRA configuration, decoded with Schema. Field names are camelCase here and snake_case in PEFT's
 * `adapter_config.json` (`PeftAdapter.ts` maps between them); defaults follow PEFT's `LoraConfig`.
 */
import { FiniteNumber, PositiveInt, Probability, TargetModulesSchema } from "@peftkit/core"
import { Schema } from "effect"

export const LoraInit = Schema.Literal("kaiming", "gaussian")
export type LoraInit = typeof LoraInit.Type

export const LoraConfig = Schema.Struct({
  /** Rank of the update. */
  r: Schema.optionalWith(PositiveInt, { default: () => 8 }),
  /** Scale numerator: the update is (alpha / r) B A, or (alpha / sqrt r) B A with rsLoRA. */
  alpha: Schema.optionalWith(FiniteNumber, { default: () => 8 }),
  /** Dropout on the adapter's input during training. */
  dropout: Schema.optionalWith(Probability, { default: () => 0 }),
  /** rsLoRA: scale alpha / sqrt(r), which keeps updates stable as r grows. */
  useRslora: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** A's initialisation: kaiming-uniform (a = sqrt 5, PEFT's default) or gaussian (std 1/r). B starts at zero. */
  init: Schema.optionalWith(LoraInit, { default: () => "kaiming" as const }),
  /** Which linear layers to adapt (PEFT semantics: regex string, list of names/suffixes, or "all-linear"). */
  targetModules: Schema.optionalWith(TargetModulesSchema, { default: () => ["q_proj", "v_proj"] })
})
export type LoraConfig = typeof LoraConfig.Type
export type LoraConfigInput = typeof LoraConfig.Encoded

/** The scale applied to B A. */
export const loraScale = (config: Pick<LoraConfig, "r" | "alpha" | "useRslora">): number =>
  config.useRslora ? config.alpha / Math.sqrt(config.r) : config.alpha / config.r

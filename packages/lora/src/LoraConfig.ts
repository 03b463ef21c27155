/**
 * LoRA configuration, decoded with Schema. Field names are camelCase here and snake_case in PEFT's
 * `adapter_config.json` (`LoraFormat.ts` maps between them); defaults follow PEFT's `LoraConfig`.
 */
import { FiniteNumber, PositiveInt, Probability, TargetModulesSchema } from "@peftkit/core"
import { Schema } from "effect"

export const LoraInit = Schema.Literal("kaiming", "gaussian")
export type LoraInit = typeof LoraInit.Type

/** Which factor stays at its initialisation: "A" is FFA-LoRA (Sun et al. 2024), only B trains. */
export const LoraFreeze = Schema.Literal("none", "A", "B")
export type LoraFreeze = typeof LoraFreeze.Type

/**
 * The largest rank a config may ask for. A rank above min(in, out) of a layer adds nothing, and no
 * layer of a supported model is wider than this; it keeps `"r": 9999999` in an adapter_config.json
 * from allocating gigabytes before the file's tensors are compared with it.
 */
export const MAX_LORA_RANK = 16384

export const LoraConfig = Schema.Struct({
  /** Rank of the update (a safe integer, 1 to MAX_LORA_RANK). */
  r: Schema.optionalWith(PositiveInt.pipe(Schema.lessThanOrEqualTo(MAX_LORA_RANK, { message: () => `must be at most ${MAX_LORA_RANK}` })), { default: () => 8 }),
  /** Scale numerator: the update is (alpha / r) B A, or (alpha / sqrt r) B A with rsLoRA. */
  alpha: Schema.optionalWith(FiniteNumber, { default: () => 8 }),
  /** Dropout on the adapter's input during training. */
  dropout: Schema.optionalWith(Probability, { default: () => 0 }),
  /** rsLoRA: scale alpha / sqrt(r), which keeps updates stable as r grows. */
  useRslora: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** A's initialisation: kaiming-uniform (a = sqrt 5, PEFT's default) or gaussian (std 1/r). B starts at zero. */
  init: Schema.optionalWith(LoraInit, { default: () => "kaiming" as const }),
  /**
   * A factor that does not train: "A" is FFA-LoRA (A frozen at its random init, only B trains),
   * "B" trains only A (then B draws the random start and A starts at zero: RAC-LoRA's other draw).
   * Frozen factors are still saved, so the file is a plain PEFT LoRA.
   */
  freeze: Schema.optionalWith(LoraFreeze, { default: () => "none" as const }),
  /** LoRA+ (Hayou et al. 2024): B trains at this many times A's learning rate (16 in the paper); off when absent. */
  loraPlusRatio: Schema.optional(FiniteNumber.pipe(Schema.positive({ message: () => "must be a positive number" }))),
  /** Which linear layers to adapt (PEFT semantics: regex string, list of names/suffixes, or "all-linear"). */
  targetModules: Schema.optionalWith(TargetModulesSchema, { default: () => ["q_proj", "v_proj"] })
})
export type LoraConfig = typeof LoraConfig.Type
export type LoraConfigInput = typeof LoraConfig.Encoded

/** The scale applied to B A. */
export const loraScale = (config: Pick<LoraConfig, "r" | "alpha" | "useRslora">): number =>
  config.useRslora ? config.alpha / Math.sqrt(config.r) : config.alpha / config.r

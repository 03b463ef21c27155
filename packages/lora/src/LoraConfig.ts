/**
 * LoRA configuration, decoded with Schema. Field names are camelCase here and snake_case in PEFT's
 * `adapter_config.json` (`LoraFormat.ts` maps between them); defaults follow PEFT's `LoraConfig`.
 */
import { FiniteNumber, PositiveInt, Probability, TargetModulesSchema } from "@peftkit/core"
import { Schema } from "effect"
import { PatternKey, resolvePattern } from "./LoraPatterns.js"

/** PiSSA with the randomised SVD and K power iterations (PEFT's `pissa_niter_K`; K at most 1000). */
export const PissaNiter = Schema.TemplateLiteral("pissa_niter_", Schema.Number).pipe(
  Schema.filter((value) => /^pissa_niter_\d{1,3}$/.test(value) || "must be pissa_niter_K with K a whole number of power iterations, 0 to 999")
)

/**
 * How A and B start: kaiming-uniform or gaussian A with B = 0 (PEFT's `true`, `"gaussian"`), or PiSSA
 * (`"pissa"`, exact SVD; `"pissa_niter_K"`, randomised): A and B from W's top-r SVD, W the residual.
 */
export const LoraInit = Schema.Union(Schema.Literal("kaiming", "gaussian", "pissa"), PissaNiter)
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

const Rank = PositiveInt.pipe(Schema.lessThanOrEqualTo(MAX_LORA_RANK, { message: () => `must be at most ${MAX_LORA_RANK}` }))

export const LoraConfig = Schema.Struct({
  /** Rank of the update (a safe integer, 1 to MAX_LORA_RANK). */
  r: Schema.optionalWith(Rank, { default: () => 8 }),
  /** Scale numerator: the update is (alpha / r) B A, or (alpha / sqrt r) B A with rsLoRA. */
  alpha: Schema.optionalWith(FiniteNumber, { default: () => 8 }),
  /** Dropout on the adapter's input during training. */
  dropout: Schema.optionalWith(Probability, { default: () => 0 }),
  /** rsLoRA: scale alpha / sqrt(r), which keeps updates stable as r grows. */
  useRslora: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /**
   * A's initialisation: kaiming-uniform (a = sqrt 5, PEFT's default) or gaussian (std 1/r), B at zero;
   * or PiSSA (`"pissa"`, `"pissa_niter_K"`): A and B from W's top-r SVD, W replaced by the residual (`Pissa.ts`).
   */
  init: Schema.optionalWith(LoraInit, { default: () => "kaiming" as const }),
  /**
   * A factor that does not train: "A" is FFA-LoRA (A frozen at its random init, only B trains),
   * "B" trains only A (then B draws the random start and A starts at zero: RAC-LoRA's other draw).
   * Frozen factors are still saved, so the file is a plain PEFT LoRA.
   */
  freeze: Schema.optionalWith(LoraFreeze, { default: () => "none" as const }),
  /** LoRA+ (Hayou et al. 2024): B trains at this many times A's learning rate (16 in the paper); off when absent. */
  loraPlusRatio: Schema.optional(FiniteNumber.pipe(Schema.positive({ message: () => "must be a positive number" }))),
  /** PEFT's rank_pattern: per-module ranks by regex key, first match wins (`LoraPatterns.ts`); r elsewhere. */
  rankPattern: Schema.optionalWith(Schema.Record({ key: PatternKey, value: Rank }), { default: () => ({}) }),
  /** PEFT's alpha_pattern: per-module alphas, resolved like rankPattern; alpha elsewhere. */
  alphaPattern: Schema.optionalWith(Schema.Record({ key: PatternKey, value: FiniteNumber }), { default: () => ({}) }),
  /** Which linear layers to adapt (PEFT semantics: regex string, list of names/suffixes, or "all-linear"). */
  targetModules: Schema.optionalWith(TargetModulesSchema, { default: () => ["q_proj", "v_proj"] })
})
export type LoraConfig = typeof LoraConfig.Type
export type LoraConfigInput = typeof LoraConfig.Encoded

type ScaleFields = Pick<LoraConfig, "r" | "alpha" | "useRslora"> & Partial<Pick<LoraConfig, "rankPattern" | "alphaPattern">>

/** The rank of `moduleName`'s adapter: its rank_pattern entry, else r. */
export const loraRank = (config: ScaleFields, moduleName: string): number => resolvePattern(config.rankPattern ?? {}, moduleName, config.r)

/** The alpha of `moduleName`'s adapter: its alpha_pattern entry, else alpha. */
export const loraAlpha = (config: ScaleFields, moduleName: string): number => resolvePattern(config.alphaPattern ?? {}, moduleName, config.alpha)

/**
 * The scale applied to B A (of `moduleName`'s adapter, when the config has patterns): alpha / r, or
 * alpha / sqrt(r) with rsLoRA, from the module's own rank and alpha as PEFT's `update_layer` does.
 */
export const loraScale = (config: ScaleFields, moduleName = ""): number => {
  const r = loraRank(config, moduleName)
  const alpha = loraAlpha(config, moduleName)
  return config.useRslora ? alpha / Math.sqrt(r) : alpha / r
}

/**
 * LoRA's Hugging Face PEFT format: `peft_type: "LORA"`, `adapter_config.json` with snake_case
 * LoraConfig fields, tensors `<module>.lora_A.weight` ([r, in]) and `<module>.lora_B.weight`
 * ([out, r]). Core's `saveAdapter` / `loadAdapter` dispatch on it; `readPeftLora` reads a LoRA
 * directory without a model (the CLI's export compresses one).
 */
import type { FileSystem } from "@effect/platform"
import {
  ConfigError,
  decodeConfig,

  type LoadAdapterError,
  type PeftFormat,
  readAdapterConfigJson,
  readAdapterTensors,
  type Safetensors
} from "@peftkit/core"
import { Effect, Schema } from "effect"
import { LoraConfig } from "./LoraConfig.js"

/** The `adapter_config.json` PEFT writes for a LoRA, with our config's values. */
export const toPeftConfig = (config: LoraConfig): Record<string, unknown> => ({
  peft_type: "LORA",
  r: config.r,
  lora_alpha: config.alpha,
  lora_dropout: config.dropout,
  target_modules: typeof config.targetModules === "string" ? config.targetModules : [...config.targetModules],
  bias: "none",
  use_rslora: config.useRslora,
  use_dora: false,
  fan_in_fan_out: false,
  init_lora_weights: config.init === "gaussian" ? "gaussian" : true,
  modules_to_save: null,
  layers_to_transform: null,
  layers_pattern: null,
  rank_pattern: {},
  alpha_pattern: {},
  inference_mode: true,
  revision: null
})

// The part of PEFT's config we understand; other keys are ignored, as PEFT's own loader does.
const PeftLoraJson = Schema.Struct({
  peft_type: Schema.Literal("LORA"),
  r: Schema.Number,
  lora_alpha: Schema.Number,
  lora_dropout: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  target_modules: Schema.Union(Schema.String, Schema.Array(Schema.String)),
  use_rslora: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  use_dora: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  fan_in_fan_out: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  bias: Schema.optionalWith(Schema.String, { default: () => "none" }),
  init_lora_weights: Schema.optional(Schema.Unknown),
  rank_pattern: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))),
  alpha_pattern: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))),
  layers_to_transform: Schema.optional(Schema.Unknown),
  modules_to_save: Schema.optional(Schema.Unknown)
})

const isSet = (value: unknown) => value !== undefined && value !== null && !(typeof value === "object" && Object.keys(value).length === 0)

// PEFT inits that rewrite the base weights: the adapter is only valid on that modified base.
const BASE_MODIFYING_INIT = /^(pissa|olora|corda|loftq)/

// Unknown keys are dropped before the strict decode, so only known fields can fail (and are named).
const pickKnown = (json: unknown): unknown => {
  if (typeof json !== "object" || json === null) return json
  const known = Object.keys(PeftLoraJson.fields)
  return Object.fromEntries(Object.entries(json).filter(([key]) => known.includes(key)))
}

/** Decodes PEFT JSON into our LoraConfig (unknown keys ignored; unsupported features are errors). */
export const fromPeftConfig = (json: unknown): Effect.Effect<LoraConfig, ConfigError> =>
  Effect.gen(function* () {
    const peft = yield* decodeConfig(PeftLoraJson, pickKnown(json), "adapter_config")
    if (peft.use_dora) return yield* new ConfigError({ field: "adapter_config.use_dora", reason: "DoRA adapters are not supported yet" })
    if (peft.fan_in_fan_out) return yield* new ConfigError({ field: "adapter_config.fan_in_fan_out", reason: "Conv1D (fan_in_fan_out) layers are not supported" })
    if (peft.bias !== "none") return yield* new ConfigError({ field: "adapter_config.bias", reason: `bias '${peft.bias}' is not supported (only 'none')` })
    // Silently ignoring these would load an adapter that computes something else than in PEFT.
    for (const field of ["rank_pattern", "alpha_pattern", "layers_to_transform", "modules_to_save"] as const) {
      if (isSet(peft[field])) return yield* new ConfigError({ field: `adapter_config.${field}`, reason: "is not supported yet (must be empty)" })
    }
    if (typeof peft.init_lora_weights === "string" && BASE_MODIFYING_INIT.test(peft.init_lora_weights)) {
      return yield* new ConfigError({ field: "adapter_config.init_lora_weights", reason: `'${peft.init_lora_weights}' adapters need the correspondingly modified base model; not supported` })
    }
    return yield* decodeConfig(
      LoraConfig,
      {
        r: peft.r,
        alpha: peft.lora_alpha,
        dropout: peft.lora_dropout,
        useRslora: peft.use_rslora,
        init: peft.init_lora_weights === "gaussian" ? "gaussian" : "kaiming",
        targetModules: peft.target_modules
      },
      "adapter_config"
    )
  })

/** LoRA's PEFT format. It accepts every `peft_type: "LORA"` config, and names what it cannot load (DoRA, patterns). */
export const loraFormat: PeftFormat<LoraConfig> = {
  peftType: "LORA",
  accepts: (json) => json.peft_type === "LORA",
  encodeConfig: toPeftConfig,
  decodeConfig: fromPeftConfig
}

const LORA_KEY = /^(.+)\.(lora_[AB])(?:\.default)?\.weight$/

/** Reads a PEFT LoRA directory without a model: its config and its tensors keyed by module name. */
export const readPeftLora = (
  dir: string
): Effect.Effect<{ readonly config: LoraConfig; readonly tensors: ReadonlyMap<string, Record<string, Safetensors.TensorView>> }, LoadAdapterError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const config = yield* fromPeftConfig(yield* readAdapterConfigJson(dir))
    const tensors = yield* readAdapterTensors(dir, (name) => {
      const match = LORA_KEY.exec(name)
      return match === null ? undefined : { module: match[1]!, key: `${match[2]!}.weight` }
    })
    // The file's shapes are the truth about the rank: a config that disagrees is refused here, not
    // discovered as a shape error (or an allocation) later.
    for (const [module, views] of tensors) {
      for (const [key, dim] of [["lora_A.weight", 0], ["lora_B.weight", 1]] as const) {
        const view = views[key]
        if (view !== undefined && view.shape[dim] !== config.r) {
          return yield* new ConfigError({
            field: "adapter_config.r",
            reason: `is ${config.r}, but ${module}.${key} has shape [${view.shape.join(", ")}] (rank ${String(view.shape[dim])})`
          })
        }
      }
    }
    return { config, tensors }
  })


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
import { LoraConfig, loraRank } from "./LoraConfig.js"
import { patternKey } from "./LoraPatterns.js"
import { isPissa } from "./Pissa.js"

const mapValues = (pattern: Readonly<Record<string, number>>, f: (value: number) => number) => Object.fromEntries(Object.entries(pattern).map(([key, value]) => [key, f(value)]))

/**
 * The `adapter_config.json` PEFT writes for a LoRA (`dora: true`: a DoRA, PEFT's `use_dora`), with
 * our config's values. A PiSSA config is written as PEFT's `path_initial_model_for_weight_conversion`
 * writes it: a plain LoRA (`init_lora_weights: true`) of twice the rank at the same scale, so r,
 * lora_alpha and both patterns double (with rsLoRA, alpha / sqrt(r): the alphas grow by sqrt 2; PEFT
 * refuses rsLoRA with patterns, where this rule is still exact).
 */
export const toPeftConfig = (config: LoraConfig, options: { readonly dora?: boolean } = {}): Record<string, unknown> => {
  const pissa = isPissa(config.init)
  const rank = (r: number) => (pissa ? 2 * r : r)
  const alpha = (value: number) => (!pissa ? value : config.useRslora ? value * 2 ** 0.5 : 2 * value)
  return {
    peft_type: "LORA",
    r: rank(config.r),
    lora_alpha: alpha(config.alpha),
    lora_dropout: config.dropout,
    target_modules: typeof config.targetModules === "string" ? config.targetModules : [...config.targetModules],
    bias: "none",
    use_rslora: config.useRslora,
    use_dora: options.dora === true,
    fan_in_fan_out: false,
    init_lora_weights: config.init === "gaussian" ? "gaussian" : true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: mapValues(config.rankPattern, rank),
    alpha_pattern: mapValues(config.alphaPattern, alpha),
    inference_mode: true,
    revision: null
  }
}

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
  // Values are checked by LoraConfig's decode below (ranks in bounds, keys that compile).
  rank_pattern: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))),
  alpha_pattern: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))),
  layers_to_transform: Schema.optional(Schema.Unknown),
  modules_to_save: Schema.optional(Schema.Unknown)
})

const isSet = (value: unknown) => value !== undefined && value !== null && !(typeof value === "object" && Object.keys(value).length === 0)

// PEFT inits that rewrite the base weights: the adapter is only valid on that modified base. Exact
// PiSSA ("pissa") is not among them: its residual is recomputed from the base, as PEFT's loader does.
const BASE_MODIFYING_INIT = /^(pissa_niter_|olora|corda|loftq)/

// Unknown keys are dropped before the strict decode, so only known fields can fail (and are named).
const pickKnown = (json: unknown): unknown => {
  if (typeof json !== "object" || json === null) return json
  const known = Object.keys(PeftLoraJson.fields)
  return Object.fromEntries(Object.entries(json).filter(([key]) => known.includes(key)))
}

/**
 * Decodes PEFT JSON into our LoraConfig (unknown keys ignored; unsupported features are errors).
 * `dora` says which variant reads it: a `use_dora` file is DoRA's, any other is LoRA's.
 */
export const fromPeftConfig = (json: unknown, options: { readonly dora?: boolean } = {}): Effect.Effect<LoraConfig, ConfigError> =>
  Effect.gen(function* () {
    const peft = yield* decodeConfig(PeftLoraJson, pickKnown(json), "adapter_config")
    if (peft.use_dora && options.dora !== true) {
      return yield* new ConfigError({ field: "adapter_config.use_dora", reason: "this is a DoRA adapter: load it with the `dora` variant of @peftkit/lora, listed before `lora` (e.g. [dora, lora])" })
    }
    if (!peft.use_dora && options.dora === true) return yield* new ConfigError({ field: "adapter_config.use_dora", reason: "is not true: this is a plain LoRA, load it with `lora`" })
    if (peft.fan_in_fan_out) return yield* new ConfigError({ field: "adapter_config.fan_in_fan_out", reason: "Conv1D (fan_in_fan_out) layers are not supported" })
    if (peft.bias !== "none") return yield* new ConfigError({ field: "adapter_config.bias", reason: `bias '${peft.bias}' is not supported (only 'none')` })
    // Silently ignoring these would load an adapter that computes something else than in PEFT.
    for (const field of ["layers_to_transform", "modules_to_save"] as const) {
      if (isSet(peft[field])) return yield* new ConfigError({ field: `adapter_config.${field}`, reason: "is not supported yet (must be empty)" })
    }
    if (typeof peft.init_lora_weights === "string" && BASE_MODIFYING_INIT.test(peft.init_lora_weights)) {
      const why = peft.init_lora_weights.startsWith("pissa")
        ? "a randomised-SVD PiSSA adapter needs the residual base PEFT computed from torch's random sketch; save it from PEFT with path_initial_model_for_weight_conversion (a plain LoRA)"
        : "the adapter needs the correspondingly modified base model"
      return yield* new ConfigError({ field: "adapter_config.init_lora_weights", reason: `'${peft.init_lora_weights}': ${why}; not supported` })
    }
    if (peft.init_lora_weights === "pissa" && peft.use_dora) return yield* new ConfigError({ field: "adapter_config.init_lora_weights", reason: "'pissa' with use_dora is not supported" })
    return yield* decodeConfig(
      LoraConfig,
      {
        r: peft.r,
        alpha: peft.lora_alpha,
        dropout: peft.lora_dropout,
        useRslora: peft.use_rslora,
        // Exact PiSSA: A and B are the file's, the residual W - s B0 A0 is recomputed from the base's SVD.
        init: peft.init_lora_weights === "gaussian" ? "gaussian" : peft.init_lora_weights === "pissa" ? "pissa" : "kaiming",
        rankPattern: peft.rank_pattern ?? {},
        alphaPattern: peft.alpha_pattern ?? {},
        targetModules: peft.target_modules
      },
      "adapter_config"
    ).pipe(Effect.mapError((error) => new ConfigError({ field: peftField(error.field), reason: error.reason })))
  })

// LoraConfig's field names, as the adapter_config.json keys they came from.
const PEFT_FIELDS: Readonly<Record<string, string>> = { alpha: "lora_alpha", dropout: "lora_dropout", useRslora: "use_rslora", init: "init_lora_weights", rankPattern: "rank_pattern", alphaPattern: "alpha_pattern", targetModules: "target_modules" }
const peftField = (field: string): string => field.replace(/^adapter_config\.([A-Za-z]+)/, (whole, name: string) => (PEFT_FIELDS[name] === undefined ? whole : `adapter_config.${PEFT_FIELDS[name]}`))

/** LoRA's PEFT format. It accepts every `peft_type: "LORA"` config, and names what it cannot load (a DoRA: use `dora`). */
export const loraFormat: PeftFormat<LoraConfig> = {
  peftType: "LORA",
  accepts: (json) => json.peft_type === "LORA",
  encodeConfig: (config) => toPeftConfig(config),
  decodeConfig: (json) => fromPeftConfig(json)
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
      const error = rankMismatch(config, module, views)
      if (error !== undefined) return yield* error
    }
    return { config, tensors }
  })

/**
 * A `ConfigError` naming `module` when its lora_A / lora_B ranks are not the rank the config
 * resolves for it (r, or its rank_pattern entry); undefined when they agree.
 */
export const rankMismatch = (config: LoraConfig, module: string, views: Readonly<Record<string, { readonly shape: ReadonlyArray<number> }>>): ConfigError | undefined => {
  const r = loraRank(config, module)
  const key = patternKey(config.rankPattern, module)
  for (const [tensor, dim] of [["lora_A.weight", 0], ["lora_B.weight", 1]] as const) {
    const view = views[tensor]
    if (view !== undefined && view.shape[dim] !== r) {
      return new ConfigError({
        field: key === undefined ? "adapter_config.r" : "adapter_config.rank_pattern",
        reason: `${key === undefined ? "is" : `resolves ${module} by key ${JSON.stringify(key)} to`} ${r}, but ${module}.${tensor} has shape [${view.shape.join(", ")}] (rank ${String(view.shape[dim])})`
      })
    }
  }
  return undefined
}

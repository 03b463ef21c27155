/**
 * VeRA's Hugging Face PEFT format: `peft_type: "VERA"`, `adapter_config.json` with snake_case
 * VeraConfig fields, per-layer tensors `<module>.vera_lambda_b` ([out]) and `<module>.vera_lambda_d`
 * ([r]), and the shared projections once, at the top level: `base_model.vera_A` ([r, max in]) and
 * `base_model.vera_B` ([max out, r]), as PEFT 0.21 writes and reads them.
 */
import { ConfigError, decodeConfig, type PeftFormat } from "@peftkit/core"
import { Effect, Schema } from "effect"
import { VeraConfig } from "./VeraConfig.js"

/** The `adapter_config.json` PEFT writes for a VeRA, with our config's values; the projections are always saved. */
export const toPeftConfig = (config: VeraConfig): Record<string, unknown> => ({
  peft_type: "VERA",
  r: config.r,
  target_modules: typeof config.targetModules === "string" ? config.targetModules : [...config.targetModules],
  projection_prng_key: config.projectionPrngKey,
  save_projection: true,
  vera_dropout: config.dropout,
  d_initial: config.dInitial,
  fan_in_fan_out: false,
  bias: "none",
  modules_to_save: null,
  init_weights: true,
  layers_to_transform: null,
  layers_pattern: null,
  inference_mode: true,
  revision: null
})

// The part of PEFT's config we understand; other keys are ignored, as PEFT's own loader does.
const PeftVeraJson = Schema.Struct({
  peft_type: Schema.Literal("VERA"),
  r: Schema.optionalWith(Schema.Number, { default: () => 256 }),
  target_modules: Schema.Union(Schema.String, Schema.Array(Schema.String)),
  projection_prng_key: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  save_projection: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  vera_dropout: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  d_initial: Schema.optionalWith(Schema.Number, { default: () => 0.1 }),
  fan_in_fan_out: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  bias: Schema.optionalWith(Schema.String, { default: () => "none" }),
  layers_to_transform: Schema.optional(Schema.Unknown),
  modules_to_save: Schema.optional(Schema.Unknown)
})

const isSet = (value: unknown) => value !== undefined && value !== null && !(typeof value === "object" && Object.keys(value).length === 0)

const pickKnown = (json: unknown): unknown => {
  if (typeof json !== "object" || json === null) return json
  const known = Object.keys(PeftVeraJson.fields)
  return Object.fromEntries(Object.entries(json).filter(([key]) => known.includes(key)))
}

/** Decodes PEFT JSON into our VeraConfig (unknown keys ignored; unsupported features are errors naming the key). */
export const fromPeftConfig = (json: unknown): Effect.Effect<VeraConfig, ConfigError> =>
  Effect.gen(function* () {
    const peft = yield* decodeConfig(PeftVeraJson, pickKnown(json), "adapter_config")
    if (peft.fan_in_fan_out) return yield* new ConfigError({ field: "adapter_config.fan_in_fan_out", reason: "Conv1D (fan_in_fan_out) layers are not supported" })
    if (peft.bias !== "none") return yield* new ConfigError({ field: "adapter_config.bias", reason: `bias '${peft.bias}' is not supported (only 'none')` })
    // Ignoring these would load an adapter that computes something else than in PEFT.
    for (const field of ["layers_to_transform", "modules_to_save"] as const) {
      if (isSet(peft[field])) return yield* new ConfigError({ field: `adapter_config.${field}`, reason: "is not supported yet (must be empty)" })
    }
    // init_weights only matters for a fresh adapter; a loaded one takes lambda_b / lambda_d from the file.
    return yield* decodeConfig(
      VeraConfig,
      {
        r: peft.r,
        projectionPrngKey: peft.projection_prng_key,
        saveProjection: peft.save_projection,
        dropout: peft.vera_dropout,
        dInitial: peft.d_initial,
        targetModules: peft.target_modules
      },
      "adapter_config"
    )
  })

/** VeRA's PEFT format: every `peft_type: "VERA"` config. */
export const veraFormat: PeftFormat<VeraConfig> = {
  peftType: "VERA",
  accepts: (json) => json.peft_type === "VERA",
  encodeConfig: toPeftConfig,
  decodeConfig: fromPeftConfig
}

/**
 * Hugging Face PEFT's adapter directory, so adapters move between peftkit and Python:
 * `adapter_config.json` (snake_case LoraConfig fields) and `adapter_model.safetensors` with keys
 * `base_model.model.<module>.lora_A.weight` ([r, in]) and `...lora_B.weight` ([out, r]), metadata
 * `{"format": "pt"}`. Python loads the result with `PeftModel.from_pretrained(model, dir)`.
 *
 * Both files are written atomically (temp file + rename), weights first: an interrupted save
 * leaves the previous adapter loadable.
 */
import type { FileSystem } from "@effect/platform"
import {
  AdapterSet,
  attempt,
  ConfigError,
  decodeConfig,
  type AdaptableModel,
  type FileError,
  InvalidCheckpoint,
  type InvalidSafetensors,
  readFileBytes,
  Safetensors,
  ShapeMismatch,
  writeFileAtomic
} from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { lora } from "./Lora.js"
import { LoraConfig } from "./LoraConfig.js"

export const ADAPTER_CONFIG_FILE = "adapter_config.json"
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
/** PEFT prefixes module names with the PeftModel wrapper's path. */
export const PEFT_KEY_PREFIX = "base_model.model."

export interface PeftSaveOptions {
  /** Written as `base_model_name_or_path`. */
  readonly baseModel?: string
  /** PEFT task type, e.g. "CAUSAL_LM"; null when the model is not a transformers task model. */
  readonly taskType?: string | null
}

/** The `adapter_config.json` PEFT writes for a LoRA, with our config's values. */
export const toPeftConfig = (config: LoraConfig, options: PeftSaveOptions = {}): Record<string, unknown> => ({
  peft_type: "LORA",
  task_type: options.taskType ?? null,
  base_model_name_or_path: options.baseModel ?? null,
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

// Unknown keys are dropped before the strict decode, so only known fields can fail (and are named).
const pickKnown = (json: unknown): unknown => {
  if (typeof json !== "object" || json === null) return json
  const known = Object.keys(PeftLoraJson.fields)
  return Object.fromEntries(Object.entries(json).filter(([key]) => known.includes(key)))
}

const joinPath = (dir: string, file: string) => `${dir.replace(/\/+$/, "")}/${file}`

/**
 * The two files of a PEFT LoRA directory, as bytes: tensors keyed `<module>.lora_A.weight` /
 * `<module>.lora_B.weight` (prefixed here) and the config. Reads the tensors asynchronously (GPU-safe).
 */
export const peftLoraFiles = (
  config: LoraConfig,
  tensors: Readonly<Record<string, tf.Tensor>>,
  options: PeftSaveOptions = {}
): Effect.Effect<{ readonly [ADAPTER_WEIGHTS_FILE]: Uint8Array; readonly [ADAPTER_CONFIG_FILE]: string }> =>
  Effect.map(
    Effect.promise(() =>
      Safetensors.encodeTensorsAsync(
        Object.fromEntries(Object.entries(tensors).map(([key, tensor]) => [`${PEFT_KEY_PREFIX}${key}`, tensor])),
        { format: "pt" }
      )
    ),
    (weights) => ({ [ADAPTER_WEIGHTS_FILE]: weights, [ADAPTER_CONFIG_FILE]: `${JSON.stringify(toPeftConfig(config, options), null, 2)}\n` })
  )

/**
 * Writes LoRA tensors and their PEFT config into `dir`, each file atomically, weights first. Used
 * for adapters and for exported COLA chains alike.
 */
export const savePeftLora = (
  dir: string,
  config: LoraConfig,
  tensors: Readonly<Record<string, tf.Tensor>>,
  options: PeftSaveOptions = {}
): Effect.Effect<void, FileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const files = yield* peftLoraFiles(config, tensors, options)
    yield* writeFileAtomic(joinPath(dir, ADAPTER_WEIGHTS_FILE), files[ADAPTER_WEIGHTS_FILE])
    yield* writeFileAtomic(joinPath(dir, ADAPTER_CONFIG_FILE), files[ADAPTER_CONFIG_FILE])
  })

/**
 * Saves the adapters of `adapters` (a LoRA `AdapterSet`) in PEFT layout. `target_modules` is what
 * the adapters were injected with, so PEFT adapts exactly the same modules.
 */
export const saveAdapter = (
  dir: string,
  adapters: AdapterSet,
  config: LoraConfig,
  options: PeftSaveOptions = {}
): Effect.Effect<void, FileError, FileSystem.FileSystem> =>
  Effect.acquireUseRelease(
    Effect.sync(() => adapters.stateDict()),
    (tensors) => savePeftLora(dir, { ...config, targetModules: adapters.targetModules }, tensors, options),
    (tensors) => Effect.sync(() => Object.values(tensors).forEach((tensor) => tensor.dispose()))
  )

export type LoadAdapterError = FileError | InvalidSafetensors | InvalidCheckpoint | ShapeMismatch | ConfigError

/** Reads a PEFT LoRA directory: its config and its tensors keyed by module name (PEFT prefix removed). */
export const readPeftLora = (
  dir: string
): Effect.Effect<{ readonly config: LoraConfig; readonly tensors: ReadonlyMap<string, Record<string, Safetensors.TensorView>> }, LoadAdapterError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const configPath = joinPath(dir, ADAPTER_CONFIG_FILE)
    const configText = new TextDecoder().decode(yield* readFileBytes(configPath))
    const json = yield* Effect.try({
      try: () => JSON.parse(configText) as unknown,
      catch: (error) => new InvalidCheckpoint({ path: configPath, reason: `not JSON: ${(error as Error).message}` })
    })
    const config = yield* fromPeftConfig(json)
    const weightsPath = joinPath(dir, ADAPTER_WEIGHTS_FILE)
    const file = yield* Safetensors.decode(yield* readFileBytes(weightsPath), weightsPath)
    const tensors = new Map<string, Record<string, Safetensors.TensorView>>()
    for (const view of file.tensors) {
      // PEFT drops the adapter name on save; older files may still carry `.default`.
      const match = /^(?:base_model\.model\.)?(.+)\.(lora_[AB])(?:\.default)?\.weight$/.exec(view.name)
      if (match === null) return yield* new InvalidCheckpoint({ path: weightsPath, tensor: view.name, reason: "not a LoRA key (expected <module>.lora_A.weight or <module>.lora_B.weight)" })
      const [, moduleName, factor] = match
      const entry = tensors.get(moduleName!) ?? {}
      entry[`${factor}.weight`] = view
      tensors.set(moduleName!, entry)
    }
    return { config, tensors }
  })

/** Loads the tensors read from a PEFT file into already-injected adapters (resume); all-or-nothing per layer. */
const loadInto = (
  adapters: AdapterSet,
  tensors: ReadonlyMap<string, Record<string, Safetensors.TensorView>>,
  weightsPath: string
): Effect.Effect<void, LoadAdapterError> =>
  attempt(() => {
      for (const layer of adapters.layers) {
        const views = tensors.get(layer.name)
        if (views === undefined) throw new InvalidCheckpoint({ path: weightsPath, tensor: `${layer.name}.lora_A.weight`, reason: "missing" })
        const loadedTensors = Object.fromEntries(Object.entries(views).map(([key, view]) => [key, Safetensors.toTensor(view)]))
        try {
          layer.adapter!.loadStateDict(loadedTensors)
        } finally {
          Object.values(loadedTensors).forEach((tensor) => tensor.dispose())
        }
      }
  })

/**
 * Loads a PEFT LoRA directory onto `model`: injects LoRA into exactly the modules the file has
 * weights for, and loads them. A module the model lacks, a missing factor or a wrong shape is an
 * error naming it; the model is left without adapters in that case.
 */
export const loadAdapter = (
  dir: string,
  model: AdaptableModel
): Effect.Effect<{ readonly adapters: AdapterSet; readonly config: LoraConfig }, LoadAdapterError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const { config, tensors } = yield* readPeftLora(dir)
    const weightsPath = joinPath(dir, ADAPTER_WEIGHTS_FILE)
    const known = new Set(model.linears().map((layer) => layer.name))
    for (const moduleName of tensors.keys()) {
      if (!known.has(moduleName)) return yield* new InvalidCheckpoint({ path: weightsPath, tensor: `${moduleName}.lora_A.weight`, reason: `the model has no linear layer '${moduleName}'` })
    }
    if (tensors.size === 0) return yield* new InvalidCheckpoint({ path: weightsPath, reason: "no LoRA tensors" })
    // Exactly the modules in the file (a list would also match dotted suffixes).
    const exactly = [...tensors.keys()].map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")
    const adapters = AdapterSet.inject(model, lora, config, { targetModules: exactly, seed: 0 })
    yield* loadInto(adapters, tensors, weightsPath).pipe(Effect.tapError(() => Effect.sync(() => adapters.remove())))
    return { adapters, config }
  })

/**
 * Loads a PEFT LoRA directory's weights into adapters that are already injected (resuming a run):
 * every adapted layer must have its factors in the file, with matching shapes.
 */
export const restoreAdapterWeights = (dir: string, adapters: AdapterSet): Effect.Effect<void, LoadAdapterError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const { tensors } = yield* readPeftLora(dir)
    yield* loadInto(adapters, tensors, joinPath(dir, ADAPTER_WEIGHTS_FILE))
  })

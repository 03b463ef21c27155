/**
 * Hugging Face PEFT's adapter directory, for any variant with a `PeftFormat`: `adapter_config.json`
 * and `adapter_model.safetensors` with keys `base_model.model.<module>.<tensor key>` and metadata
 * `{"format": "pt"}`. Python loads the result with `PeftModel.from_pretrained(model, dir)`.
 *
 * Saving dispatches on the adapters' variant; loading on the config, among the variants the caller
 * says are installed (`loadAdapter(dir, model, [lora, dora])`), as PEFT's own dispatcher does. Both
 * files are written atomically (temp file + rename), weights first: an interrupted save leaves the
 * previous adapter loadable.
 *
 * Row layout: files always hold output rows in the order of the model's Hugging Face form. A model
 * that keeps some modules' rows in another order (a llama2.c checkpoint's interleaved-RoPE q_proj /
 * k_proj) says so with `AdaptableModel.peftRowOrder`; the writer (given `rowOrder`) permutes every
 * tensor indexed by output row (`PEFT_OUTPUT_ROW_KEYS`: `lora_B`, DoRA's magnitude, VeRA's
 * `vera_lambda_b`) into file order, and `loadAdapter` / `restoreAdapterWeights` permute them back, so
 * a variant never knows. Input-side tensors (`lora_A`, VeRA's `vera_lambda_d` [r]) are never
 * permuted: the input features of q/k are the hidden state, the same in both layouts.
 *
 * Shared tensors (a variant's `createShared`: VeRA's `vera_A` / `vera_B`) are written once under
 * their own full keys (`base_model.vera_A`, outside `base_model.model.`), shape-checked against the
 * variant's `sharedShapes` before anything is allocated on load, and never permuted: one tensor
 * serves layers with different row orders, so the variant gathers rows per layer
 * (`AdapterContext.peftRows`).
 */
import type { FileSystem } from "@effect/platform"
import { Effect } from "effect"
import * as tf from "@tensorflow/tfjs-core"
import type { AdaptableModel, PeftRowOrder } from "./AdaptableModel.js"
import type { AdapterConfigBase, AdapterVariant } from "./Adapter.js"
import { AdapterSet } from "./AdapterSet.js"
import { resolveKeyAliases } from "./DefineAdapter.js"
import { writeFileAtomic } from "./AtomicFile.js"
import { attempt, type BackendOutOfMemory, ConfigError, type FileError, InvalidCheckpoint, NoPeftFormat, ShapeMismatch } from "./Errors.js"
import { joinPath, readFileBytes } from "./Files.js"
import { inverseOrder } from "./internal/inverseOrder.js"
import type { PeftFormat } from "./PeftFormat.js"
import * as Safetensors from "./Safetensors.js"

export const ADAPTER_CONFIG_FILE = "adapter_config.json"
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
/** PEFT prefixes module names with the PeftModel wrapper's path. */
export const PEFT_KEY_PREFIX = "base_model.model."

export interface PeftSaveOptions {
  /** Written as `base_model_name_or_path`. */
  readonly baseModel?: string
  /** PEFT task type, e.g. "CAUSAL_LM"; null when the model is not a transformers task model. */
  readonly taskType?: string | null
  /**
   * The model's output-row order (`model.peftRowOrder`): per-output-row tensors of the modules it
   * names are written in the order of the model's Hugging Face form. `saveAdapter` takes it from the
   * adapter set (which took it from the model); pass it when writing raw tensors of a model that has
   * one (a llama2.c checkpoint), or PEFT on the HF model reads them wrongly.
   */
  readonly rowOrder?: PeftRowOrder | undefined
}

/**
 * Tensor keys (after the module name) whose first axis is the module's output features, in PEFT's
 * state-dict naming: LoRA's B (and its bias), DoRA's magnitude vector, VeRA's `vera_lambda_b` (VeRA's
 * `vera_lambda_d` is [r], not per output row). These are the tensors a `PeftRowOrder` permutes.
 */
export const PEFT_OUTPUT_ROW_KEYS: ReadonlyArray<string> = ["lora_B.weight", "lora_B.bias", "lora_magnitude_vector", "lora_magnitude_vector.weight", "vera_lambda_b"]

/** The row order for `key` of `module`, checked against the tensor's first axis; undefined when nothing moves. */
const orderFor = (rowOrder: PeftRowOrder | undefined, module: string, key: string, shape: ReadonlyArray<number>): ReadonlyArray<number> | undefined => {
  if (rowOrder === undefined || !PEFT_OUTPUT_ROW_KEYS.includes(key)) return undefined
  const order = rowOrder(module)
  if (order === undefined) return undefined
  if (shape[0] !== order.length) throw new InvalidCheckpoint({ path: module, tensor: key, reason: `first axis ${shape[0]} is not the module's ${order.length} output rows` })
  return order
}

/** Model rows -> file rows (`toFile`) or back, along axis 0. A new tensor the caller owns. */
const permuteRows = (tensor: tf.Tensor, order: ReadonlyArray<number>, toFile: boolean): tf.Tensor =>
  tf.tidy(() => tf.gather(tensor, tf.tensor1d(toFile ? [...order] : inverseOrder(order), "int32"), 0))

/** `<module>.<key>` tensors with per-output-row ones permuted into file order; `owned` are the new ones. */
const toFileRows = (tensors: Readonly<Record<string, tf.Tensor>>, rowOrder: PeftRowOrder | undefined) => {
  const owned: Array<tf.Tensor> = []
  const out: Record<string, tf.Tensor> = {}
  for (const [name, tensor] of Object.entries(tensors)) {
    const key = rowOrder === undefined ? undefined : PEFT_OUTPUT_ROW_KEYS.find((candidate) => name.endsWith(`.${candidate}`))
    const order = key === undefined ? undefined : orderFor(rowOrder, name.slice(0, -key.length - 1), key, tensor.shape)
    if (order === undefined) {
      out[name] = tensor
    } else {
      const permuted = permuteRows(tensor, order, true)
      owned.push(permuted)
      out[name] = permuted
    }
  }
  return { tensors: out, owned }
}

export type LoadAdapterError = FileError | Safetensors.InvalidSafetensors | InvalidCheckpoint | ShapeMismatch | ConfigError | BackendOutOfMemory

/**
 * The two files of a PEFT adapter directory, as bytes: `tensors` keyed `<module>.<tensor key>`
 * (prefixed here), `shared` tensors under their full keys (`base_model.vera_A`, written as given)
 * and the config. Reads the tensors asynchronously (GPU-safe).
 */
export const peftAdapterFiles = <Config>(
  format: PeftFormat<Config>,
  config: Config,
  tensors: Readonly<Record<string, tf.Tensor>>,
  options: PeftSaveOptions = {},
  shared: Readonly<Record<string, tf.Tensor>> = {}
): Effect.Effect<{ readonly [ADAPTER_WEIGHTS_FILE]: Uint8Array; readonly [ADAPTER_CONFIG_FILE]: string }> =>
  Effect.map(
    Effect.acquireUseRelease(
      Effect.sync(() => toFileRows(tensors, options.rowOrder)),
      (file) =>
        Effect.promise(() =>
          Safetensors.encodeTensorsAsync(
            { ...Object.fromEntries(Object.entries(file.tensors).map(([key, tensor]) => [`${PEFT_KEY_PREFIX}${key}`, tensor])), ...shared },
            { format: "pt" }
          )
        ),
      (file) => Effect.sync(() => file.owned.forEach((tensor) => tensor.dispose()))
    ),
    (weights) => ({
      [ADAPTER_WEIGHTS_FILE]: weights,
      [ADAPTER_CONFIG_FILE]: `${JSON.stringify({ ...format.encodeConfig(config), task_type: options.taskType ?? null, base_model_name_or_path: options.baseModel ?? null }, null, 2)}\n`
    })
  )

/** Writes tensors (and shared tensors, by full key) and their config into `dir` in PEFT's layout, each file atomically, weights first. */
export const savePeftAdapter = <Config>(
  dir: string,
  format: PeftFormat<Config>,
  config: Config,
  tensors: Readonly<Record<string, tf.Tensor>>,
  options: PeftSaveOptions = {},
  shared: Readonly<Record<string, tf.Tensor>> = {}
): Effect.Effect<void, FileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const files = yield* peftAdapterFiles(format, config, tensors, options, shared)
    yield* writeFileAtomic(joinPath(dir, ADAPTER_WEIGHTS_FILE), files[ADAPTER_WEIGHTS_FILE])
    yield* writeFileAtomic(joinPath(dir, ADAPTER_CONFIG_FILE), files[ADAPTER_CONFIG_FILE])
  })

/** The format of an adapter set's variant, or `NoPeftFormat`. */
export const formatOf = <Config>(variant: AdapterVariant<Config>): Effect.Effect<PeftFormat<Config>, NoPeftFormat> =>
  variant.format === undefined ? Effect.fail(new NoPeftFormat({ variant: variant.name })) : Effect.succeed(variant.format)

/** An adapter set's per-layer and shared tensors (copies), used and then freed. */
const withSetTensors = <Config extends AdapterConfigBase, A, E, R>(
  adapters: AdapterSet<Config>,
  use: (tensors: Record<string, tf.Tensor>, shared: Record<string, tf.Tensor>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.acquireUseRelease(
    Effect.sync(() => ({ tensors: adapters.stateDict(), shared: adapters.sharedStateDict() })),
    ({ tensors, shared }) => use(tensors, shared),
    ({ tensors, shared }) => Effect.sync(() => [...Object.values(tensors), ...Object.values(shared)].forEach((tensor) => tensor.dispose()))
  )

/** The PEFT files of an injected adapter set (checkpoints keep them in memory first). */
export const adapterSetFiles = <Config extends AdapterConfigBase>(adapters: AdapterSet<Config>, options: PeftSaveOptions = {}) =>
  Effect.flatMap(formatOf(adapters.variant), (format) =>
    withSetTensors(adapters, (tensors, shared) => peftAdapterFiles(format, adapters.config, tensors, { rowOrder: adapters.rowOrder, ...options }, shared))
  )

/** Saves an injected adapter set in PEFT's layout, with the config it was injected with. */
export const saveAdapter = <Config extends AdapterConfigBase>(
  dir: string,
  adapters: AdapterSet<Config>,
  options: PeftSaveOptions = {}
): Effect.Effect<void, FileError | NoPeftFormat, FileSystem.FileSystem> =>
  Effect.flatMap(formatOf(adapters.variant), (format) =>
    // The set remembers its model's row order, so a save cannot forget it.
    withSetTensors(adapters, (tensors, shared) => savePeftAdapter(dir, format, adapters.config, tensors, { rowOrder: adapters.rowOrder, ...options }, shared))
  )

/** Splits a state-dict key (PEFT prefix removed) into its module and the tensor key after it. */
export type KeySplitter = (name: string) => { readonly module: string; readonly key: string } | undefined

/** Splits at the longest of `modules` the key starts with; `.default` (older files keep the adapter name) is dropped. */
export const splitAtModules = (modules: ReadonlyArray<string>): KeySplitter => {
  const byLength = [...modules].sort((a, b) => b.length - a.length)
  return (name) => {
    const module = byLength.find((candidate) => name.startsWith(`${candidate}.`))
    if (module === undefined) return undefined
    return { module, key: name.slice(module.length + 1).split(".").filter((part) => part !== "default").join(".") }
  }
}

/** A PEFT directory's `adapter_config.json`, parsed (a JSON object, else `InvalidCheckpoint`). */
export const readAdapterConfigJson = (dir: string): Effect.Effect<Record<string, unknown>, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const path = joinPath(dir, ADAPTER_CONFIG_FILE)
    const bytes = yield* readFileBytes(path)
    const text = yield* Effect.try({
      try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
      catch: () => new InvalidCheckpoint({ path, reason: `not valid UTF-8 at byte ${Safetensors.invalidUtf8Offset(bytes)}` })
    })
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (error) => new InvalidCheckpoint({ path, reason: `not JSON: ${(error as Error).message}` })
    })
    if (typeof json !== "object" || json === null || Array.isArray(json)) return yield* new InvalidCheckpoint({ path, reason: "not a JSON object" })
    return json as Record<string, unknown>
  })

/** The tensors of a PEFT directory's `adapter_model.safetensors`, grouped by module with `split`. */
export const readAdapterTensors = (
  dir: string,
  split: KeySplitter
): Effect.Effect<ReadonlyMap<string, Record<string, Safetensors.TensorView>>, LoadAdapterError, FileSystem.FileSystem> =>
  Effect.map(readAdapterFile(dir, split, []), (file) => file.layers)

/**
 * The tensors of a PEFT directory's `adapter_model.safetensors`: those under `sharedKeys` (full keys;
 * a `.default` adapter-name suffix is accepted) apart, the rest grouped by module with `split`.
 */
export const readAdapterFile = (
  dir: string,
  split: KeySplitter,
  sharedKeys: ReadonlyArray<string>
): Effect.Effect<
  { readonly layers: ReadonlyMap<string, Record<string, Safetensors.TensorView>>; readonly shared: Readonly<Record<string, Safetensors.TensorView>> },
  LoadAdapterError,
  FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const path = joinPath(dir, ADAPTER_WEIGHTS_FILE)
    const file = yield* Safetensors.decode(yield* readFileBytes(path), path)
    const tensors = new Map<string, Record<string, Safetensors.TensorView>>()
    const shared: Record<string, Safetensors.TensorView> = {}
    for (const view of file.tensors) {
      const sharedKey = sharedKeys.find((key) => view.name === key || view.name === `${key}.default`)
      if (sharedKey !== undefined) {
        shared[sharedKey] = view
        continue
      }
      const name = view.name.startsWith(PEFT_KEY_PREFIX) ? view.name.slice(PEFT_KEY_PREFIX.length) : view.name
      const parts = split(name)
      if (parts === undefined) return yield* new InvalidCheckpoint({ path, tensor: name, reason: "belongs to none of the model's adapted linear layers" })
      const entry = tensors.get(parts.module) ?? {}
      entry[parts.key] = view
      tensors.set(parts.module, entry)
    }
    if (tensors.size === 0) return yield* new InvalidCheckpoint({ path, reason: "no adapter tensors" })
    return { layers: tensors, shared }
  })

/**
 * The installed variant that reads a config (PEFT's dispatch on `peft_type` and flags such as
 * `use_dora`), and the config decoded by it.
 */
export const dispatchAdapterConfig = (
  json: Readonly<Record<string, unknown>>,
  variants: ReadonlyArray<AdapterVariant<any>>
): Effect.Effect<{ readonly variant: AdapterVariant<any>; readonly config: AdapterConfigBase }, ConfigError> => {
  if (variants.length === 0) {
    return Effect.fail(new ConfigError({ field: "variants", reason: "no adapter variants given to read the adapter with; pass the installed ones, e.g. [lora]" }))
  }
  // The first that accepts wins: variants sharing a format (LoRA and a frozen-A LoRA) are chosen by list order.
  for (const variant of variants) {
    if (variant.format?.accepts(json) === true) return Effect.map(variant.format.decodeConfig(json), (config) => ({ variant, config: config as AdapterConfigBase }))
  }
  const known = variants.flatMap((variant) => (variant.format === undefined ? [] : [`${variant.name} (${variant.format.peftType})`]))
  return Effect.fail(
    new ConfigError({
      field: "adapter_config.peft_type",
      reason: `no installed variant reads this adapter (peft_type ${JSON.stringify(json.peft_type)}${json.use_dora === true ? ", use_dora" : ""}); installed: ${known.join(", ") || "none"}`
    })
  )
}

/** Loads tensors read from a PEFT file into injected adapters (and their shared tensors); every adapted layer must be in the file. */
const loadInto = <Config extends AdapterConfigBase>(
  adapters: AdapterSet<Config>,
  file: { readonly layers: ReadonlyMap<string, Record<string, Safetensors.TensorView>>; readonly shared: Readonly<Record<string, Safetensors.TensorView>> },
  path: string,
  rowOrder: PeftRowOrder | undefined
): Effect.Effect<void, LoadAdapterError> =>
  attempt(() => {
    const tensors = file.layers
    if (adapters.shared !== undefined) {
      const loaded = Object.fromEntries(Object.entries(file.shared).map(([key, view]) => [key, Safetensors.toTensor(view)]))
      try {
        adapters.shared.loadStateDict(loaded)
      } finally {
        Object.values(loaded).forEach((tensor) => tensor.dispose())
      }
    }
    for (const { layer, adapter } of adapters.entries) {
      const views = tensors.get(layer.name)
      if (views === undefined) throw new InvalidCheckpoint({ path, tensor: layer.name, reason: "no tensors for this adapted layer" })
      const loaded = Object.fromEntries(
        Object.entries(views).map(([key, view]) => {
          const order = orderFor(rowOrder, layer.name, key, view.shape)
          if (order === undefined) return [key, Safetensors.toTensor(view)]
          return [key, tf.tidy(() => permuteRows(Safetensors.toTensor(view), order, false))]
        })
      )
      try {
        adapter.loadStateDict(loaded)
      } finally {
        Object.values(loaded).forEach((tensor) => tensor.dispose())
      }
    }
  })

/**
 * Loads a PEFT adapter directory onto `model` with whichever of `variants` reads its config: injects
 * adapters into exactly the modules the file has tensors for and loads them. A module the model
 * lacks, a missing or unexpected tensor or a wrong shape is an error naming it; the model is left
 * without adapters then. Per-output-row tensors are put back into the model's row order
 * (`model.peftRowOrder`), so an adapter for the HF form of a llama2.c model loads onto the .bin.
 */
export const loadAdapter = <Variants extends ReadonlyArray<AdapterVariant<any>>>(
  dir: string,
  model: AdaptableModel,
  variants: Variants
): Effect.Effect<AdapterSet<ConfigOf<Variants[number]>>, LoadAdapterError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const { variant, config } = yield* dispatchAdapterConfig(yield* readAdapterConfigJson(dir), variants)
    const layers = new Map(model.linears().map((layer) => [layer.name, layer]))
    const path = joinPath(dir, ADAPTER_WEIGHTS_FILE)
    // Shared tensors are sized by the file's modules (as PEFT sizes them by its targets); only their keys are needed to read.
    const sharedKeys = variant.sharedShapes === undefined ? [] : Object.keys(variant.sharedShapes([...layers.values()], config))
    const read = yield* readAdapterFile(dir, splitAtModules([...layers.keys()]), sharedKeys)
    // Keys the variant also accepts (PEFT's `lora_magnitude_vector.weight`) under the key they stand for.
    const tensors = new Map<string, Record<string, Safetensors.TensorView>>()
    for (const [module, views] of read.layers) {
      const aliases = variant.keyAliases?.(layers.get(module)!, config) ?? {}
      tensors.set(module, Object.keys(aliases).length === 0 ? views : yield* attempt(() => resolveKeyAliases(views, aliases, path)))
    }
    const file = { layers: tensors, shared: read.shared }
    // The file against what the config would allocate, before anything is allocated (an absurd r is an error in microseconds).
    if (variant.sharedShapes !== undefined) {
      const expected = variant.sharedShapes([...tensors.keys()].map((module) => layers.get(module)!), config)
      for (const [key, { shape, fromFile }] of Object.entries(expected)) {
        if (!fromFile) continue
        const view = file.shared[key]
        if (view === undefined) return yield* new InvalidCheckpoint({ path, tensor: key, reason: "missing (a tensor shared by all adapted layers)" })
        if (!tf.util.arraysEqual([...view.shape], [...shape])) return yield* new ShapeMismatch({ what: key, expected: shape, actual: view.shape })
      }
    }
    if (variant.shapes !== undefined) {
      for (const [module, views] of tensors) {
        const expected = variant.shapes(layers.get(module)!, config)
        for (const [key, shape] of Object.entries(expected)) {
          const view = views[key]
          if (view === undefined) return yield* new InvalidCheckpoint({ path, tensor: `${module}.${key}`, reason: "missing" })
          if (!tf.util.arraysEqual([...view.shape], [...shape])) return yield* new ShapeMismatch({ what: `${module}.${key}`, expected: shape, actual: view.shape })
        }
      }
    }
    const adapters = yield* attempt(() => AdapterSet.inject(model, variant, config, { seed: 0, modules: [...tensors.keys()] }))
    yield* loadInto(adapters, file, path, model.peftRowOrder).pipe(Effect.tapError(() => Effect.sync(() => adapters.remove())))
    return adapters as AdapterSet<ConfigOf<Variants[number]>>
  })

/** The config type of a variant. */
export type ConfigOf<V> = V extends AdapterVariant<infer Config> ? (Config extends AdapterConfigBase ? Config : never) : never

/**
 * Loads a PEFT directory's weights into adapters that are already injected (resuming a run). Pass
 * the `rowOrder` the files were saved with (the model's `peftRowOrder`).
 */
export const restoreAdapterWeights = <Config extends AdapterConfigBase>(
  dir: string,
  adapters: AdapterSet<Config>,
  options: { readonly rowOrder?: PeftRowOrder | undefined } = {}
): Effect.Effect<void, LoadAdapterError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const file = yield* readAdapterFile(dir, splitAtModules(adapters.entries.map(({ layer }) => layer.name)), Object.keys(adapters.variant.sharedShapes?.(adapters.layers, adapters.config) ?? {}))
    yield* loadInto(adapters, file, joinPath(dir, ADAPTER_WEIGHTS_FILE), options.rowOrder ?? adapters.rowOrder)
  })

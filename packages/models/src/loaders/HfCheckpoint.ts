/**
 * Reads a Hugging Face model directory: `config.json` plus `model.safetensors`, or shards listed in
 * `model.safetensors.index.json` (`weight_map`: tensor name -> shard file). F32, F16 and BF16 (and
 * F64) weights become float32 tfjs tensors (core's `Safetensors.toTensor`; F16/BF16 widen exactly).
 *
 * Two passes, so a bad checkpoint fails fast and before anything is built:
 * 1. headers only (8 + N bytes per file): every tensor the architecture needs must be present, once,
 *    with the shape the config implies and a float dtype (`InvalidCheckpoint` / `ShapeMismatch`
 *    naming the tensor); shards that are listed but absent are `InvalidCheckpoint` with their path.
 * 2. data, one tensor at a time: validate each file's layout from its header and size (core's
 *    `decodeLayoutSync`), then read only the tensors we need, each into its own buffer, turned into a
 *    tfjs tensor before the next is read. Peak memory is the float32 weights loaded so far plus one
 *    tensor's bytes: never two copies of the model, even for a single-file checkpoint;
 *    files that hold only unneeded tensors are not read at all. On failure, tensors already made
 *    are disposed.
 *
 * OPT checkpoints saved from `OPTModel` (`decoder.layers...`) are renamed to `model.decoder...`.
 * Extra tensors are skipped and reported (`ignoredTensors`, `warnings`), except RoPE `inv_freq`
 * buffers, which old Llama checkpoints carry and which are recomputed from the config anyway.
 */
import type { FileSystem } from "@effect/platform"
import { InvalidCheckpoint, readFileBytes, Safetensors, ShapeMismatch } from "@peftkit/core"
import type * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { ModelConfig } from "../ModelConfig.js"
import { decodeHfConfig } from "./HfConfig.js"
import { isFile, joinPath, readSafetensorsHeader, readSafetensorsTensors } from "./internal/SafetensorsReads.js"
import { disposeWeights, type LoadCheckpointError, type LoadedCheckpoint } from "./LoadedCheckpoint.js"
import { hfWeightCount, hfWeightShapes, isDerivedBuffer, LM_HEAD, normalizeWeightName } from "./WeightSpec.js"

export const HF_CONFIG_FILE = "config.json"
export const HF_WEIGHTS_FILE = "model.safetensors"
export const HF_INDEX_FILE = "model.safetensors.index.json"

const FLOAT_DTYPES: ReadonlyArray<string> = ["F32", "F16", "BF16", "F64"]

const utf8 = new TextDecoder("utf-8", { fatal: true })

// Invalid UTF-8 is an error naming the byte, not text silently changed to U+FFFD.
const parseJson = (path: string, bytes: Uint8Array): Effect.Effect<unknown, InvalidCheckpoint> =>
  Effect.suspend(() => {
    let text: string
    try {
      text = utf8.decode(bytes)
    } catch {
      return Effect.fail(new InvalidCheckpoint({ path, reason: `not valid UTF-8 at byte ${Safetensors.invalidUtf8Offset(bytes) ?? 0}` }))
    }
    return Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (error) => new InvalidCheckpoint({ path, reason: `not valid JSON: ${error instanceof Error ? error.message : String(error)}` })
    })
  })

/** Reads and decodes `dir/config.json`. */
export const readHfConfig = (dir: string): Effect.Effect<ModelConfig, LoadCheckpointError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const path = joinPath(dir, HF_CONFIG_FILE)
    return yield* decodeHfConfig(yield* parseJson(path, yield* readFileBytes(path)))
  })

/** The weights files of a directory: the single file, or the shards named by the index (sorted, each once). */
const weightFiles = (dir: string): Effect.Effect<{ readonly files: ReadonlyArray<string>; readonly index?: ReadonlyMap<string, string> }, LoadCheckpointError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    if (yield* isFile(joinPath(dir, HF_WEIGHTS_FILE))) return { files: [HF_WEIGHTS_FILE] }
    const indexPath = joinPath(dir, HF_INDEX_FILE)
    if (!(yield* isFile(indexPath))) {
      const pickle = (yield* isFile(joinPath(dir, "pytorch_model.bin"))) || (yield* isFile(joinPath(dir, "pytorch_model.bin.index.json")))
      const hint = pickle ? "; found PyTorch pickle weights (pytorch_model.bin), which are not read: re-save with save_pretrained(safe_serialization=True)" : ""
      return yield* new InvalidCheckpoint({ path: dir, reason: `no ${HF_WEIGHTS_FILE} or ${HF_INDEX_FILE}${hint}` })
    }
    const json = yield* parseJson(indexPath, yield* readFileBytes(indexPath))
    const weightMap = typeof json === "object" && json !== null ? (json as { weight_map?: unknown }).weight_map : undefined
    if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
      return yield* new InvalidCheckpoint({ path: indexPath, reason: "has no 'weight_map' object (tensor name -> shard file)" })
    }
    const index = new Map<string, string>()
    for (const [name, file] of Object.entries(weightMap)) {
      // Shard names are plain file names next to the index; anything else could read outside the directory.
      if (typeof file !== "string" || file === "" || file.includes("/") || file.includes("\\") || file === "." || file === "..") {
        return yield* new InvalidCheckpoint({ path: indexPath, tensor: name, reason: `weight_map entry ${JSON.stringify(file)} is not a file name in this directory` })
      }
      index.set(name, file)
    }
    return { files: [...new Set(index.values())].sort(), index }
  })

interface Planned {
  readonly file: string
  readonly rawName: string
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
}

/**
 * Loads the config and the weights of a Hugging Face model directory (see the module comment for
 * the passes, the checks and the memory bound). The caller owns the returned tensors.
 */
export const loadHfModel = (dir: string): Effect.Effect<LoadedCheckpoint, LoadCheckpointError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const config = yield* readHfConfig(dir)
    const { files, index } = yield* weightFiles(dir)

    // Pass 1: headers.
    const found = new Map<string, Planned>()
    const extras: Array<Planned> = []
    for (const file of files) {
      const path = joinPath(dir, file)
      if (!(yield* isFile(path))) {
        return yield* new InvalidCheckpoint({ path, reason: `shard listed in ${HF_INDEX_FILE} is missing` })
      }
      const header = yield* readSafetensorsHeader(path)
      for (const [rawName, entry] of header) {
        const name = normalizeWeightName(config, rawName)
        const previous = found.get(name)
        if (previous !== undefined) {
          return yield* new InvalidCheckpoint({ path, tensor: rawName, reason: `also stored in ${previous.file} (as '${previous.rawName}')` })
        }
        found.set(name, { file, rawName, ...entry })
      }
    }
    if (index !== undefined) {
      for (const [rawName, file] of index) {
        const planned = found.get(normalizeWeightName(config, rawName))
        if (planned === undefined || planned.rawName !== rawName || planned.file !== file) {
          return yield* new InvalidCheckpoint({ path: joinPath(dir, file), tensor: rawName, reason: `${HF_INDEX_FILE} places it in ${file}, which does not hold it` })
        }
      }
    }
    // The config's sizes against the files before anything is listed or allocated: a layer count
    // the headers cannot hold is refused here (shapes are then compared one by one).
    // Too few tensors: list only as many layers as there are tensors (some is then missing, named).
    const count = hfWeightCount(config)
    const short = count > found.size
    const expected = hfWeightShapes(short ? { ...config, numHiddenLayers: Math.min(config.numHiddenLayers, found.size) } : config)
    const needed = new Map<string, Planned>()
    for (const [name, shape] of expected) {
      const planned = found.get(name)
      if (planned === undefined) {
        const where = files.length === 1 ? joinPath(dir, files[0]!) : joinPath(dir, HF_INDEX_FILE)
        const counts = config.numHiddenLayers > found.size ? ` (num_hidden_layers ${config.numHiddenLayers}: ${count} tensors, the files hold ${found.size})` : ""
        return yield* new InvalidCheckpoint({ path: where, tensor: name, reason: `missing; ${config.modelType} with this config.json needs it${counts}` })
      }
      if (!sameShape(planned.shape, shape)) return yield* new ShapeMismatch({ what: name, expected: shape, actual: planned.shape })
      if (!FLOAT_DTYPES.includes(planned.dtype)) {
        return yield* new InvalidCheckpoint({ path: joinPath(dir, planned.file), tensor: planned.rawName, reason: `dtype ${planned.dtype} is not a float dtype (F32, F16, BF16)` })
      }
      needed.set(name, planned)
    }
    if (short) {
      return yield* new InvalidCheckpoint({ path: joinPath(dir, HF_CONFIG_FILE), reason: `num_hidden_layers ${config.numHiddenLayers} needs ${count} tensors, the safetensors files hold ${found.size}` })
    }
    const warnings: Array<string> = []
    for (const [name, planned] of found) {
      if (expected.has(name) || isDerivedBuffer(name)) continue
      if (name === LM_HEAD && config.tieWordEmbeddings) {
        warnings.push(`${LM_HEAD} ignored: tie_word_embeddings is true, so the output head is the token embedding`)
      } else {
        extras.push(planned)
      }
    }
    if (extras.length > 0) {
      const shown = extras.slice(0, 5).map((p) => p.rawName).join(", ")
      warnings.push(`${extras.length} tensor(s) not used by ${config.modelType} were ignored: ${shown}${extras.length > 5 ? ", ..." : ""}`)
    }

    // Pass 2: data, one file at a time.
    const weights = new Map<string, tf.Tensor>()
    const byFile = new Map<string, Map<string, string>>() // file -> raw name -> HF name
    for (const [name, planned] of needed) {
      const entry = byFile.get(planned.file) ?? new Map<string, string>()
      entry.set(planned.rawName, name)
      byFile.set(planned.file, entry)
    }
    yield* Effect.forEach(
      files.filter((file) => byFile.has(file)),
      (file) => loadFile(joinPath(dir, file), byFile.get(file)!, expected, weights, warnings),
      { discard: true }
    ).pipe(Effect.onError(() => Effect.sync(() => disposeWeights(weights))))

    // Module order, whatever the file order was.
    const ordered = new Map<string, tf.Tensor>([...expected.keys()].map((name) => [name, weights.get(name)!]))
    return {
      config,
      weights: ordered,
      ignoredTensors: extras.map((p) => p.rawName),
      warnings,
      sourceDtypes: [...new Set([...needed.values()].map((p) => p.dtype))].sort()
    }
  })

const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => a.length === b.length && a.every((dim, i) => dim === b[i])

/** NaN/Inf values of a float view, counted on the stored bits (no conversion for F16/BF16). */
const nonFiniteCount = (view: Safetensors.TensorView): number => {
  let bad = 0
  if (view.dtype === "F16" || view.dtype === "BF16") {
    const mask = view.dtype === "F16" ? 0x7c00 : 0x7f80
    const d = view.data
    for (let i = 0; i + 1 < d.length; i += 2) if (((d[i]! | (d[i + 1]! << 8)) & mask) === mask) bad++
    return bad
  }
  const values = Safetensors.toFloat32(view)
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) bad++
  return bad
}

// Tensor by tensor: only one tensor's bytes are held at a time, never a whole file.
const loadFile = (
  path: string,
  wanted: ReadonlyMap<string, string>,
  expected: ReadonlyMap<string, ReadonlyArray<number>>,
  weights: Map<string, tf.Tensor>,
  warnings: Array<string>
): Effect.Effect<void, LoadCheckpointError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    let mismatch: ShapeMismatch | undefined
    yield* readSafetensorsTensors(path, (rawName) => wanted.has(rawName), (view) => {
      const name = wanted.get(view.name)!
      const shape = expected.get(name)!
      // The header was checked in pass 1; a file rewritten since is caught here.
      if (!sameShape(view.shape, shape)) mismatch ??= new ShapeMismatch({ what: name, expected: shape, actual: view.shape })
      else {
        const bad = nonFiniteCount(view)
        if (bad > 0) warnings.push(`${name} holds ${bad} non-finite value(s) (NaN or Inf)`)
        weights.set(name, Safetensors.toTensor(view))
      }
    })
    if (mismatch !== undefined) return yield* mismatch
    for (const [rawName, name] of wanted) {
      if (!weights.has(name)) return yield* new InvalidCheckpoint({ path, tensor: rawName, reason: "vanished from the file between header check and load" })
    }
  })


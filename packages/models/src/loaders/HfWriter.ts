/**
 * Writes a model as a Hugging Face directory that `AutoModelForCausalLM.from_pretrained(dir)` loads
 * (and `loadHfModel` reads back): `config.json` and `model.safetensors` with metadata
 * `{"format": "pt"}`, or, above `shardBytes`, `model-00001-of-0000N.safetensors` shards plus
 * `model.safetensors.index.json` (`metadata.total_size`, `weight_map`). This is what `peftkit merge`
 * uses for merged weights.
 *
 * - The state dict is checked against the config first (every weight present, right shape, nothing
 *   else: a leftover adapter tensor is an error, not a silently ignored key). A tied output head
 *   (`lm_head.weight` when `tieWordEmbeddings`) is not written twice.
 * - A llama2.c model (`ropeLayout: "interleaved"`) gets its q/k rows permuted to HF's half layout,
 *   so transformers computes the same logits.
 * - Weights are written as F32 (default), F16 or BF16 (rounded to nearest even).
 * - Each file is written atomically (temp file, fsync, rename); shards first, then the index, then
 *   stale weights files of an earlier save are removed (an old `model.safetensors` would shadow new
 *   shards), `config.json` last. One shard's bytes are held at a time. The directory as a whole is
 *   not swapped atomically: an interrupted save can leave new weights beside the old config.
 */
import type { FileSystem } from "@effect/platform"
import { ConfigError, type FileError, InvalidCheckpoint, Safetensors, ShapeMismatch, writeFileAtomic } from "@peftkit/core"
import type * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { ModelConfig } from "../ModelConfig.js"
import { HF_CONFIG_FILE, HF_INDEX_FILE, HF_WEIGHTS_FILE } from "./HfCheckpoint.js"
import { type HfTorchDtype, toHfConfig } from "./HfConfig.js"
import { joinPath, listDirectory, removePath } from "./internal/SafetensorsReads.js"
import { interleavedToHalf } from "./RopePermutation.js"
import { hfWeightShapes, LM_HEAD } from "./WeightSpec.js"

/** The dtype the weights are stored in. */
export type HfSaveDtype = "F32" | "F16" | "BF16"

export interface SaveHfOptions {
  /**
   * Largest shard in bytes (default 2,000,000,000: every shard stays readable in one buffer on any
   * Node, including `fs.readFile`'s 2 GiB limit). Everything that fits is one `model.safetensors`; a
   * single tensor larger than this gets a shard of its own, as transformers does.
   */
  readonly shardBytes?: number
  /** Storage dtype (default "F32"). */
  readonly dtype?: HfSaveDtype
}

export interface SavedHfModel {
  /** The files written, relative to the directory, config last. */
  readonly files: ReadonlyArray<string>
  /** Bytes of tensor data (the index's `total_size`). */
  readonly totalBytes: number
}

export type SaveHfError = FileError | InvalidCheckpoint | ShapeMismatch | ConfigError

export const DEFAULT_SHARD_BYTES = 2_000_000_000

const torchDtype: Record<HfSaveDtype, HfTorchDtype> = { F32: "float32", F16: "float16", BF16: "bfloat16" }
const dtypeBytes: Record<HfSaveDtype, number> = { F32: 4, F16: 2, BF16: 2 }

/** `model-00001-of-00003.safetensors`, transformers' shard naming. */
export const shardFileName = (index: number, count: number): string =>
  `model-${String(index + 1).padStart(5, "0")}-of-${String(count).padStart(5, "0")}.safetensors`

const SHARD_PATTERN = /^model-\d{5}-of-\d{5}\.safetensors$/

const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => a.length === b.length && a.every((dim, i) => dim === b[i])

/** Checks the state dict against the config; returns the tensors to write, in module order. */
const checkStateDict = (
  dir: string,
  config: ModelConfig,
  stateDict: ReadonlyMap<string, tf.Tensor>
): Effect.Effect<ReadonlyArray<readonly [string, tf.Tensor]>, SaveHfError> =>
  Effect.gen(function* () {
    if (config.modelType === "qwen2" && !config.attentionBias) {
      return yield* new ConfigError({ field: "config.attentionBias", reason: "transformers' Qwen2 always has q/k/v biases; save as modelType 'llama' instead" })
    }
    if (config.modelType === "mistral" && config.attentionBias) {
      return yield* new ConfigError({ field: "config.attentionBias", reason: "transformers' Mistral has no q/k/v biases; save as modelType 'llama' instead" })
    }
    const expected = hfWeightShapes(config)
    for (const [name, tensor] of stateDict) {
      if (expected.has(name) || (name === LM_HEAD && config.tieWordEmbeddings)) {
        if (tensor.dtype !== "float32") return yield* new InvalidCheckpoint({ path: dir, tensor: name, reason: `dtype ${tensor.dtype}, expected float32` })
        continue
      }
      return yield* new InvalidCheckpoint({ path: dir, tensor: name, reason: `not a weight of ${config.modelType} with this config (an adapter that was not merged?)` })
    }
    const out: Array<readonly [string, tf.Tensor]> = []
    for (const [name, shape] of expected) {
      const tensor = stateDict.get(name)
      if (tensor === undefined) return yield* new InvalidCheckpoint({ path: dir, tensor: name, reason: "missing from the state dict" })
      if (!sameShape(tensor.shape, shape)) return yield* new ShapeMismatch({ what: name, expected: shape, actual: tensor.shape })
      out.push([name, tensor])
    }
    return out
  })

const ROPE_ROWS = /^model\.layers\.\d+\.self_attn\.(q|k)_proj\.(weight|bias)$/

/** Greedy in module order, as transformers' `split_torch_state_dict_into_shards`. */
const planShards = (sizes: ReadonlyArray<number>, shardBytes: number): ReadonlyArray<ReadonlyArray<number>> => {
  const shards: Array<Array<number>> = []
  let current: Array<number> = []
  let bytes = 0
  sizes.forEach((size, i) => {
    if (current.length > 0 && bytes + size > shardBytes) {
      shards.push(current)
      current = []
      bytes = 0
    }
    current.push(i)
    bytes += size
  })
  if (current.length > 0) shards.push(current)
  return shards
}

/**
 * Saves `config` and `stateDict` (HF names, float32; e.g. `model.stateDict()`) into `dir` in the
 * Hugging Face layout. The tensors are read (`dataSync`), not disposed.
 */
export const saveHfModel = (
  dir: string,
  config: ModelConfig,
  stateDict: Readonly<Record<string, tf.Tensor>> | ReadonlyMap<string, tf.Tensor>,
  options: SaveHfOptions = {}
): Effect.Effect<SavedHfModel, SaveHfError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const dtype = options.dtype ?? "F32"
    const shardBytes = options.shardBytes ?? DEFAULT_SHARD_BYTES
    if (!(Number.isSafeInteger(shardBytes) && shardBytes > 0)) {
      return yield* new ConfigError({ field: "saveHfModel.shardBytes", reason: "must be a positive integer" })
    }
    if (!(dtype in dtypeBytes)) return yield* new ConfigError({ field: "saveHfModel.dtype", reason: "must be one of F32, F16, BF16" })
    const named = stateDict instanceof Map ? stateDict : new Map(Object.entries(stateDict))
    const tensors = yield* checkStateDict(dir, config, named)

    const sizes = tensors.map(([, tensor]) => tensor.size * dtypeBytes[dtype])
    const totalBytes = sizes.reduce((a, b) => a + b, 0)
    const shards = totalBytes <= shardBytes ? [tensors.map((_, i) => i)] : planShards(sizes, shardBytes)
    const fileOf = (shard: number) => (shards.length === 1 ? HF_WEIGHTS_FILE : shardFileName(shard, shards.length))

    // q/k rows per head: llama2.c pairs (2i, 2i+1), HF halves (i, i + d/2).
    const ropeHeads = config.modelType !== "opt" && config.ropeLayout === "interleaved" ? { q: config.numAttentionHeads, k: config.numKeyValueHeads } : undefined
    // Read back with `await data()`: GPU-safe (dataSync fails on WebGPU) and non-blocking.
    const values = async (name: string, tensor: tf.Tensor): Promise<Float32Array> => {
      const match = ropeHeads === undefined ? null : ROPE_ROWS.exec(name)
      if (match === null || ropeHeads === undefined) return (await tensor.data()) as Float32Array
      const permuted = interleavedToHalf(tensor, match[1] === "q" ? ropeHeads.q : ropeHeads.k)
      try {
        return (await permuted.data()) as Float32Array
      } finally {
        permuted.dispose()
      }
    }

    const written: Array<string> = []
    const weightMap: Record<string, string> = {}
    for (const [s, members] of shards.entries()) {
      const file = fileOf(s)
      // Encoded inside the loop: this shard's bytes become garbage before the next is built.
      const inputs: Array<Safetensors.TensorInput> = []
      for (const i of members) {
        const [name, tensor] = tensors[i]!
        weightMap[name] = file
        inputs.push({ name, dtype, shape: tensor.shape, data: yield* Effect.promise(() => values(name, tensor)) })
      }
      const bytes = Safetensors.encode(inputs, { format: "pt" })
      yield* writeFileAtomic(joinPath(dir, file), bytes)
      written.push(file)
    }
    if (shards.length > 1) {
      const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      yield* writeFileAtomic(joinPath(dir, HF_INDEX_FILE), `${JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: sorted }, null, 2)}\n`)
      written.push(HF_INDEX_FILE)
    }
    // Stale weights of an earlier save in the same directory: transformers (and loadHfModel) would
    // prefer an old model.safetensors over new shards, and old shards would linger.
    for (const name of yield* listDirectory(dir)) {
      const stale = written.includes(name)
        ? false
        : name === HF_WEIGHTS_FILE || name === HF_INDEX_FILE || SHARD_PATTERN.test(name)
      if (stale) yield* removePath(joinPath(dir, name))
    }
    const hfConfig = toHfConfig(config, { torchDtype: torchDtype[dtype] })
    yield* writeFileAtomic(joinPath(dir, HF_CONFIG_FILE), `${JSON.stringify(hfConfig, null, 2)}\n`)
    written.push(HF_CONFIG_FILE)
    return { files: written, totalBytes }
  })

/**
 * What the person dropped, sorted out before anything big is read: a Hugging Face directory
 * (config.json, safetensors shards, tokenizer.json) or a llama2.c .bin with its tokenizer .bin. The
 * model's size comes from its config or header alone, so a model too big for the tab is refused
 * before a byte of its weights is read.
 */
import { ConfigError, InvalidCheckpoint } from "@peftkit/core"
import { decodeHfConfig, hfWeightShapes, llama2cConfig, type ModelConfig, parseLlama2cHeader } from "@peftkit/models"
import { Effect } from "effect"
import type { DroppedFile } from "../protocol.js"

export interface SortedModelFiles {
  readonly kind: "hf" | "llama2c"
  /** Where the files go in the worker's in-memory file system, and the path the loaders are given. */
  readonly root: string
  readonly modelPath: string
  readonly files: ReadonlyArray<{ readonly path: string; readonly file: Blob }>
  readonly config: ModelConfig
  readonly parameters: number
  readonly bytes: number
  readonly name: string
}

export const NOT_A_MODEL =
  "this is not a model: drop a Hugging Face model folder (config.json, model.safetensors or its shards, tokenizer.json) or a llama2.c .bin together with its tokenizer .bin"

/**
 * The parameter count the config declares, from the weight shapes of a 0- and a 1-layer model (a
 * config claiming a million layers is counted without listing a million layers' names).
 */
export const declaredParameters = (config: ModelConfig): number => {
  const size = (layers: number) => [...hfWeightShapes({ ...config, numHiddenLayers: layers }).values()].reduce((sum, shape) => sum + shape.reduce((n, d) => n * d, 1), 0)
  const none = size(0)
  return none + config.numHiddenLayers * (size(1) - none)
}

const baseName = (path: string) => path.slice(path.lastIndexOf("/") + 1)
const dirName = (path: string) => (path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "")

const readJson = (file: Blob, path: string) =>
  Effect.tryPromise({
    try: async () => JSON.parse(await file.text()) as unknown,
    catch: () => new InvalidCheckpoint({ path, reason: "not JSON" })
  })

/** Sorts dropped files into a model; fails with a message a person can act on. */
export const sortModelFiles = (dropped: ReadonlyArray<DroppedFile>): Effect.Effect<SortedModelFiles, ConfigError | InvalidCheckpoint> =>
  Effect.gen(function* () {
    const configs = dropped.filter((entry) => baseName(entry.path) === "config.json")
    const bytes = dropped.reduce((sum, entry) => sum + entry.file.size, 0)
    if (configs.length > 1) return yield* new ConfigError({ field: "model", reason: `several config.json files (${configs.map((c) => c.path).join(", ")}): drop one model folder` })
    if (configs.length === 1) {
      const dir = dirName(configs[0]!.path)
      const inside = dropped.filter((entry) => dirName(entry.path) === dir)
      if (!inside.some((entry) => entry.path.endsWith(".safetensors"))) {
        return yield* new ConfigError({ field: "model", reason: `${dir || "the dropped folder"} has config.json but no .safetensors weights (PyTorch .bin weights are not read: convert them to safetensors)` })
      }
      if (!inside.some((entry) => baseName(entry.path) === "tokenizer.json")) {
        return yield* new ConfigError({ field: "model", reason: `${dir || "the dropped folder"} has no tokenizer.json: drop the whole model folder` })
      }
      const config = yield* decodeHfConfig(yield* readJson(configs[0]!.file, configs[0]!.path))
      return {
        kind: "hf",
        root: "/model",
        modelPath: "/model",
        files: inside.map((entry) => ({ path: `/model/${baseName(entry.path)}`, file: entry.file })),
        config,
        parameters: declaredParameters(config),
        bytes,
        name: dir === "" ? "dropped model" : baseName(dir)
      }
    }
    const bins = dropped.filter((entry) => entry.path.endsWith(".bin"))
    const isTokenizer = (name: string) => name === "tokenizer.bin" || /^tok.*\.bin$/.test(name)
    const models = bins.filter((entry) => !isTokenizer(baseName(entry.path)))
    if (models.length === 1) {
      const model = models[0]!
      const header = yield* parseLlama2cHeader(new Uint8Array(yield* Effect.promise(() => model.file.slice(0, 28).arrayBuffer())), model.path)
      if (!bins.some((entry) => isTokenizer(baseName(entry.path)))) {
        return yield* new ConfigError({ field: "model", reason: `${baseName(model.path)} is a llama2.c model but no tokenizer came with it: drop its tokenizer .bin (tokenizer.bin or tok*.bin) too` })
      }
      const config = llama2cConfig(header)
      return {
        kind: "llama2c",
        root: "/model",
        modelPath: `/model/${baseName(model.path)}`,
        files: bins.map((entry) => ({ path: `/model/${baseName(entry.path)}`, file: entry.file })),
        config,
        parameters: declaredParameters(config),
        bytes,
        name: baseName(model.path)
      }
    }
    return yield* new ConfigError({ field: "model", reason: NOT_A_MODEL })
  })

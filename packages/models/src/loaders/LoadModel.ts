/**
 * One entry point for "a model path": a directory is read as a Hugging Face model
 * (`loadHfModel`), a file as a llama2.c checkpoint (`loadLlama2c`). `loadModelWith` also builds the
 * model through a factory (e.g. `Llama.fromWeights`), so the loaders need no import of the model
 * classes, and disposes the loaded tensors once the model holds its own copies.
 */
import type { FileSystem } from "@effect/platform"
import { attempt, FileError, InvalidCheckpoint, readHead, type ThrownError } from "@peftkit/core"
import type * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { ModelConfig } from "../ModelConfig.js"
import { loadHfModel } from "./HfCheckpoint.js"
import { pathKind } from "./internal/SafetensorsReads.js"
import { loadLlama2c } from "./Llama2c.js"
import { disposeWeights, type LoadCheckpointError, type LoadedCheckpoint } from "./LoadedCheckpoint.js"

/** Builds a model from a config and HF-named weights; must copy what it keeps (the caller disposes the weights). */
export type ModelFactory<M> = (config: ModelConfig, weights: ReadonlyMap<string, tf.Tensor>) => M

/** What a file that is no model at all is told. */
export const NOT_A_MODEL = "not a model checkpoint: expected a Hugging Face model directory or a llama2.c .bin file"

// The legacy header is 7 little-endian int32; newer exports start with the magic "ak42".
const LLAMA2C_HEADER = 28
const LLAMA2C_MAGIC = 0x616b3432

/**
 * Whether a file's first bytes could be a llama2.c header at all: every size in a range no real
 * model leaves (a jsonl or text file reads as sizes in the hundreds of millions). The full header
 * checks (head split, file size) stay with the loader; this only tells "not a model" from "a broken
 * model". Files shorter than a header, and the newer "ak42" exports, are left to the loader.
 */
export const looksLikeLlama2c = (head: Uint8Array): boolean => {
  if (head.byteLength < LLAMA2C_HEADER) return true
  const view = new DataView(head.buffer, head.byteOffset, LLAMA2C_HEADER)
  if (view.getUint32(0, true) === LLAMA2C_MAGIC) return true
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = Array.from({ length: 7 }, (_, i) => view.getInt32(4 * i, true)) as [number, number, number, number, number, number, number]
  const within = (value: number, max: number) => value >= 1 && value <= max
  return (
    within(dim, 1 << 17) &&
    within(hiddenDim, 1 << 19) &&
    within(nLayers, 1 << 12) &&
    within(nHeads, dim) &&
    within(nKvHeads, nHeads) &&
    within(Math.abs(vocab), 1 << 22) &&
    within(seqLen, 1 << 24)
  )
}

/** The start of a file that reads as text, quoted for the error (else ""). */
const textStart = (head: Uint8Array): string => {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(head)
  if (!/^[\t\n\r\x20-\x7e\u00a0-\uffff]+$/.test(text) || text.includes("\ufffd")) return ""
  const line = text.split(/\r?\n/)[0]!.trim()
  return line === "" ? "" : ` (it starts with text: ${JSON.stringify(line.length > 24 ? `${line.slice(0, 24)}...` : line)})`
}

/** A file: a llama2.c checkpoint if its header looks like one, else "not a model checkpoint". */
const loadModelFile = (path: string): Effect.Effect<LoadedCheckpoint, LoadCheckpointError, FileSystem.FileSystem> =>
  Effect.flatMap(readHead(path, 64), (head) =>
    looksLikeLlama2c(head) ? loadLlama2c(path) : Effect.fail(new InvalidCheckpoint({ path, reason: `${NOT_A_MODEL}${textStart(head)}` }))
  )

/** A Hugging Face model directory or a llama2.c checkpoint file, by what `path` is. */
export const loadCheckpoint = (path: string): Effect.Effect<LoadedCheckpoint, LoadCheckpointError, FileSystem.FileSystem> =>
  Effect.flatMap(pathKind(path), (kind): Effect.Effect<LoadedCheckpoint, LoadCheckpointError, FileSystem.FileSystem> => {
    switch (kind) {
      case "directory":
        return loadHfModel(path)
      case "file":
        return loadModelFile(path)
      case "missing":
        return Effect.fail(new FileError({ path, operation: "stat", reason: "no such file or directory (expected a Hugging Face model directory or a llama2.c .bin file)" }))
      default:
        return Effect.fail(new InvalidCheckpoint({ path, reason: "neither a directory nor a regular file" }))
    }
  })

export interface LoadedModel<M> {
  readonly model: M
  readonly config: ModelConfig
  readonly ignoredTensors: ReadonlyArray<string>
  readonly warnings: ReadonlyArray<string>
}

/**
 * Loads `path` (see `loadCheckpoint`) and builds the model with `build`. The loaded tensors are
 * disposed afterwards, whether `build` succeeds or throws; typed errors it throws (`ShapeMismatch`,
 * `InvalidCheckpoint`, `ConfigError`) become failures, anything else stays a defect.
 */
export const loadModelWith = <M>(path: string, build: ModelFactory<M>): Effect.Effect<LoadedModel<M>, LoadCheckpointError | ThrownError, FileSystem.FileSystem> =>
  Effect.acquireUseRelease(
    loadCheckpoint(path),
    (loaded) =>
      Effect.map(attempt(() => build(loaded.config, loaded.weights)), (model) => ({
        model,
        config: loaded.config,
        ignoredTensors: loaded.ignoredTensors,
        warnings: loaded.warnings
      })),
    (loaded) => Effect.sync(() => disposeWeights(loaded.weights))
  )

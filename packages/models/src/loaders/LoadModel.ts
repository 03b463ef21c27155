/**
 * One entry point for "a model path": a directory is read as a Hugging Face model
 * (`loadHfModel`), a file as a llama2.c checkpoint (`loadLlama2c`). `loadModelWith` also builds the
 * model through a factory (e.g. `Llama.fromWeights`), so the loaders need no import of the model
 * classes, and disposes the loaded tensors once the model holds its own copies.
 */
import type { FileSystem } from "@effect/platform"
import { attempt, FileError, InvalidCheckpoint, type ThrownError } from "@peftkit/core"
import type * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { ModelConfig } from "../ModelConfig.js"
import { loadHfModel } from "./HfCheckpoint.js"
import { pathKind } from "./internal/SafetensorsReads.js"
import { loadLlama2c } from "./Llama2c.js"
import { disposeWeights, type LoadCheckpointError, type LoadedCheckpoint } from "./LoadedCheckpoint.js"

/** Builds a model from a config and HF-named weights; must copy what it keeps (the caller disposes the weights). */
export type ModelFactory<M> = (config: ModelConfig, weights: ReadonlyMap<string, tf.Tensor>) => M

/** A Hugging Face model directory or a llama2.c checkpoint file, by what `path` is. */
export const loadCheckpoint = (path: string): Effect.Effect<LoadedCheckpoint, LoadCheckpointError, FileSystem.FileSystem> =>
  Effect.flatMap(pathKind(path), (kind): Effect.Effect<LoadedCheckpoint, LoadCheckpointError, FileSystem.FileSystem> => {
    switch (kind) {
      case "directory":
        return loadHfModel(path)
      case "file":
        return loadLlama2c(path)
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

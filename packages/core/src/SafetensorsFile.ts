/**
 * safetensors files on the program's `FileSystem`: read-and-validate, and atomic writes of named tfjs tensors, so an
 * interrupted save leaves the previous checkpoint intact.
 */
import type * as tf from "@tensorflow/tfjs-core"
import type { FileSystem } from "@effect/platform"
import { Effect } from "effect"
import { readFileBytes, writeFileAtomic } from "./AtomicFile.js"
import type { FileError } from "./Errors.js"
import { decode, encodeTensorsAsync } from "./Safetensors.js"
import type { InvalidSafetensors, SafetensorsFile } from "./Safetensors.js"

/** Reads and validates a whole file; tensor data are views into the bytes read. */
export const readSafetensors = (path: string): Effect.Effect<SafetensorsFile, InvalidSafetensors | FileError, FileSystem.FileSystem> =>
  Effect.flatMap(readFileBytes(path), (bytes) => decode(bytes, path))

/**
 * Writes named tensors (float32 -> F32, int32 -> I32, bool -> BOOL) atomically. Tensors are read
 * synchronously when the Effect runs (see `encodeTensors`); a tensor of another dtype, a disposed
 * tensor or a non-string metadata value is a programming error and surfaces as a defect.
 */
export const writeSafetensors = (
  path: string,
  tensors: Readonly<Record<string, tf.Tensor>>,
  metadata?: Readonly<Record<string, string>>
): Effect.Effect<void, FileError, FileSystem.FileSystem> =>
  Effect.flatMap(
    Effect.promise(() => encodeTensorsAsync(tensors, metadata)),
    (bytes) => writeFileAtomic(path, bytes)
  )

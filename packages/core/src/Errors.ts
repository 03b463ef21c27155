/**
 * The typed errors of peftkit. Each is an Effect `Data.TaggedError`, so it is both a value in an
 * Effect's error channel and a plain `Error` that synchronous tfjs code may throw; boundaries
 * (`Effect.try`) turn throws back into typed failures.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Data, Effect } from "effect"
import { backendOps } from "./BackendOps.js"

/** A config value failed to decode; `field` is the dotted path of the offending key. */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly field: string
  readonly reason: string
}> {
  override get message(): string {
    return `invalid config: ${this.field === "" ? "(root)" : `'${this.field}'`}: ${this.reason}`
  }
}

/** Two tensors (or a tensor and a declaration) disagree on shape. */
export class ShapeMismatch extends Data.TaggedError("ShapeMismatch")<{
  readonly what: string
  readonly expected: ReadonlyArray<number>
  readonly actual: ReadonlyArray<number>
}> {
  override get message(): string {
    return `shape mismatch for ${this.what}: expected [${this.expected.join(", ")}], got [${this.actual.join(", ")}]`
  }
}

/** A checkpoint, adapter or state file is unusable: missing tensors, unexpected keys, bad metadata. */
export class InvalidCheckpoint extends Data.TaggedError("InvalidCheckpoint")<{
  readonly path: string
  readonly reason: string
  readonly tensor?: string
}> {
  override get message(): string {
    return `invalid checkpoint ${this.path}${this.tensor === undefined ? "" : ` (tensor '${this.tensor}')`}: ${this.reason}`
  }
}

/** The requested compute backend cannot be used here; `install` says what would fix it. */
export class BackendUnavailable extends Data.TaggedError("BackendUnavailable")<{
  readonly backend: string
  readonly reason: string
  readonly install: string
}> {
  override get message(): string {
    return `backend '${this.backend}' is unavailable: ${this.reason}. ${this.install}`
  }
}

const lastCheckpointNote = (lastCheckpoint: number | undefined): string =>
  lastCheckpoint === undefined ? "no checkpoint was written in this run" : `the last checkpoint of this run (step ${lastCheckpoint}) is intact`

/**
 * The training loss became NaN or infinite at `step` (1-based, as report lines count); the
 * parameters after it are not trustworthy and are not saved.
 */
export class NonFiniteLoss extends Data.TaggedError("NonFiniteLoss")<{
  readonly step: number
  readonly value: number
  /** The step of the last checkpoint written in this run, if any. */
  readonly lastCheckpoint?: number
}> {
  override get message(): string {
    return `loss became ${this.value} at step ${this.step}; stopping without saving (${lastCheckpointNote(this.lastCheckpoint)})`
  }
}

/** A trained parameter holds NaN or Inf at `step`: a checkpoint or final save of it is refused. */
export class NonFiniteWeights extends Data.TaggedError("NonFiniteWeights")<{
  readonly step: number
  readonly parameter: string
  readonly lastCheckpoint?: number
}> {
  override get message(): string {
    return `parameter '${this.parameter}' holds NaN or Inf after step ${this.step}; refusing to save it (${lastCheckpointNote(this.lastCheckpoint)}); a lower --learning-rate or gradient clipping usually helps`
  }
}

/** Training stopped on request (a signal) after `step`; `checkpointed` says whether its state was saved. */
export class TrainingInterrupted extends Data.TaggedError("TrainingInterrupted")<{
  readonly step: number
  readonly checkpointed: boolean
}> {
  override get message(): string {
    return `interrupted after step ${this.step}${this.checkpointed ? "; a checkpoint of it was written" : "; nothing was saved"}`
  }
}

/** An adapter variant without a PEFT format was asked to save in PEFT's layout. */
export class NoPeftFormat extends Data.TaggedError("NoPeftFormat")<{
  readonly variant: string
}> {
  override get message(): string {
    return `adapter variant '${this.variant}' has no PEFT format, so it cannot be saved as a PEFT adapter (give its definition a 'format')`
  }
}

/** A file could not be read or written. */
export class FileError extends Data.TaggedError("FileError")<{
  readonly path: string
  readonly operation: "read" | "write" | "rename" | "mkdir" | "stat"
  readonly reason: string
}> {
  override get message(): string {
    return `cannot ${this.operation} ${this.path}: ${this.reason}`
  }
}

/**
 * The backend ran out of memory inside a kernel (the wasm heap at the 4 GiB a WebAssembly module
 * addresses, say). `detail` is the backend's own account: what it holds and what to do.
 */
export class BackendOutOfMemory extends Data.TaggedError("BackendOutOfMemory")<{
  readonly backend: string
  readonly detail: string
}> {
  override get message(): string {
    return `the ${this.backend} backend ran out of memory: ${this.detail}`
  }
}

/** The typed errors synchronous peftkit code may throw (from tfjs math, configs, checkpoints). */
export type ThrownError = ConfigError | ShapeMismatch | InvalidCheckpoint | BackendOutOfMemory

/** A kernel's exception as `BackendOutOfMemory` when the active backend says it is one. */
const asOutOfMemory = (error: unknown): BackendOutOfMemory | undefined => {
  const detail = backendOps().outOfMemory?.(error)
  return detail === undefined ? undefined : new BackendOutOfMemory({ backend: tf.getBackend(), detail })
}

/**
 * Runs synchronous code that may throw peftkit's typed errors: those become typed failures, and so
 * does a kernel's exception that the active backend recognises as running out of memory
 * (`BackendOps.outOfMemory`); any other exception stays a defect (a bug), so `catchTag` sees
 * exactly what it should.
 */
export const attempt = <A>(run: () => A): Effect.Effect<A, ThrownError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(run())
    } catch (error) {
      if (error instanceof ConfigError || error instanceof ShapeMismatch || error instanceof InvalidCheckpoint || error instanceof BackendOutOfMemory) return Effect.fail(error)
      const outOfMemory = asOutOfMemory(error)
      return outOfMemory === undefined ? Effect.die(error) : Effect.fail(outOfMemory)
    }
  })

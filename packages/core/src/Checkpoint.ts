/**
 * Resumable training checkpoints, one directory per step (`<root>/step-000120/`), as HF Trainer's
 * `checkpoint-N` folders. A checkpoint is written into a hidden temp directory and renamed into
 * place only when every file is on disk, so a crash mid-save leaves no half-written checkpoint
 * that looks valid; `latestCheckpoint` only ever sees complete ones. Older checkpoints beyond
 * `keep` are removed after the new one is in place.
 *
 * What goes inside is the caller's: adapter files, optimizer state (`optimizerStateFile`), chain
 * state, and `trainer_state.json` with the step.
 */
import { FileSystem } from "@effect/platform"
import type * as tf from "@tensorflow/tfjs-core"
import { Effect, Option } from "effect"
import { syncDirectory, tempPathBeside } from "./AtomicFile.js"
import { attempt, type FileError, InvalidCheckpoint, type ThrownError } from "./Errors.js"
import { joinPath, listDirectory, readFileBytes, removePath, toFileError } from "./Files.js"
import type { Optimizer } from "./Optimizer.js"
import * as Safetensors from "./Safetensors.js"

export const TRAINER_STATE_FILE = "trainer_state.json"
export const OPTIMIZER_STATE_FILE = "optimizer.safetensors"

/** File name -> contents. */
export type CheckpointFiles = Readonly<Record<string, Uint8Array | string>>

export interface TrainerState {
  readonly step: number
  /** Anything else the run needs to continue (seed, method, chain position, ...). */
  readonly [key: string]: unknown
}

const STEP_DIR = /^step-(\d+)$/

const stepDirName = (step: number) => `step-${String(step).padStart(6, "0")}`

/**
 * Writes `files` plus `trainer_state.json` as the checkpoint of `state.step` under `root`; returns
 * its directory. Keeps the newest `keep` checkpoints (default 2).
 */
export const writeCheckpoint = (
  root: string,
  state: TrainerState,
  files: CheckpointFiles,
  options: { readonly keep?: number } = {}
): Effect.Effect<string, FileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const finalDir = joinPath(root, stepDirName(state.step))
    const tempDir = tempPathBeside(finalDir)
    const all: Record<string, Uint8Array | string> = { ...files, [TRAINER_STATE_FILE]: `${JSON.stringify(state, null, 2)}\n` }
    const write = Effect.gen(function* () {
      yield* fs.makeDirectory(tempDir, { recursive: true })
      for (const [name, data] of Object.entries(all)) {
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(joinPath(tempDir, name), { flag: "w" })
            yield* file.writeAll(typeof data === "string" ? new TextEncoder().encode(data) : data)
            yield* file.sync
          })
        )
      }
      // Re-saving a step replaces the old directory only after the new one is complete.
      yield* fs.remove(finalDir, { recursive: true }).pipe(Effect.catchIf((error) => error._tag === "SystemError" && error.reason === "NotFound", () => Effect.void))
      yield* fs.rename(tempDir, finalDir)
    }).pipe(Effect.mapError(toFileError(finalDir, "write")))
    yield* write.pipe(Effect.tapError(() => Effect.ignore(fs.remove(tempDir, { recursive: true }))))
    yield* syncDirectory(fs, root)
    // Keep the new checkpoint and the newest `keep - 1` others (never delete what was just written).
    const keep = Math.max(1, options.keep ?? 2)
    const others = (yield* listCheckpoints(root)).filter((checkpoint) => checkpoint.dir !== finalDir)
    for (const old of others.slice(0, Math.max(0, others.length - (keep - 1)))) yield* removePath(old.dir)
    return finalDir
  })

/** Complete checkpoints under `root`, oldest first (none when `root` does not exist). */
export const listCheckpoints = (
  root: string
): Effect.Effect<ReadonlyArray<{ readonly step: number; readonly dir: string }>, FileError, FileSystem.FileSystem> =>
  Effect.map(listDirectory(root), (entries) =>
    entries
      .flatMap((name) => {
        const match = STEP_DIR.exec(name)
        return match === null ? [] : [{ step: Number(match[1]), dir: joinPath(root, name) }]
      })
      .sort((a, b) => a.step - b.step)
  )

/** The newest complete checkpoint under `root`, if any. */
export const latestCheckpoint = (
  root: string
): Effect.Effect<Option.Option<{ readonly step: number; readonly dir: string }>, FileError, FileSystem.FileSystem> =>
  Effect.map(listCheckpoints(root), (all) => Option.fromNullable(all.at(-1)))

/** Reads one file of a checkpoint. */
export const readCheckpointFile = (dir: string, name: string): Effect.Effect<Uint8Array, FileError, FileSystem.FileSystem> =>
  readFileBytes(joinPath(dir, name))

/** Reads and checks `trainer_state.json`. */
export const readTrainerState = (dir: string): Effect.Effect<TrainerState, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const bytes = yield* readCheckpointFile(dir, TRAINER_STATE_FILE)
    const where = `${dir}/${TRAINER_STATE_FILE}`
    const state = yield* Effect.try({
      try: () => JSON.parse(new TextDecoder().decode(bytes)) as unknown,
      catch: () => new InvalidCheckpoint({ path: where, reason: "not JSON" })
    })
    if (typeof state !== "object" || state === null || !Number.isInteger((state as { step?: unknown }).step)) {
      return yield* new InvalidCheckpoint({ path: where, reason: "missing integer 'step'" })
    }
    return state as TrainerState
  })

/** The optimizer's state as a safetensors file (reads the state back asynchronously, GPU-safe). */
export const optimizerStateFile = (optimizer: Optimizer): Effect.Effect<Uint8Array> =>
  Effect.acquireUseRelease(
    Effect.sync(() => optimizer.stateDict()),
    (state) => Effect.promise(() => Safetensors.encodeTensorsAsync(state, { optimizer: optimizer.name })),
    (state) => Effect.sync(() => Object.values(state).forEach((tensor) => tensor.dispose()))
  )

/** Restores optimizer state saved by `optimizerStateFile` into `optimizer` (parameters set already). */
export const restoreOptimizer = (
  dir: string,
  optimizer: Optimizer
): Effect.Effect<void, FileError | Safetensors.InvalidSafetensors | ThrownError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const file = `${dir}/${OPTIMIZER_STATE_FILE}`
    const decoded = yield* Safetensors.decode(yield* readCheckpointFile(dir, OPTIMIZER_STATE_FILE), file)
    if (decoded.metadata.optimizer !== undefined && decoded.metadata.optimizer !== optimizer.name) {
      return yield* new InvalidCheckpoint({ path: file, reason: `saved by '${decoded.metadata.optimizer}', restoring into '${optimizer.name}'` })
    }
    const tensors: Record<string, tf.Tensor> = {}
    const release = Effect.sync(() => Object.values(tensors).forEach((tensor) => tensor.dispose()))
    yield* Effect.gen(function* () {
      for (const view of decoded.tensors) tensors[view.name] = yield* Effect.try({ try: () => Safetensors.toTensor(view), catch: (error) => error as Safetensors.InvalidSafetensors })
      yield* attempt(() => optimizer.loadStateDict(tensors))
    }).pipe(Effect.ensuring(release))
  })

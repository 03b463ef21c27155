/**
 * A training method of `peftkit train` (full fine-tuning, LoRA, COLA, ...) as a value: what trains,
 * the hooks and schedule it adds to the loop, what its checkpoints hold, how it resumes from one and
 * what it saves at the end. `train` runs any of them without branching on the name; a new method is
 * a new file here and one entry in `methods`.
 */
import type { FileSystem } from "@effect/platform"
import type { CheckpointFiles, ConfigError, FileError, NoPeftFormat, Optimizer, Schedule, ThrownError, TrainingHook } from "@peftkit/core"
import type { InvalidSafetensors } from "@peftkit/core"
import type { CausalLM } from "@peftkit/models"
import type { Effect } from "effect"
import type { TrainOptions } from "../TrainOptions.js"

export interface MethodContext {
  readonly model: CausalLM
  readonly options: TrainOptions
  /** Total optimizer steps of the run. */
  readonly steps: number
  /** The run's optimizer, still without parameters: the method hands it what trains. */
  readonly optimizer: Optimizer
}

export type MethodFileError = FileError | InvalidSafetensors | NoPeftFormat | ThrownError

/** A method set up on a model: the optimizer already has its parameters. */
export interface ActiveMethod {
  /** One line for the log, e.g. "r=8 alpha=16, 3 links (knots at 100, 200)". */
  readonly describe: string
  readonly hooks: ReadonlyArray<TrainingHook<ConfigError>>
  /** The learning-rate schedule the method trains with, given the run's base schedule. */
  readonly schedule: (base: Schedule) => Schedule
  /** The method's own files in a checkpoint (the optimizer state is added by `train`). */
  readonly checkpointFiles: () => Effect.Effect<CheckpointFiles>
  /** Restores the method's state from a checkpoint directory; all or nothing. */
  readonly restore: (dir: string) => Effect.Effect<void, MethodFileError, FileSystem.FileSystem>
  /** Writes the result into `out` and says what was written. */
  readonly save: (out: string, baseModel: string) => Effect.Effect<string, MethodFileError, FileSystem.FileSystem>
}

export interface TrainingMethod {
  readonly name: string
  readonly setup: (context: MethodContext) => Effect.Effect<ActiveMethod, ThrownError>
}

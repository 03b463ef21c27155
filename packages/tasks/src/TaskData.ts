/**
 * A task's example pools, read from the official files: the pool MeZO samples train and dev from
 * (the official train split) and the pool it samples test from (the official validation split;
 * BoolQ: the two halves of its validation file). Reading is an Effect failing with core's
 * `FileError`, for a missing file as for a malformed row (the error names the file and line).
 */
import type { FileSystem } from "@effect/platform"
import { FileError, readFileBytes } from "@peftkit/core"
import { Effect } from "effect"
import type { Task } from "./Task.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

export interface TaskData<F> {
  readonly task: Task<F>
  /** The pool train and dev are sampled from. */
  readonly trainPool: ReadonlyArray<TaskExample<F>>
  /** The pool test is sampled from. */
  readonly testPool: ReadonlyArray<TaskExample<F>>
}

const parseFile = <F>(task: Task<F>, text: string, split: SplitName, file: string): Effect.Effect<ReadonlyArray<TaskExample<F>>, FileError> =>
  Effect.try({
    try: () => task.parse(text, split, file),
    catch: (error) => (error instanceof FileError ? error : new FileError({ path: file, operation: "read", reason: error instanceof Error ? error.message : String(error) }))
  })

/**
 * Builds the pools from the files' text, for environments without a file system (a browser that
 * fetched them): `texts.train` / `texts.validation` are the contents of `task.files.train` /
 * `task.files.validation` (the same file for BoolQ).
 */
export const taskDataFromText = <F>(task: Task<F>, texts: { readonly train: string; readonly validation: string }): Effect.Effect<TaskData<F>, FileError> =>
  Effect.gen(function*() {
    const validation = yield* parseFile(task, texts.validation, "validation", task.files.validation)
    const train = task.files.train === task.files.validation && texts.train === texts.validation
      ? validation
      : yield* parseFile(task, texts.train, "train", task.files.train)
    const pool = (examples: ReadonlyArray<TaskExample<F>>, purpose: "train" | "test") => (task.pool === undefined ? examples : task.pool(examples, purpose))
    return { task, trainPool: pool(train, "train"), testPool: pool(validation, "test") }
  })

const joinPath = (dir: string, file: string): string => (dir === "" ? file : `${dir.replace(/[/\\]+$/, "")}/${file}`)

/**
 * Reads a task's official files from `dataDir` (the directory holding `glue/` and `superglue/`,
 * e.g. `../shared/data` from this repository's root) and builds its pools.
 */
export const loadTask = <F>(task: Task<F>, dataDir: string): Effect.Effect<TaskData<F>, FileError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const decoder = new TextDecoder("utf-8", { fatal: true })
    const read = (file: string) =>
      readFileBytes(joinPath(dataDir, file)).pipe(
        Effect.flatMap((bytes) =>
          Effect.try({
            try: () => decoder.decode(bytes),
            catch: () => new FileError({ path: joinPath(dataDir, file), operation: "read", reason: "not valid UTF-8" })
          })
        )
      )
    const validation = yield* read(task.files.validation)
    const train = task.files.train === task.files.validation ? validation : yield* read(task.files.train)
    return yield* taskDataFromText(task, { train, validation }).pipe(
      // Name the file by its full path, as the read errors do.
      Effect.mapError((error) =>
        error.path === task.files.train || error.path === task.files.validation ? new FileError({ ...error, path: joinPath(dataDir, error.path) }) : error
      )
    )
  })

/**
 * Crash-safe file writes. A checkpoint written in place and interrupted (crash, Ctrl-C, full disk)
 * is a corrupt checkpoint; writing a temp file in the same directory, syncing it and renaming it
 * over the target means readers see either the old file or the new one, never a mix. Runs on any
 * `FileSystem` (see `Files.ts`).
 */
import { FileSystem } from "@effect/platform"
import { Effect } from "effect"
import type { FileError } from "./Errors.js"
import { baseName, dirName, joinPath, toFileError } from "./Files.js"

export { readFileBytes } from "./Files.js"

const randomSuffix = (): string => {
  const bytes = new Uint8Array(6)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}

/** A fresh temp name beside `path` (same directory, because rename is only atomic within one file system). */
export const tempPathBeside = (path: string): string => joinPath(dirName(path), `.${baseName(path)}.${randomSuffix()}.tmp`)

/**
 * Writes `data` to `path` atomically: temp file in the same directory (created if missing), sync,
 * rename over the target. On any failure or interruption the temp file is removed and the original
 * is untouched. An existing target's permission bits are kept (a 0600 secret stays 0600).
 */
export const writeFileAtomic = (path: string, data: Uint8Array | string): Effect.Effect<void, FileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const dir = dirName(path)
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(toFileError(dir, "mkdir")))
    const mode = yield* fs.stat(path).pipe(
      Effect.map((info) => info.mode & 0o7777),
      Effect.orElseSucceed(() => undefined)
    )
    const temp = tempPathBeside(path)
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data
    const write = Effect.scoped(
      Effect.gen(function* () {
        // "wx": never follow or clobber something that is already at the temp path.
        const file = yield* fs.open(temp, { flag: "wx", ...(mode === undefined ? {} : { mode }) })
        yield* file.writeAll(bytes)
        yield* file.sync
      })
    ).pipe(Effect.mapError(toFileError(temp, "write")))
    yield* Effect.zipRight(write, fs.rename(temp, path).pipe(Effect.mapError(toFileError(path, "rename")))).pipe(
      Effect.onExit((exit) => (exit._tag === "Failure" ? Effect.ignore(fs.remove(temp)) : Effect.void))
    )
    // Keep the bits as they were even where the umask narrowed the open's mode.
    if (mode !== undefined) yield* Effect.ignore(fs.chmod(path, mode))
    yield* syncDirectory(fs, dir)
  })

/** Best effort: sync the directory so the rename itself survives a power cut (not possible everywhere). */
export const syncDirectory = (fs: FileSystem.FileSystem, dir: string): Effect.Effect<void> =>
  Effect.ignore(Effect.scoped(Effect.flatMap(fs.open(dir, { flag: "r" }), (handle) => handle.sync)))

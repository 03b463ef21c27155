/**
 * File access for every peftkit package, over `@effect/platform`'s `FileSystem` service: library
 * code asks for the service and the application provides it (`NodeFileSystem.layer` from
 * `@effect/platform-node` in Node, `MemoryFileSystem.layer()` or an OPFS-backed one in a browser).
 * Core itself imports no `node:*` module, so it bundles for the browser as it is.
 *
 * Failures become core's `FileError` with the path, the operation and the platform's reason, in
 * one place. Paths are plain strings joined with "/" (accepted by Node on every OS and by
 * in-memory file systems alike), so no `Path` service is needed.
 */
import { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import { FileError } from "./Errors.js"

/** The platform's error as a one-line reason (`NotFound: no such file or directory`). */
export const platformReason = (error: PlatformError): string => {
  if (error._tag === "SystemError") {
    const detail = error.description ?? (error.cause instanceof Error ? error.cause.message : undefined)
    return detail === undefined ? error.reason : `${error.reason}: ${detail}`
  }
  return error.description ?? error.message
}

/** Maps a platform failure of `operation` on `path` to a `FileError`. */
export const toFileError = (path: string, operation: FileError["operation"]) => (error: PlatformError): FileError =>
  new FileError({ path, operation, reason: platformReason(error) })

const isNotFound = (error: PlatformError): boolean => error._tag === "SystemError" && error.reason === "NotFound"

/** `dir/name`, without doubling slashes. */
export const joinPath = (dir: string, name: string): string => (dir.endsWith("/") || dir.endsWith("\\") ? `${dir}${name}` : `${dir}/${name}`)

/** The last segment of a path. */
export const baseName = (path: string): string => path.split(/[\\/]/).filter((part) => part !== "").at(-1) ?? path

/** The directory part of a path ("." when there is none). */
export const dirName = (path: string): string => {
  const trimmed = path.replace(/[\\/]+$/, "")
  const index = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"))
  return index < 0 ? "." : index === 0 ? trimmed.slice(0, 1) : trimmed.slice(0, index)
}

/** A whole file's bytes, as a plain `Uint8Array` (not a Node `Buffer`, whose `slice` does not copy). */
export const readFileBytes = (path: string): Effect.Effect<Uint8Array, FileError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFile(path)).pipe(
    Effect.map((bytes) => (Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))),
    Effect.mapError(toFileError(path, "read"))
  )

/** A file's text, decoded as UTF-8 (a leading byte-order mark is dropped). */
export const readText = (path: string): Effect.Effect<string, FileError, FileSystem.FileSystem> =>
  Effect.map(readFileBytes(path), (bytes) => {
    const text = new TextDecoder().decode(bytes)
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  })

/** What is at `path`: a file, a directory, something else, or nothing. */
export const pathKind = (path: string): Effect.Effect<"file" | "directory" | "other" | "missing", FileError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.stat(path)).pipe(
    Effect.map((info) => (info.type === "File" ? ("file" as const) : info.type === "Directory" ? ("directory" as const) : ("other" as const))),
    Effect.catchIf(isNotFound, () => Effect.succeed("missing" as const)),
    Effect.mapError(toFileError(path, "stat"))
  )

/** The names in a directory, sorted ([] when it does not exist). */
export const listDirectory = (path: string): Effect.Effect<ReadonlyArray<string>, FileError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readDirectory(path)).pipe(
    Effect.map((names) => [...names].sort()),
    Effect.catchIf(isNotFound, () => Effect.succeed([] as ReadonlyArray<string>)),
    Effect.mapError(toFileError(path, "read"))
  )

/** Removes a file or a directory tree if it exists. */
export const removePath = (path: string): Effect.Effect<void, FileError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.remove(path, { recursive: true })).pipe(
    Effect.catchIf(isNotFound, () => Effect.void),
    Effect.mapError(toFileError(path, "write"))
  )

// A single read call is limited (Node: 2 GiB), so large ranges are read in 1 GiB pieces.
const CHUNK = 1 << 30

/**
 * A file opened for reading, for the length of `use`: its size and positioned reads that fill the
 * whole buffer (a file that ends early is an error). Loaders read headers and single tensors
 * this way instead of whole multi-gigabyte files.
 */
export interface ReadableFile {
  readonly size: number
  readonly readAt: (bytes: Uint8Array, position: number) => Effect.Effect<void, FileError>
}

export const withReadableFile = <A, E, R>(
  path: string,
  use: (file: ReadableFile) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | FileError, R | FileSystem.FileSystem> =>
  Effect.scoped(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const handle = yield* fs.open(path, { flag: "r" }).pipe(Effect.mapError(toFileError(path, "read")))
      const info = yield* handle.stat.pipe(Effect.mapError(toFileError(path, "stat")))
      const readAt = (bytes: Uint8Array, position: number): Effect.Effect<void, FileError> =>
        Effect.gen(function* () {
          let done = 0
          while (done < bytes.byteLength) {
            yield* handle.seek(position + done, "start")
            const read = Number(yield* handle.read(bytes.subarray(done, done + Math.min(CHUNK, bytes.byteLength - done))).pipe(Effect.mapError(toFileError(path, "read"))))
            if (read === 0) return yield* new FileError({ path, operation: "read", reason: `file ended after ${position + done} bytes, ${bytes.byteLength - done} more expected` })
            done += read
          }
        })
      return yield* use({ size: Number(info.size), readAt })
    })
  )

/** The first `length` bytes of a file (fewer when it is shorter), without reading the rest. */
export const readHead = (path: string, length: number): Effect.Effect<Uint8Array, FileError, FileSystem.FileSystem> =>
  withReadableFile(path, (file) => {
    const bytes = new Uint8Array(Math.min(length, file.size))
    return Effect.as(file.readAt(bytes, 0), bytes)
  })


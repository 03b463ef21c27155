/**
 * Node file-system helpers for the loaders, as Effects failing with core's `FileError`. `node:fs` is
 * imported lazily so browser bundles that construct tokenizers from bytes never touch it.
 */
import { FileError } from "@peftkit/core"
import { Effect } from "effect"

type Fs = typeof import("node:fs/promises")

const reasonOf = (error: unknown): string => {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === undefined || error.message.includes(code) ? error.message : `${code}: ${error.message}`
  }
  return String(error)
}

const withFs = <A>(path: string, operation: FileError["operation"], run: (fs: Fs) => Promise<A>): Effect.Effect<A, FileError> =>
  Effect.tryPromise({
    try: async () => run(await import("node:fs/promises")),
    catch: (error) => new FileError({ path, operation, reason: reasonOf(error) })
  })

/** What is at `path`: a file, a directory, or nothing. Other stat failures are a `FileError`. */
export const pathKind = (path: string): Effect.Effect<"file" | "directory" | "missing" | "other", FileError> =>
  withFs(path, "stat", async (fs) => {
    try {
      const stats = await fs.stat(path)
      return stats.isFile() ? "file" : stats.isDirectory() ? "directory" : "other"
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return "missing"
      throw error
    }
  })

/** The names in a directory, sorted. */
export const listDirectory = (path: string): Effect.Effect<ReadonlyArray<string>, FileError> =>
  withFs(path, "read", async (fs) => (await fs.readdir(path)).sort())

/** A file's bytes. */
export const readBytes = (path: string): Effect.Effect<Uint8Array, FileError> =>
  withFs(path, "read", async (fs) => {
    const buffer = await fs.readFile(path)
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
  })

/** A file's text, decoded as UTF-8 (a leading byte-order mark is dropped). */
export const readText = (path: string): Effect.Effect<string, FileError> =>
  withFs(path, "read", async (fs) => {
    const text = await fs.readFile(path, "utf8")
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  })

/** Joins path segments with "/" (Node accepts it on every platform). */
export const joinPath = (dir: string, name: string): string => (dir.endsWith("/") || dir.endsWith("\\") ? `${dir}${name}` : `${dir}/${name}`)

/** The last segment of a path. */
export const baseName = (path: string): string => path.split(/[\\/]/).filter((part) => part !== "").at(-1) ?? path

/** The directory part of a path ("." when there is none). */
export const dirName = (path: string): string => {
  const index = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"))
  return index < 0 ? "." : index === 0 ? path.slice(0, 1) : path.slice(0, index)
}

/** The first `length` bytes of a file (fewer when it is shorter), without reading the rest. */
export const readHead = (path: string, length: number): Effect.Effect<Uint8Array, FileError> =>
  withFs(path, "read", async (fs) => {
    const handle = await fs.open(path, "r")
    try {
      const buffer = new Uint8Array(length)
      const { bytesRead } = await handle.read(buffer, 0, length, 0)
      return buffer.subarray(0, bytesRead)
    } finally {
      await handle.close()
    }
  })

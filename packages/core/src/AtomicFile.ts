/**
 * Crash-safe file writes for Node. A checkpoint written in place and interrupted (crash, Ctrl-C,
 * full disk) is a corrupt checkpoint; writing a temp file in the same directory, fsyncing it and
 * renaming it over the target means readers see either the old file or the new one, never a mix.
 * `node:fs` is imported lazily inside the Effect, so browser bundles of core that never call these
 * functions do not break.
 */
import { Effect } from "effect"
import { FileError } from "./Errors.js"

type Fs = typeof import("node:fs/promises")
type Path = typeof import("node:path")
type FileHandle = Awaited<ReturnType<Fs["open"]>>

const reasonOf = (error: unknown): string => {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === undefined || error.message.includes(code) ? error.message : `${code}: ${error.message}`
  }
  return String(error)
}

const attempt = <A>(path: string, operation: FileError["operation"], run: () => Promise<A>): Effect.Effect<A, FileError> =>
  Effect.tryPromise({ try: run, catch: (error) => new FileError({ path, operation, reason: reasonOf(error) }) })

const loadNode = (path: string, operation: FileError["operation"]): Effect.Effect<{ readonly fs: Fs; readonly nodePath: Path }, FileError> =>
  attempt(path, operation, async () => ({ fs: await import("node:fs/promises"), nodePath: await import("node:path") })).pipe(
    Effect.mapError((error) => new FileError({ path, operation, reason: `node:fs is unavailable in this environment (${error.reason})` }))
  )

const randomSuffix = (): string => {
  const bytes = new Uint8Array(6)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}

/**
 * Writes `data` to `path` atomically: temp file in the same directory (created if missing), fsync,
 * rename over the target, then a best-effort fsync of the directory so the rename itself survives a
 * power cut. On any failure or interruption the temp file is removed and the original is untouched.
 * An existing target's permission bits are kept.
 */
export const writeFileAtomic = (path: string, data: Uint8Array | string): Effect.Effect<void, FileError> =>
  Effect.gen(function*() {
    const { fs, nodePath } = yield* loadNode(path, "write")
    const dir = nodePath.dirname(path)
    yield* attempt(dir, "mkdir", () => fs.mkdir(dir, { recursive: true }))
    // Keep an existing target's permissions (a 0600 secret stays 0600); new files get the umask default.
    const mode = yield* Effect.promise(() =>
      fs.stat(path).then(
        (stats) => stats.mode & 0o7777,
        () => undefined
      )
    )
    // Same directory, because rename is only atomic within one file system.
    const temp = nodePath.join(dir, `.${nodePath.basename(path)}.${typeof process === "undefined" ? 0 : process.pid}.${randomSuffix()}.tmp`)
    yield* Effect.acquireUseRelease(
      // "wx": never follow or clobber something that is already at the temp path.
      attempt(temp, "write", () => fs.open(temp, "wx")).pipe(Effect.map((handle) => ({ handle, open: true }))),
      (file) =>
        Effect.gen(function*() {
          if (mode !== undefined) yield* attempt(temp, "write", () => file.handle.chmod(mode))
          yield* attempt(temp, "write", () => file.handle.writeFile(data))
          yield* attempt(temp, "write", () => file.handle.sync())
          file.open = false
          yield* attempt(temp, "write", () => file.handle.close())
          yield* attempt(path, "rename", () => fs.rename(temp, path))
        }),
      (file, exit) =>
        Effect.promise(async () => {
          if (file.open) await file.handle.close().catch(() => undefined)
          if (exit._tag === "Failure") await fs.rm(temp, { force: true }).catch(() => undefined)
        })
    )
    yield* Effect.promise(() => syncDirectory(fs, dir))
  })

// Some platforms (Windows) cannot open a directory for fsync; the data itself is already durable.
const syncDirectory = async (fs: Fs, dir: string): Promise<void> => {
  let handle: FileHandle | undefined
  try {
    handle = await fs.open(dir, "r")
    await handle.sync()
  } catch {
    // best effort
  } finally {
    await handle?.close().catch(() => undefined)
  }
}

/** Reads a whole file as a plain `Uint8Array` (not a Node `Buffer`, whose `slice` does not copy). */
export const readFileBytes = (path: string): Effect.Effect<Uint8Array, FileError> =>
  Effect.gen(function*() {
    const { fs } = yield* loadNode(path, "read")
    const buffer = yield* attempt(path, "read", () => fs.readFile(path))
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
  })

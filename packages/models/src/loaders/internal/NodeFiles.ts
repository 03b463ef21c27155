/**
 * The file operations the checkpoint loaders need beyond core's `readFileBytes`/`writeFileAtomic`:
 * existence checks, reading only a safetensors header, reading files larger than `fs.readFile`'s
 * 2 GiB limit, listing and removing files. `node:fs` is imported lazily (as core does), so browser
 * bundles of @peftkit/models that never touch files still build.
 */
import { FileError, Safetensors } from "@peftkit/core"
import { Effect } from "effect"

type Fs = typeof import("node:fs/promises")

const reasonOf = (error: unknown): string => {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === undefined || error.message.includes(code) ? error.message : `${code}: ${error.message}`
  }
  return String(error)
}

const fsModule = (path: string, operation: FileError["operation"]): Effect.Effect<Fs, FileError> =>
  Effect.tryPromise({
    try: () => import("node:fs/promises"),
    catch: (error) => new FileError({ path, operation, reason: `node:fs is unavailable in this environment (${reasonOf(error)})` })
  })

const attempt = <A>(path: string, operation: FileError["operation"], run: (fs: Fs) => Promise<A>): Effect.Effect<A, FileError> =>
  Effect.flatMap(fsModule(path, operation), (fs) =>
    Effect.tryPromise({ try: () => run(fs), catch: (error) => new FileError({ path, operation, reason: reasonOf(error) }) })
  )

/** `dir/file`, without doubling slashes. */
export const joinPath = (dir: string, file: string): string => `${dir.replace(/\/+$/, "")}/${file}`

/** Whether `path` is an existing regular file (false for a missing path; other stat failures are errors). */
export const isFile = (path: string): Effect.Effect<boolean, FileError> =>
  attempt(path, "stat", (fs) =>
    fs.stat(path).then(
      (stats) => stats.isFile(),
      (error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT" || error.code === "ENOTDIR") return false
        throw error
      }
    )
  )

/** The names in a directory ([] when it does not exist). */
export const listDir = (dir: string): Effect.Effect<ReadonlyArray<string>, FileError> =>
  attempt(dir, "read", (fs) =>
    fs.readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return []
      throw error
    })
  )

/** Removes a file if it exists. */
export const removeFile = (path: string): Effect.Effect<void, FileError> => attempt(path, "write", (fs) => fs.rm(path, { force: true }))

// fs.read takes at most 2 GiB per call: larger tensors are read in 1 GiB positioned reads.
const CHUNK = 1 << 30

const readRange = async (handle: Awaited<ReturnType<Fs["open"]>>, bytes: Uint8Array, position: number): Promise<void> => {
  let done = 0
  while (done < bytes.byteLength) {
    const { bytesRead } = await handle.read(bytes, done, Math.min(CHUNK, bytes.byteLength - done), position + done)
    if (bytesRead === 0) throw new Error(`file shrank while reading (${done} of ${bytes.byteLength} bytes at ${position})`)
    done += bytesRead
  }
}

/**
 * Validates a safetensors file from its header and size (core's `decodeLayoutSync`: dtypes, shapes,
 * offsets without holes, overlaps or trailing bytes), then reads only the tensors `wanted` selects,
 * each into its own buffer and handed to `use` before the next is read. Peak memory is one tensor's
 * bytes on top of what `use` keeps, never the whole file.
 */
export const readSafetensorsTensors = (
  path: string,
  wanted: (name: string) => boolean,
  use: (view: Safetensors.TensorView) => void
): Effect.Effect<void, FileError | Safetensors.InvalidSafetensors> =>
  Effect.gen(function* () {
    const handle = yield* attempt(path, "read", (fs) => fs.open(path, "r"))
    const release = Effect.promise(() => handle.close())
    yield* Effect.gen(function* () {
      const { size } = yield* attempt(path, "stat", () => handle.stat())
      const lengthBytes = new Uint8Array(8)
      yield* attempt(path, "read", () => readRange(handle, lengthBytes.subarray(0, Math.min(8, size)), 0))
      const headerLength = size >= 8 ? Number(new DataView(lengthBytes.buffer).getBigUint64(0, true)) : 0
      // A bad length fails on the first 8 bytes (decodeLayoutSync names it), without reading more.
      const plausible = headerLength <= Safetensors.MAX_HEADER_SIZE && 8 + headerLength <= size
      const prefix = plausible ? new Uint8Array(8 + headerLength) : lengthBytes
      yield* attempt(path, "read", () => readRange(handle, prefix, 0))
      const layout = yield* Effect.try({ try: () => Safetensors.decodeLayoutSync(prefix, size, path), catch: (error) => error as Safetensors.InvalidSafetensors })
      for (const entry of layout.entries) {
        if (!wanted(entry.name)) continue
        const data = new Uint8Array(entry.end - entry.begin)
        yield* attempt(path, "read", () => readRange(handle, data, layout.dataStart + entry.begin))
        use({ name: entry.name, dtype: entry.dtype, shape: entry.shape, data })
      }
    }).pipe(Effect.ensuring(release))
  })

/** One tensor's entry in a safetensors header, as declared (checked in full when the file is decoded). */
export interface HeaderEntry {
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
}

const invalid = (path: string, reason: Safetensors.InvalidSafetensorsReason, detail: string) =>
  new Safetensors.InvalidSafetensors({ reason, detail, path })

/**
 * Reads only the JSON header of a safetensors file (8 + N bytes, not the data), so every shard's
 * names and shapes can be checked against the config before gigabytes of data are read. The entries
 * are as declared; offsets and sizes are validated later by core's `Safetensors.decode`.
 */
export const readSafetensorsHeader = (
  path: string
): Effect.Effect<ReadonlyMap<string, HeaderEntry>, FileError | Safetensors.InvalidSafetensors> =>
  Effect.gen(function* () {
    const raw = yield* attempt(path, "read", async (fs) => {
      const handle = await fs.open(path, "r")
      try {
        const { size } = await handle.stat()
        const prefix = new Uint8Array(8)
        const { bytesRead } = await handle.read(prefix, 0, 8, 0)
        if (bytesRead < 8) return { size, length: -1n, header: undefined }
        const length = new DataView(prefix.buffer).getBigUint64(0, true)
        if (length > BigInt(Safetensors.MAX_HEADER_SIZE) || 8n + length > BigInt(size)) return { size, length, header: undefined }
        const header = new Uint8Array(Number(length))
        let filled = 0
        while (filled < header.length) {
          const { bytesRead: n } = await handle.read(header, filled, header.length - filled, 8 + filled)
          if (n === 0) break
          filled += n
        }
        return { size, length, header: header.subarray(0, filled) }
      } finally {
        await handle.close()
      }
    })
    if (raw.length < 0n) return yield* invalid(path, "truncated", `file is ${raw.size} bytes, shorter than the 8-byte header length`)
    if (raw.length > BigInt(Safetensors.MAX_HEADER_SIZE)) return yield* invalid(path, "header-too-large", `header length ${raw.length} exceeds ${Safetensors.MAX_HEADER_SIZE}`)
    if (raw.header === undefined || BigInt(raw.header.length) < raw.length) {
      return yield* invalid(path, "truncated", `header length ${raw.length} needs ${8n + raw.length} bytes, file has ${raw.size}`)
    }
    const header = raw.header
    const json = yield* Effect.try({
      try: () => JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(header)) as unknown,
      catch: (error) => invalid(path, "header-not-json", error instanceof Error ? error.message : String(error))
    })
    if (typeof json !== "object" || json === null || Array.isArray(json)) return yield* invalid(path, "header-not-object", "header JSON is not an object")
    const entries = new Map<string, HeaderEntry>()
    for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
      if (name === "__metadata__") continue
      const entry = value as { dtype?: unknown; shape?: unknown } | null
      if (typeof entry !== "object" || entry === null || typeof entry.dtype !== "string" || !Array.isArray(entry.shape) || !entry.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        return yield* new Safetensors.InvalidSafetensors({ reason: "bad-entry", detail: "entry needs a string 'dtype' and a 'shape' of non-negative integers", tensor: name, path })
      }
      entries.set(name, { dtype: entry.dtype, shape: entry.shape as ReadonlyArray<number> })
    }
    return entries
  })

/** "file", "directory", "other", or "missing". */
export const pathKind = (path: string): Effect.Effect<"file" | "directory" | "other" | "missing", FileError> =>
  attempt(path, "stat", (fs) =>
    fs.stat(path).then(
      (stats) => (stats.isFile() ? "file" : stats.isDirectory() ? "directory" : "other"),
      (error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT" || error.code === "ENOTDIR") return "missing" as const
        throw error
      }
    )
  )

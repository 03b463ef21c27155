/**
 * Partial reads of safetensors files for the loaders, on the program's `FileSystem` (core's
 * `Files.ts`): only a header, or one tensor at a time, so a multi-gigabyte checkpoint is never held
 * twice in memory and a file's declared sizes are checked before anything is allocated.
 */
import type { FileSystem } from "@effect/platform"
import { type FileError, pathKind, Safetensors, withReadableFile } from "@peftkit/core"
import { Effect } from "effect"

export { joinPath, listDirectory, pathKind, removePath } from "@peftkit/core"

/** Whether `path` is an existing regular file. */
export const isFile = (path: string): Effect.Effect<boolean, FileError, FileSystem.FileSystem> =>
  Effect.map(pathKind(path), (kind) => kind === "file")

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
): Effect.Effect<void, FileError | Safetensors.InvalidSafetensors, FileSystem.FileSystem> =>
  withReadableFile(path, (file) =>
    Effect.gen(function* () {
      const size = file.size
      const lengthBytes = new Uint8Array(Math.min(8, size))
      yield* file.readAt(lengthBytes, 0)
      const headerLength = size >= 8 ? Number(new DataView(lengthBytes.buffer).getBigUint64(0, true)) : 0
      // A bad length fails on the first 8 bytes (decodeLayoutSync names it), without reading more.
      const plausible = headerLength <= Safetensors.MAX_HEADER_SIZE && 8 + headerLength <= size
      const prefix = plausible ? new Uint8Array(8 + headerLength) : lengthBytes
      if (plausible) yield* file.readAt(prefix, 0)
      const layout = yield* Effect.try({ try: () => Safetensors.decodeLayoutSync(prefix, size, path), catch: (error) => error as Safetensors.InvalidSafetensors })
      for (const entry of layout.entries) {
        if (!wanted(entry.name)) continue
        const data = new Uint8Array(entry.end - entry.begin)
        yield* file.readAt(data, layout.dataStart + entry.begin)
        use({ name: entry.name, dtype: entry.dtype, shape: entry.shape, data })
      }
    })
  )

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
): Effect.Effect<ReadonlyMap<string, HeaderEntry>, FileError | Safetensors.InvalidSafetensors, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const raw = yield* withReadableFile(path, (file) =>
      Effect.gen(function* () {
        const size = file.size
        if (size < 8) return { size, length: -1n, header: undefined }
        const prefix = new Uint8Array(8)
        yield* file.readAt(prefix, 0)
        const length = new DataView(prefix.buffer).getBigUint64(0, true)
        if (length > BigInt(Safetensors.MAX_HEADER_SIZE) || 8n + length > BigInt(size)) return { size, length, header: undefined }
        const header = new Uint8Array(Number(length))
        yield* file.readAt(header, 8)
        return { size, length, header }
      })
    )
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

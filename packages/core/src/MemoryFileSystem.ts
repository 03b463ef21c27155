/**
 * An in-memory `FileSystem` (`@effect/platform`), for browsers and tests: adapters, checkpoints and
 * metrics land in a map of paths to bytes that the program can read back (to offer a download, say)
 * with `files()`. It implements what peftkit uses — read/write, positioned reads, append, directories,
 * rename, remove, stat — with POSIX-like errors (`NotFound`, `AlreadyExists`); other operations fail.
 *
 * In a browser: `Effect.provide(program, MemoryFileSystem.layer())` where a Node program provides
 * `NodeFileSystem.layer` from `@effect/platform-node`.
 */
import { FileSystem } from "@effect/platform"
import { SystemError, type SystemErrorReason } from "@effect/platform/Error"
import { Effect, Layer, Option } from "effect"

type Entry = { readonly kind: "file"; data: Uint8Array; mode: number } | { readonly kind: "directory" }

const normalize = (path: string): string => {
  const parts: Array<string> = []
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") parts.pop()
    else parts.push(part)
  }
  return `/${parts.join("/")}`
}

const parentOf = (path: string): string => normalize(`${path}/..`)

const fail = (reason: SystemErrorReason, method: string, path: string, description: string) =>
  Effect.fail(new SystemError({ reason, module: "FileSystem", method, pathOrDescriptor: path, description }))

export interface MemoryFileSystemHandle {
  readonly fileSystem: FileSystem.FileSystem
  /** Every file, by normalised absolute path (relative paths are taken from "/"). */
  readonly files: () => ReadonlyMap<string, Uint8Array>
}

/** A new, empty in-memory file system and a view of its files. */
export const makeMemoryFileSystem = (): MemoryFileSystemHandle => {
  const entries = new Map<string, Entry>([["/", { kind: "directory" }]])
  let nextFd = 3

  const fileAt = (method: string, path: string) => {
    const entry = entries.get(path)
    if (entry === undefined) return fail("NotFound", method, path, "no such file or directory")
    if (entry.kind !== "file") return fail("BadResource", method, path, "is a directory")
    return Effect.succeed(entry)
  }
  const needParent = (method: string, path: string) =>
    entries.get(parentOf(path))?.kind === "directory" ? Effect.void : fail("NotFound", method, path, "no such directory")
  const info = (entry: Entry): FileSystem.File.Info => ({
    type: entry.kind === "file" ? "File" : "Directory",
    mtime: Option.none(),
    atime: Option.none(),
    birthtime: Option.none(),
    dev: 0,
    ino: Option.none(),
    mode: entry.kind === "file" ? entry.mode : 0o755,
    nlink: Option.none(),
    uid: Option.none(),
    gid: Option.none(),
    rdev: Option.none(),
    size: FileSystem.Size(entry.kind === "file" ? entry.data.byteLength : 0),
    blksize: Option.none(),
    blocks: Option.none()
  })
  const makeDirectory = (raw: string, options?: FileSystem.MakeDirectoryOptions) =>
    Effect.suspend(() => {
      const path = normalize(raw)
      const existing = entries.get(path)
      if (existing !== undefined) return existing.kind === "directory" && options?.recursive === true ? Effect.void : fail("AlreadyExists", "makeDirectory", path, "already exists")
      if (options?.recursive === true) {
        let prefix = ""
        for (const part of path.split("/").filter((p) => p !== "")) {
          prefix = `${prefix}/${part}`
          const entry = entries.get(prefix)
          if (entry?.kind === "file") return fail("BadResource", "makeDirectory", prefix, "is a file")
          if (entry === undefined) entries.set(prefix, { kind: "directory" })
        }
        return Effect.void
      }
      return Effect.andThen(needParent("makeDirectory", path), () => void entries.set(path, { kind: "directory" }))
    })
  const under = (path: string) => [...entries.keys()].filter((key) => key === path || key.startsWith(path === "/" ? "/" : `${path}/`))

  const open = (raw: string, options?: FileSystem.OpenFileOptions) =>
    Effect.suspend(() => {
      const path = normalize(raw)
      const flag = options?.flag ?? "r"
      const existing = entries.get(path)
      if (existing?.kind === "directory") {
        // Opening a directory for reading (to sync it) is allowed; nothing can be read from it.
        if (flag !== "r") return fail("BadResource", "open", path, "is a directory")
      } else if (existing === undefined && flag.startsWith("r")) {
        return fail("NotFound", "open", path, "no such file or directory")
      } else if (existing !== undefined && flag.includes("x")) {
        return fail("AlreadyExists", "open", path, "already exists")
      }
      return Effect.map(existing === undefined ? needParent("open", path) : Effect.void, () => {
        let entry = existing
        if (entry === undefined || flag.startsWith("w")) {
          entry = { kind: "file", data: new Uint8Array(0), mode: options?.mode ?? (entry?.kind === "file" ? entry.mode : 0o644) }
          entries.set(path, entry)
        }
        const target = entry
        let position = 0
        const append = flag.startsWith("a")
        const data = () => (target.kind === "file" ? target.data : new Uint8Array(0))
        const write = (bytes: Uint8Array) =>
          Effect.suspend(() => {
            if (target.kind !== "file") return fail("BadResource", "write", path, "is a directory")
            const at = append ? target.data.byteLength : position
            const end = at + bytes.byteLength
            if (end > target.data.byteLength) {
              const grown = new Uint8Array(end)
              grown.set(target.data)
              target.data = grown
            }
            target.data.set(bytes, at)
            position = end
            return Effect.succeed(FileSystem.Size(bytes.byteLength))
          })
        const file: FileSystem.File = {
          [FileSystem.FileTypeId]: FileSystem.FileTypeId,
          fd: FileSystem.FileDescriptor(nextFd++),
          stat: Effect.sync(() => info(target)),
          seek: (offset, from) => Effect.sync(() => void (position = (from === "start" ? 0 : position) + Number(offset))),
          sync: Effect.void,
          read: (buffer) =>
            Effect.sync(() => {
              const chunk = data().subarray(position, position + buffer.byteLength)
              buffer.set(chunk)
              position += chunk.byteLength
              return FileSystem.Size(chunk.byteLength)
            }),
          readAlloc: (size) =>
            Effect.sync(() => {
              const chunk = data().slice(position, position + Number(size))
              position += chunk.byteLength
              return chunk.byteLength === 0 ? Option.none() : Option.some(chunk)
            }),
          truncate: (length) =>
            Effect.sync(() => {
              if (target.kind === "file") target.data = target.data.slice(0, Number(length ?? 0))
            }),
          write,
          writeAll: (bytes) => Effect.asVoid(write(bytes))
        }
        return file
      })
    })

  const fileSystem = FileSystem.make({
    ...FileSystem.makeNoop({}),
    access: (raw) => Effect.suspend(() => (entries.has(normalize(raw)) ? Effect.void : fail("NotFound", "access", normalize(raw), "no such file or directory"))),
    chmod: (raw, mode) =>
      Effect.flatMap(Effect.sync(() => normalize(raw)), (path) => Effect.map(fileAt("chmod", path), (entry) => void (entry.mode = mode))),
    makeDirectory,
    open,
    readDirectory: (raw) =>
      Effect.suspend(() => {
        const path = normalize(raw)
        const entry = entries.get(path)
        if (entry === undefined) return fail("NotFound", "readDirectory", path, "no such file or directory")
        if (entry.kind !== "directory") return fail("BadResource", "readDirectory", path, "not a directory")
        const prefix = path === "/" ? "/" : `${path}/`
        return Effect.succeed([...entries.keys()].filter((key) => key.startsWith(prefix) && key !== path && !key.slice(prefix.length).includes("/")).map((key) => key.slice(prefix.length)))
      }),
    readFile: (raw) => Effect.map(fileAt("readFile", normalize(raw)), (entry) => entry.data.slice()),
    remove: (raw, options) =>
      Effect.suspend(() => {
        const path = normalize(raw)
        const entry = entries.get(path)
        if (entry === undefined) return options?.force === true ? Effect.void : fail("NotFound", "remove", path, "no such file or directory")
        const inside = under(path)
        if (entry.kind === "directory" && inside.length > 1 && options?.recursive !== true) return fail("BadResource", "remove", path, "directory not empty")
        for (const key of inside) entries.delete(key)
        return Effect.void
      }),
    rename: (rawFrom, rawTo) =>
      Effect.suspend(() => {
        const from = normalize(rawFrom)
        const to = normalize(rawTo)
        if (!entries.has(from)) return fail("NotFound", "rename", from, "no such file or directory")
        return Effect.map(needParent("rename", to), () => {
          if (entries.get(from)?.kind === "directory") for (const key of under(to)) entries.delete(key)
          for (const key of under(from)) {
            const entry = entries.get(key)!
            entries.delete(key)
            entries.set(`${to}${key.slice(from.length)}`, entry)
          }
        })
      }),
    stat: (raw) =>
      Effect.suspend(() => {
        const path = normalize(raw)
        const entry = entries.get(path)
        return entry === undefined ? fail("NotFound", "stat", path, "no such file or directory") : Effect.succeed(info(entry))
      }),
    writeFile: (raw, data) => Effect.scoped(Effect.flatMap(open(raw, { flag: "w" }), (file) => file.writeAll(data)))
  })

  const files = () => {
    const out = new Map<string, Uint8Array>()
    for (const [path, entry] of entries) if (entry.kind === "file") out.set(path, entry.data)
    return out
  }
  return { fileSystem, files }
}

export const MemoryFileSystem = {
  /** A layer with a fresh, empty in-memory file system. */
  layer: (): Layer.Layer<FileSystem.FileSystem> => Layer.sync(FileSystem.FileSystem, () => makeMemoryFileSystem().fileSystem),
  /** A layer over an existing in-memory file system (to read its files afterwards). */
  layerOf: (handle: MemoryFileSystemHandle): Layer.Layer<FileSystem.FileSystem> => Layer.succeed(FileSystem.FileSystem, handle.fileSystem)
} as const

import { FileSystem } from "@effect/platform"
import { SystemError } from "@effect/platform/Error"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { readFileBytes, writeFileAtomic } from "../src/AtomicFile.js"
import { FileError } from "../src/Errors.js"

// Failure injection at the FileSystem service: the real Node file system, except that the step
// named in `inject.failOn` fails after the real temp file exists.
const inject = { failOn: undefined as undefined | "write" | "sync" | "rename" }

const injected = (method: string) =>
  new SystemError({ reason: "Unknown", module: "FileSystem", method, description: `EIO: injected ${method} failure` })

const FaultyFileSystem = Layer.effect(
  FileSystem.FileSystem,
  Effect.map(FileSystem.FileSystem, (real): FileSystem.FileSystem => ({
    ...real,
    open: (path, options) =>
      Effect.map(real.open(path, options), (file): FileSystem.File => ({
        ...file,
        // Half the bytes reach the temp file, as with a full disk.
        writeAll: (data) =>
          inject.failOn === "write" ? Effect.zipRight(file.writeAll(data.subarray(0, data.length >> 1)), Effect.fail(injected("write"))) : file.writeAll(data),
        sync: inject.failOn === "sync" ? Effect.fail(injected("sync")) : file.sync
      })),
    rename: (from, to) => (inject.failOn === "rename" ? Effect.fail(injected("rename")) : real.rename(from, to))
  }))
).pipe(Layer.provide(NodeFileSystem.layer))

let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "peftkit-atomic-"))
})
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true })
})
afterEach(() => {
  inject.failOn = undefined
})

const run = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem>): Promise<A> => Effect.runPromise(Effect.provide(effect, FaultyFileSystem))
const failure = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem>): Promise<E> => Effect.runPromise(Effect.provide(Effect.flip(effect), FaultyFileSystem))

const fresh = (name: string): string => {
  const sub = fs.mkdtempSync(nodePath.join(dir, `${name}-`))
  return nodePath.join(sub, "model.safetensors")
}

describe("writeFileAtomic", () => {
  it("creates the file, and its missing parent directories", async () => {
    const path = nodePath.join(fresh("create"), "..", "nested", "deeper", "out.bin")
    await run(writeFileAtomic(path, new Uint8Array([1, 2, 3])))
    expect(Array.from(fs.readFileSync(path))).toEqual([1, 2, 3])
    expect(fs.readdirSync(nodePath.dirname(path))).toEqual(["out.bin"])
  })

  it("replaces existing content and leaves no temp file", async () => {
    const path = fresh("replace")
    fs.writeFileSync(path, "old content that is longer than the new one")
    await run(writeFileAtomic(path, new Uint8Array([9, 8, 7])))
    expect(Array.from(fs.readFileSync(path))).toEqual([9, 8, 7])
    expect(fs.readdirSync(nodePath.dirname(path))).toEqual(["model.safetensors"])
  })

  it("writes strings as UTF-8", async () => {
    const path = fresh("string")
    await run(writeFileAtomic(path, '{"r": 8, "note": "✓"}'))
    expect(fs.readFileSync(path, "utf8")).toBe('{"r": 8, "note": "✓"}')
  })

  it.skipIf(process.platform === "win32")("keeps the permission bits of the file it replaces", async () => {
    const path = fresh("mode")
    fs.writeFileSync(path, "secret")
    fs.chmodSync(path, 0o600)
    await run(writeFileAtomic(path, "new secret"))
    expect(fs.statSync(path).mode & 0o777).toBe(0o600)
  })

  it("concurrent writes to one target leave one complete version and no temp files", async () => {
    const path = fresh("concurrent")
    const versions = Array.from({ length: 8 }, (_, i) => new Uint8Array(4096).fill(i + 1))
    await run(Effect.all(versions.map((bytes) => writeFileAtomic(path, bytes)), { concurrency: "unbounded" }))
    const final = fs.readFileSync(path)
    expect(final.length).toBe(4096)
    expect(final.every((b) => b === final[0])).toBe(true)
    expect(fs.readdirSync(nodePath.dirname(path))).toEqual(["model.safetensors"])
  })

  it("fails with FileError(mkdir) when the parent path is a file", async () => {
    const blocker = nodePath.join(nodePath.dirname(fresh("blocker")), "not-a-dir")
    fs.writeFileSync(blocker, "x")
    const error = await failure(writeFileAtomic(nodePath.join(blocker, "out.bin"), "data"))
    expect(error).toBeInstanceOf(FileError)
    expect(error).toMatchObject({ _tag: "FileError", operation: "mkdir", path: blocker })
    expect(fs.readFileSync(blocker, "utf8")).toBe("x")
    expect(fs.readdirSync(nodePath.dirname(blocker))).toEqual(["not-a-dir"])
  })

  it("fails with FileError(rename) when the target is a directory, removing the temp file", async () => {
    const parent = nodePath.dirname(fresh("target-dir"))
    const target = nodePath.join(parent, "checkpoint")
    fs.mkdirSync(target)
    fs.writeFileSync(nodePath.join(target, "inside.txt"), "keep")
    const error = await failure(writeFileAtomic(target, "data"))
    expect(error).toMatchObject({ _tag: "FileError", operation: "rename", path: target })
    expect(fs.readdirSync(parent)).toEqual(["checkpoint"])
    expect(fs.readFileSync(nodePath.join(target, "inside.txt"), "utf8")).toBe("keep")
  })

  for (const step of ["write", "sync", "rename"] as const) {
    it(`a failing ${step} leaves the previous file byte-identical and no temp file`, async () => {
      const path = fresh(`fail-${step}`)
      const previous = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff)
      fs.writeFileSync(path, previous)
      inject.failOn = step
      const error = await failure(writeFileAtomic(path, new Uint8Array(2000).fill(1)))
      expect(error).toBeInstanceOf(FileError)
      expect(error).toMatchObject({ operation: step === "rename" ? "rename" : "write" })
      expect(error.reason).toContain(`injected ${step} failure`)
      expect(error.message).toContain("EIO")
      expect(new Uint8Array(fs.readFileSync(path))).toEqual(previous)
      expect(fs.readdirSync(nodePath.dirname(path))).toEqual(["model.safetensors"])
    })
  }
})

describe("readFileBytes", () => {
  it("returns the bytes as a plain Uint8Array", async () => {
    const path = fresh("read")
    fs.writeFileSync(path, new Uint8Array([5, 6, 7]))
    const bytes = await run(readFileBytes(path))
    expect(Object.getPrototypeOf(bytes)).toBe(Uint8Array.prototype)
    expect(Array.from(bytes)).toEqual([5, 6, 7])
  })

  it("fails with FileError(read) for a missing file", async () => {
    const path = nodePath.join(dir, "missing.bin")
    const error = await failure(readFileBytes(path))
    expect(error).toMatchObject({ _tag: "FileError", operation: "read", path })
    expect(error.reason).toContain("ENOENT")
  })
})

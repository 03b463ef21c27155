/**
 * Core's file operations behave the same on Node's file system and on the in-memory one a browser
 * program provides: atomic writes, reads, partial reads, listings, checkpoints with pruning and the
 * JSONL metrics log.
 */
import type { FileSystem } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect, Layer, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import {
  latestCheckpoint,
  listCheckpoints,
  listDirectory,
  makeMemoryFileSystem,
  MemoryFileSystem,
  MetricsLog,
  pathKind,
  readFileBytes,
  readHead,
  readText,
  removePath,
  withReadableFile,
  writeCheckpoint,
  writeFileAtomic
} from "../src/index.js"

const tempRoot = fs.mkdtempSync(nodePath.join(os.tmpdir(), "peftkit-fs-"))
afterAll(() => fs.rmSync(tempRoot, { recursive: true, force: true }))

const systems: ReadonlyArray<{ readonly name: string; readonly layer: () => Layer.Layer<FileSystem.FileSystem>; readonly root: () => string }> = [
  { name: "node", layer: () => NodeFileSystem.layer, root: () => fs.mkdtempSync(nodePath.join(tempRoot, "run-")) },
  { name: "memory", layer: () => MemoryFileSystem.layer(), root: () => "/work" }
]

for (const system of systems) {
  describe(`core file operations on the ${system.name} file system`, () => {
    const run = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem>) => Effect.runPromise(Effect.provide(effect, system.layer()))

    it("writes atomically (creating directories), reads back, replaces, and leaves no temp file", async () => {
      const root = system.root()
      const listing = await run(
        Effect.gen(function* () {
          yield* writeFileAtomic(`${root}/a/b/weights.bin`, new Uint8Array([1, 2, 3, 4]))
          yield* writeFileAtomic(`${root}/a/b/weights.bin`, new Uint8Array([9, 8]))
          yield* writeFileAtomic(`${root}/a/b/config.json`, '{"r": 8, "note": "✓"}')
          const bytes = yield* readFileBytes(`${root}/a/b/weights.bin`)
          const text = yield* readText(`${root}/a/b/config.json`)
          return { bytes: Array.from(bytes), text, names: yield* listDirectory(`${root}/a/b`), kind: yield* pathKind(`${root}/a`), missing: yield* pathKind(`${root}/nope`) }
        })
      )
      expect(listing).toEqual({ bytes: [9, 8], text: '{"r": 8, "note": "✓"}', names: ["config.json", "weights.bin"], kind: "directory", missing: "missing" })
    })

    it("reads ranges and heads without reading the whole file, and names a file that ends early", async () => {
      const root = system.root()
      const data = new Uint8Array(1000).map((_, i) => i & 0xff)
      const result = await run(
        Effect.gen(function* () {
          yield* writeFileAtomic(`${root}/big.bin`, data)
          const head = yield* readHead(`${root}/big.bin`, 8)
          const middle = yield* withReadableFile(`${root}/big.bin`, (file) => {
            const out = new Uint8Array(5)
            return Effect.map(file.readAt(out, 500), () => ({ size: file.size, out: Array.from(out) }))
          })
          const beyond = yield* Effect.flip(withReadableFile(`${root}/big.bin`, (file) => file.readAt(new Uint8Array(10), 995)))
          return { head: Array.from(head), middle, beyond }
        })
      )
      expect(result.head).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
      expect(result.middle).toEqual({ size: 1000, out: [244, 245, 246, 247, 248] })
      expect(result.beyond).toMatchObject({ _tag: "FileError", operation: "read" })
      expect(result.beyond.reason).toContain("file ended")
    })

    it("fails with FileError for a missing file and removes trees", async () => {
      const root = system.root()
      const error = await run(Effect.flip(readFileBytes(`${root}/missing.bin`)))
      expect(error).toMatchObject({ _tag: "FileError", operation: "read", path: `${root}/missing.bin` })
      expect(error.reason).toMatch(/^NotFound/)
      const kinds = await run(
        Effect.gen(function* () {
          yield* writeFileAtomic(`${root}/tree/x/y.txt`, "y")
          yield* removePath(`${root}/tree`)
          yield* removePath(`${root}/tree`) // a second removal is a no-op
          return yield* pathKind(`${root}/tree`)
        })
      )
      expect(kinds).toBe("missing")
    })

    it("writes step checkpoints as whole directories and keeps the newest two", async () => {
      const root = system.root()
      const result = await run(
        Effect.gen(function* () {
          for (const step of [10, 20, 30]) yield* writeCheckpoint(`${root}/checkpoints`, { step, method: "cola" }, { "adapter.bin": new Uint8Array([step]) })
          const all = yield* listCheckpoints(`${root}/checkpoints`)
          const latest = yield* latestCheckpoint(`${root}/checkpoints`)
          const names = yield* listDirectory(`${root}/checkpoints`)
          const inside = yield* listDirectory(`${root}/checkpoints/step-000030`)
          return { steps: all.map((c) => c.step), latest: Option.map(latest, (c) => c.step), names, inside }
        })
      )
      expect(result).toEqual({ steps: [20, 30], latest: Option.some(30), names: ["step-000020", "step-000030"], inside: ["adapter.bin", "trainer_state.json"] })
    })

    it("appends JSON lines to the metrics log, and starts afresh with append: false", async () => {
      const root = system.root()
      const path = `${root}/logs/metrics.jsonl`
      const write = (append: boolean, records: ReadonlyArray<Record<string, number>>) =>
        Effect.provide(
          Effect.forEach(records, (record) => Effect.flatMap(MetricsLog, (log) => log.write(record))),
          MetricsLog.jsonl(path, { append })
        )
      const text = await run(
        Effect.gen(function* () {
          yield* write(true, [{ step: 1 }, { step: 2 }])
          yield* write(true, [{ step: 3 }])
          const appended = yield* readText(path)
          yield* write(false, [{ step: 9 }])
          return { appended, fresh: yield* readText(path) }
        })
      )
      expect(text).toEqual({ appended: '{"step":1}\n{"step":2}\n{"step":3}\n', fresh: '{"step":9}\n' })
    })
  })
}

describe("MemoryFileSystem", () => {
  it("shows what a program wrote, by absolute path, for a download", async () => {
    const memory = makeMemoryFileSystem()
    await Effect.runPromise(Effect.provide(writeFileAtomic("out/adapter/adapter_config.json", "{}"), MemoryFileSystem.layerOf(memory)))
    expect([...memory.files().keys()]).toEqual(["/out/adapter/adapter_config.json"])
  })
})

/**
 * Reading the official files: typed errors for a missing or malformed file, reading from text
 * (no file system), and the wsc.fixed span repair over the whole real WSC data (shared data).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect, Either } from "effect"
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { boolq, loadTask, rte, taskDataFromText, wsc } from "../src/index.js"
import { needSharedData } from "./helpers.js"

describe("loadTask", () => {
  it("a missing file is a FileError with the full path", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-tasks-"))
    const result = await Effect.runPromise(Effect.provide(Effect.either(loadTask(rte, dir)), NodeFileSystem.layer))
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left._tag).toBe("FileError")
      expect(result.left.path).toBe(`${dir}/superglue/RTE/val.jsonl`)
      expect(result.left.operation).toBe("read")
    }
  })

  it("a malformed row is a FileError with the full path and the line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-tasks-"))
    mkdirSync(join(dir, "superglue/RTE"), { recursive: true })
    writeFileSync(join(dir, "superglue/RTE/val.jsonl"), `{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0}\n`)
    writeFileSync(join(dir, "superglue/RTE/train.jsonl"), `{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0}\n{"premise": 3, "hypothesis": "h", "label": "entailment", "idx": 1}\n`)
    const result = await Effect.runPromise(Effect.provide(Effect.either(loadTask(rte, `${dir}/`)), NodeFileSystem.layer))
    expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "FileError", path: `${dir}/superglue/RTE/train.jsonl`, reason: "line 2: 'premise' must be a string, got 3" })
  })

  it("reads pools from text, with BoolQ's one file split by the title rule", async () => {
    const row = (idx: number, title: string, label: boolean) => JSON.stringify({ question: "q", passage: `${title} -- text`, idx, label })
    const text = [row(0, "American entry into Canada by land", true), row(1, "Dairy cattle", false), row(2, "Persian language", true), row(3, "Ethanol fuel", false)].join("\n")
    const data = await Effect.runPromise(taskDataFromText(boolq, { train: text, validation: text }))
    expect(data.trainPool.length + data.testPool.length).toBe(4)
    for (const e of data.trainPool) expect(data.testPool.map((t) => t.id)).not.toContain(e.id)
  })
})

describe("WSC spans over the real files (shared data)", () => {
  it("after the wsc.fixed repair every span is in its text but the two Kamenev spans; 96 rows were repaired, as in Python (shared data)", async (ctx) => {
    const dir = needSharedData(ctx)
    const data = await Effect.runPromise(Effect.provide(loadTask(wsc, dir), NodeFileSystem.layer))
    let repaired = 0
    for (const [file, pool] of [["train.jsonl", data.trainPool], ["val.jsonl", data.testPool]] as const) {
      const original = new Map(readFileSync(`${dir}/superglue/WSC/${file}`, "utf8").trim().split("\n").map((l) => {
        const r = JSON.parse(l) as { idx: number; target: { span1_text: string; span2_text: string } }
        return [r.idx, r.target] as const
      }))
      for (const e of pool) {
        const idx = Number(e.id.split("/")[1])
        const before = original.get(idx)!
        if (before.span1_text !== e.fields.span1Text || before.span2_text !== e.fields.span2Text) repaired++
        for (const span of [e.fields.span1Text, e.fields.span2Text]) {
          if (span !== "Kamenev and Zinoviev" && span !== "Kamenev, Zinoviev, and Stalin") expect(e.fields.text).toContain(span)
        }
      }
    }
    expect(repaired).toBe(96)
    const byId = new Map(data.trainPool.map((e) => [e.id, e.fields]))
    // Spot checks against Python's _fix_wst output.
    expect(byId.get("train/16")).toMatchObject({ span1Text: "the demonstrators", span2Text: "they" })
    expect(byId.get("train/28")).toMatchObject({ span1Text: "the cake", span2Text: "It" })
    expect(byId.get("train/13")).toMatchObject({ span1Text: "The lawyer", span2Text: "he" })
  })
})

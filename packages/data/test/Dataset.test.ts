/** MLX-LM data directories: train/valid/test.jsonl, which are missing, and errors naming file and line. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { FileError } from "@peftkit/core"
import { Effect } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { InvalidDataset, loadDataset, loadSplit } from "../src/index.js"
import { ID, targets, wordTokenizer } from "./helpers.js"

const dataDir = (files: Record<string, ReadonlyArray<unknown> | string>) => {
  const dir = mkdtempSync(join(tmpdir(), "peftkit-data-"))
  for (const [name, rows] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof rows === "string" ? rows : rows.map((row) => JSON.stringify(row)).join("\n") + "\n")
  }
  return dir
}

describe("loadDataset", () => {
  it("loads train and valid, tokenized, and says test is missing", async () => {
    const dir = dataDir({
      "train.jsonl": [{ prompt: "the cat", completion: " sat" }, { prompt: "a dog", completion: " ran on the mat" }],
      "valid.jsonl": [{ prompt: "hi", completion: " hello" }]
    })
    const data = await Effect.runPromise(Effect.provide(loadDataset(dir, wordTokenizer(), { maskPrompt: true, maxSeqLength: 5 }), NodeFileSystem.layer))
    expect(data.missing).toEqual(["test"])
    expect(data.test).toBeUndefined()
    expect(data.train).toMatchObject({ path: `${dir}/train.jsonl`, shape: "completion", truncated: 1, longest: 8, withoutTargets: 0 })
    expect(data.train!.examples.map(targets)).toEqual([["sat", "</s>"], ["ran", "on"]])
    expect(data.valid!.examples).toEqual([{ inputIds: [1, ID["hi"], ID["hello"], 2], lossMask: [0, 0, 1, 1] }])
  })

  it("a missing train.jsonl is a FileError naming it; other required splits can be asked for", async () => {
    const dir = dataDir({ "valid.jsonl": [{ text: "hi" }] })
    const error = await Effect.runPromise(Effect.provide(Effect.flip(loadDataset(dir, wordTokenizer())), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(FileError)
    expect(error).toMatchObject({ path: `${dir}/train.jsonl` })
    expect(error.message).toContain("the data directory needs train.jsonl")
    const onlyValid = await Effect.runPromise(Effect.provide(loadDataset(dir, wordTokenizer(), { required: ["valid"] }), NodeFileSystem.layer))
    expect(onlyValid.missing).toEqual(["train", "test"])
    expect(onlyValid.valid!.examples).toHaveLength(1)
  })

  it("a malformed line in any split names that file and line", async () => {
    const dir = dataDir({
      "train.jsonl": [{ text: "the cat" }],
      "valid.jsonl": `${JSON.stringify({ text: "a" })}\n{"txt": "b"}\n`
    })
    const error = await Effect.runPromise(Effect.provide(Effect.flip(loadDataset(dir, wordTokenizer())), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(InvalidDataset)
    expect(error.message).toBe(`invalid dataset ${dir}/valid.jsonl:2: matches none of {text}, {prompt, completion}, {messages} (keys: txt)`)
  })

  it("chat data without a chat template names the file and the record's line", async () => {
    const dir = dataDir({ "train.jsonl": `\n\n${JSON.stringify({ messages: [{ role: "user", content: "hi" }] })}\n` })
    const error = await Effect.runPromise(Effect.provide(Effect.flip(loadSplit(`${dir}/train.jsonl`, wordTokenizer())), NodeFileSystem.layer))
    expect(error).toMatchObject({ _tag: "InvalidDataset", path: `${dir}/train.jsonl`, line: 3 })
  })

  it("an empty file is an InvalidDataset", async () => {
    const dir = dataDir({ "train.jsonl": "\n" })
    const error = await Effect.runPromise(Effect.provide(Effect.flip(loadDataset(dir, wordTokenizer())), NodeFileSystem.layer))
    expect(error.message).toBe(`invalid dataset ${dir}/train.jsonl: no records (the file is empty)`)
  })
})

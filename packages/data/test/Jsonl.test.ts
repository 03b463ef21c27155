/** MLX-LM jsonl shapes, and errors that name file and line. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { FileError } from "@peftkit/core"
import { Effect } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { InvalidDataset, parseJsonlSync, readJsonl, recordShape } from "../src/index.js"

const lines = (...rows: ReadonlyArray<unknown>) => rows.map((row) => (typeof row === "string" ? row : JSON.stringify(row))).join("\n")

const parseError = (text: string): InvalidDataset => {
  try {
    parseJsonlSync(text, "data/train.jsonl")
  } catch (error) {
    if (error instanceof InvalidDataset) return error
    throw error
  }
  throw new Error("expected an InvalidDataset")
}

describe("parseJsonl", () => {
  it("reads the three shapes, keeps line numbers, skips blank lines and ignores other keys", () => {
    const text = parseJsonlSync(lines({ text: "the cat" }, "", { text: "a dog", id: 7 }, "  "), "t.jsonl")
    expect(text).toMatchObject({ shape: "text", records: [{ text: "the cat" }, { text: "a dog" }], lines: [1, 3] })
    const completion = parseJsonlSync(lines({ prompt: "hi", completion: " ok", meta: {} }) + "\n", "c.jsonl")
    expect(completion).toMatchObject({ shape: "completion", records: [{ prompt: "hi", completion: " ok" }], lines: [1] })
    const chat = parseJsonlSync(lines({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "ok", name: "bot" }] }), "m.jsonl")
    expect(chat.shape).toBe("chat")
    expect(chat.records[0]).toEqual({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "ok", name: "bot" }] })
    expect(recordShape(chat.records[0]!)).toBe("chat")
  })

  it("uses MLX-LM's precedence when a line has several shapes' keys: messages, then prompt/completion, then text", () => {
    const file = parseJsonlSync(lines({ text: "x", prompt: "p", completion: "c" }), "f.jsonl")
    expect(file.records[0]).toEqual({ prompt: "p", completion: "c" })
  })

  it("accepts CRLF line endings and a byte-order mark", () => {
    const file = parseJsonlSync(`\uFEFF${JSON.stringify({ text: "a" })}\r\n${JSON.stringify({ text: "b" })}\r\n`, "f.jsonl")
    expect(file.records).toEqual([{ text: "a" }, { text: "b" }])
  })

  it("a line that is not JSON names the file and the line", () => {
    const error = parseError(lines({ text: "a" }, "", "{\"text\": \"unterminated"))
    expect(error).toMatchObject({ _tag: "InvalidDataset", path: "data/train.jsonl", line: 3 })
    expect(error.message).toMatch(/^invalid dataset data\/train\.jsonl:3: not valid JSON/)
  })

  it("a line matching no shape, or a malformed shape, names the line and what is wrong", () => {
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      [{ input: "x", output: "y" }, "matches none of {text}, {prompt, completion}, {messages} (keys: input, output)"],
      [[1, 2], "expected a JSON object, got a list"],
      ["\"just a string\"", "expected a JSON object, got string"],
      [{ text: 3 }, "'text' must be a string, got number"],
      [{ prompt: "p" }, "has 'prompt' but no 'completion'"],
      [{ completion: "c" }, "has 'completion' but no 'prompt'"],
      [{ prompt: "p", completion: null }, "'completion' must be a string, got null"],
      [{ messages: [] }, "'messages' is empty"],
      [{ messages: "hi" }, "'messages' must be a list, got string"],
      [{ messages: [{ role: "user" }] }, "messages[0].content must be a string, got undefined"],
      [{ messages: [{ role: "user", content: "a" }, { content: "b" }] }, "messages[1].role must be a string, got undefined"]
    ]
    for (const [row, reason] of cases) {
      const error = parseError(lines({ text: "fine" }, row))
      expect(error.line, reason).toBe(2)
      expect(error.reason).toBe(reason)
    }
  })

  it("one shape per file: a different shape names both lines", () => {
    const error = parseError(lines({ text: "a" }, { text: "b" }, { prompt: "p", completion: "c" }))
    expect(error.message).toBe("invalid dataset data/train.jsonl:3: is {prompt, completion} but line 1 is {text}: one shape per file")
  })

  it("readJsonl: FileError for a missing file, InvalidDataset with the real path and line for bad content", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-jsonl-"))
    const missing = await Effect.runPromise(Effect.provide(Effect.flip(readJsonl(join(dir, "train.jsonl"))), NodeFileSystem.layer))
    expect(missing).toBeInstanceOf(FileError)
    expect(missing.path).toBe(join(dir, "train.jsonl"))
    writeFileSync(join(dir, "valid.jsonl"), lines({ text: "a" }, { text: "b" }, "not json", { text: "d" }))
    const bad = await Effect.runPromise(Effect.provide(Effect.flip(readJsonl(join(dir, "valid.jsonl"))), NodeFileSystem.layer))
    expect(bad).toMatchObject({ _tag: "InvalidDataset", path: join(dir, "valid.jsonl"), line: 3 })
  })
})

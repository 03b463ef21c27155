// Issue 10 items 7 and 8: a huge line is not tokenised whole when --max-seq-length bounds the
// example, and invalid UTF-8 is an error naming the file, line and byte instead of U+FFFD.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import type { Tokenizer } from "@peftkit/tokenizers"
import { Effect } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { InvalidDataset, readJsonl, tokenizeRecords } from "../src/index.js"
import { ID, targets, wordTokenizer } from "./helpers.js"

/** The word tokenizer, recording the length of every text it is asked to encode. */
const recording = (chat = false): { tokenizer: Tokenizer; lengths: Array<number> } => {
  const lengths: Array<number> = []
  const base = wordTokenizer({ chat })
  return { tokenizer: { ...base, encode: (text, options) => (lengths.push(text.length), base.encode(text, options)) }, lengths }
}

const run = <A, E>(effect: Effect.Effect<A, E, never>) => Effect.runPromise(effect)

describe("bounded tokenisation", () => {
  const huge = Array.from({ length: 1_000_000 }, (_, i) => ["the", "cat", "sat", "on", "a", "mat"][i % 6]).join(" ") // ~4M characters

  it("a 4M-character {text} line with maxSeqLength 64 encodes only a prefix, and keeps the same first 64 tokens", async () => {
    const { tokenizer, lengths } = recording()
    const bounded = await run(tokenizeRecords([{ text: huge }], tokenizer, { maxSeqLength: 64 }))
    expect(Math.max(...lengths)).toBeLessThanOrEqual(64 * 1024)
    const whole = await run(tokenizeRecords([{ text: huge }], wordTokenizer(), {}))
    expect(bounded.examples[0]!.inputIds).toStrictEqual(whole.examples[0]!.inputIds.slice(0, 64))
    expect(bounded.examples[0]!.lossMask).toStrictEqual(whole.examples[0]!.lossMask.slice(0, 64))
    expect(bounded.truncated).toBe(1)
    expect(bounded.longest).toBeGreaterThan(64)
  })

  it("prompt/completion and chat records are bounded the same way, with the same masks", async () => {
    for (const [chat, record] of [
      [false, { prompt: huge, completion: " yes" }],
      [false, { prompt: "hi", completion: ` ${huge}` }],
      [true, { messages: [{ role: "user", content: huge }, { role: "assistant", content: "ok" }] }],
      [true, { messages: [{ role: "user", content: "hi" }, { role: "assistant", content: huge }] }]
    ] as const) {
      const { tokenizer, lengths } = recording(chat)
      const bounded = await run(tokenizeRecords([record], tokenizer, { maxSeqLength: 64, maskPrompt: true }))
      expect(Math.max(...lengths)).toBeLessThanOrEqual(64 * 1024)
      const whole = await run(tokenizeRecords([record], wordTokenizer({ chat }), { maskPrompt: true }))
      expect(bounded.examples[0]!.inputIds).toStrictEqual(whole.examples[0]!.inputIds.slice(0, 64))
      expect(targets(bounded.examples[0]!)).toStrictEqual(targets({ inputIds: whole.examples[0]!.inputIds.slice(0, 64), lossMask: whole.examples[0]!.lossMask.slice(0, 64) }))
    }
  })

  it("short texts are encoded whole, as before", async () => {
    const { tokenizer, lengths } = recording()
    const out = await run(tokenizeRecords([{ text: "the cat sat" }], tokenizer, { maxSeqLength: 2 }))
    expect(lengths).toStrictEqual([11])
    expect(out.examples[0]!.inputIds).toStrictEqual([1, ID["the"]!])
  })
})

describe("strict UTF-8", () => {
  it("invalid UTF-8 in a jsonl file is InvalidDataset naming the file, the line and the byte", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-jsonl-utf8-"))
    const path = join(dir, "train.jsonl")
    const good = Buffer.from('{"text": "the cat"}\n{"text": "a ')
    writeFileSync(path, Buffer.concat([good, Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]))
    const error = await Effect.runPromise(Effect.provide(Effect.flip(readJsonl(path)), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(InvalidDataset)
    expect(error.message).toBe(`invalid dataset ${path}:2: not valid UTF-8 at byte ${good.length}`)
  })

  it("a byte-order mark and multi-byte characters still read", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-jsonl-utf8-"))
    const path = join(dir, "train.jsonl")
    writeFileSync(path, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"text": "caf\u00e9 \u{1f600}"}\n')]))
    const file = await Effect.runPromise(Effect.provide(readJsonl(path), NodeFileSystem.layer))
    expect(file.records).toStrictEqual([{ text: "caf\u00e9 \u{1f600}" }])
  })
})

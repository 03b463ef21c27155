/**
 * The llama2.c tokenizer: exact llama2.c encoding on the real stories260K vocabulary (shared data),
 * checked against pinned ids, the vocabulary's own pieces and a straightforward re-implementation of
 * llama2.c's `encode`; decoding; and the file format's error paths on synthetic files.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { FileError, InvalidCheckpoint } from "@peftkit/core"
import { Effect, Exit } from "effect"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { Llama2cTokenizer, readLlama2cTokenizer } from "../src/index.js"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const TOK512 = join(repoRoot, "../shared/data/models/stories260K/tok512.bin")
const haveShared = existsSync(TOK512)
const sharedLabel = haveShared ? "(shared data)" : "(shared data: skipped, ../shared/data/models/stories260K/tok512.bin is absent)"

const SENTENCE = "Once upon a time, there was a little girl named Lily."
/** Computed once with Llama2cTokenizer, then verified below three independent ways. */
const SENTENCE_IDS = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]

// --- An independent reading of the file and a literal port of llama2.c's encode. -------------------

interface Vocab {
  readonly pieces: ReadonlyArray<ReadonlyArray<number>>
  readonly scores: ReadonlyArray<number>
}

const readVocab = (bytes: Uint8Array): Vocab => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const pieces: Array<Array<number>> = []
  const scores: Array<number> = []
  for (let offset = 4; offset < bytes.length;) {
    scores.push(view.getFloat32(offset, true))
    const length = view.getInt32(offset + 4, true)
    pieces.push(Array.from(bytes.subarray(offset + 8, offset + 8 + length)))
    offset += 8 + length
  }
  return { pieces, scores }
}

const sameBytes = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => a.length === b.length && a.every((x, i) => x === b[i])

/** llama2.c's str_lookup, as a linear search (the first match). */
const strLookup = (vocab: Vocab, bytes: ReadonlyArray<number>): number => vocab.pieces.findIndex((piece) => sameBytes(piece, bytes))

/** llama2.c `encode(t, text, bos=1, eos=0)`, line by line. */
const referenceEncode = (vocab: Vocab, text: string): Array<number> => {
  const tokens: Array<number> = [1]
  const bytes = Array.from(new TextEncoder().encode(text))
  if (bytes.length > 0) tokens.push(strLookup(vocab, [0x20]))
  let buffer: Array<number> = []
  for (let i = 0; i < bytes.length; i++) {
    if ((bytes[i]! & 0xc0) !== 0x80) buffer = []
    buffer.push(bytes[i]!)
    if (i + 1 < bytes.length && (bytes[i + 1]! & 0xc0) === 0x80 && buffer.length < 4) continue
    const id = strLookup(vocab, buffer)
    if (id !== -1) tokens.push(id)
    else for (const byte of buffer) tokens.push(byte + 3)
    buffer = []
  }
  for (;;) {
    let bestScore = -1e10
    let bestId = -1
    let bestIdx = -1
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = strLookup(vocab, [...vocab.pieces[tokens[i]!]!, ...vocab.pieces[tokens[i + 1]!]!])
      if (id !== -1 && vocab.scores[id]! > bestScore) {
        bestScore = vocab.scores[id]!
        bestId = id
        bestIdx = i
      }
    }
    if (bestIdx === -1) break
    tokens.splice(bestIdx, 2, bestId)
  }
  return tokens
}

const pieceText = (vocab: Vocab, ids: ReadonlyArray<number>) => new TextDecoder().decode(Uint8Array.from(ids.flatMap((id) => vocab.pieces[id]!)))

// --- Tests on the real vocabulary. -----------------------------------------------------------------

describe.skipIf(!haveShared)(`llama2.c tokenizer on stories260K tok512.bin ${sharedLabel}`, () => {
  const load = () => Llama2cTokenizer.fromBytes(readFileSync(TOK512), { path: TOK512 })
  const vocab = () => readVocab(readFileSync(TOK512))

  it(`reads 512 entries and llama2.c's special ids ${sharedLabel}`, () => {
    const tokenizer = load()
    expect(tokenizer.vocabSize).toBe(512)
    expect(tokenizer.maxTokenLength).toBe(7)
    expect([tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId]).toEqual([1, 2, 2])
    expect(tokenizer.piece(1)).toBe("\n<s>\n")
    expect(tokenizer.piece(3)).toBe("<0x00>")
    expect(tokenizer.piece(485)).toBe("é")
  })

  it(`encodes the fixed sentence to the pinned ids ${sharedLabel}`, () => {
    expect(load().encode(SENTENCE)).toEqual(SENTENCE_IDS)
  })

  it(`the pinned ids are right: pieces spell " " + the sentence, no pair merges further, llama2.c's algorithm re-derives them ${sharedLabel}`, () => {
    const v = vocab()
    // 1. After BOS, the pieces concatenate to the dummy prefix plus the sentence.
    expect(pieceText(v, SENTENCE_IDS.slice(1))).toBe(` ${SENTENCE}`)
    // The pieces themselves, spelled out (the dummy prefix merged into " Once").
    expect(SENTENCE_IDS.slice(1).map((id) => pieceText(v, [id]))).toEqual([" Once", " upon", " a", " time", ",", " there", " was", " a", " little", " g", "ir", "l", " named", " Lily", "."])
    // 2. A fixed point of the merge loop: no adjacent pair concatenates to a vocabulary piece.
    for (let i = 0; i + 1 < SENTENCE_IDS.length; i++) {
      expect(strLookup(v, [...v.pieces[SENTENCE_IDS[i]!]!, ...v.pieces[SENTENCE_IDS[i + 1]!]!])).toBe(-1)
    }
    // 3. A literal port of llama2.c's encode gets the same ids.
    expect(referenceEncode(v, SENTENCE)).toEqual(SENTENCE_IDS)
  })

  it(`matches the llama2.c reference on ASCII, accented, CJK and emoji text ${sharedLabel}`, () => {
    const tokenizer = load()
    const v = vocab()
    const texts = ["Lily and Ben played in the park.", "Café crème, naïve señor", "日本", "A cat 🐱 and a dog 🐶!", "  two  spaces\nand a newline\t tab", "", "<0x41> is not a byte token"]
    for (const text of texts) expect(tokenizer.encode(text), text).toEqual(referenceEncode(v, text))
  })

  it(`byte fallback: characters outside the vocabulary become their UTF-8 bytes (id = byte + 3) ${sharedLabel}`, () => {
    const tokenizer = load()
    // "é" is a piece (485); "日" (E6 97 A5), "本" (E6 9C AC) and "🙂" (F0 9F 99 82) are not.
    expect(tokenizer.encode("é", { addSpecialTokens: false })).toEqual([410, 485])
    expect(tokenizer.encode("日本", { addSpecialTokens: false })).toEqual([410, 0xe6 + 3, 0x97 + 3, 0xa5 + 3, 0xe6 + 3, 0x9c + 3, 0xac + 3])
    expect(tokenizer.encode("🙂", { addSpecialTokens: false })).toEqual([410, 0xf0 + 3, 0x9f + 3, 0x99 + 3, 0x82 + 3])
    expect(tokenizer.piece(410)).toBe(" ")
  })

  it(`decode(encode(s)) == s for ASCII and non-ASCII text ${sharedLabel}`, () => {
    const tokenizer = load()
    for (const text of [SENTENCE, "Café crème, naïve señor", "日本語のテキスト", "emoji 🙂🐱 and ZWJ 👩‍👩‍👧", "tabs\tand\nnewlines", "  leading spaces"]) {
      expect(tokenizer.decode(tokenizer.encode(text), { skipSpecialTokens: true }), text).toBe(text)
      expect(tokenizer.decode(tokenizer.encode(text, { addSpecialTokens: false })), text).toBe(text)
    }
  })

  it(`decodes like llama2.c: special tokens, the space after BOS, bytes split across tokens ${sharedLabel}`, () => {
    const tokenizer = load()
    expect(tokenizer.decode(SENTENCE_IDS)).toBe(`<s>${SENTENCE}`)
    expect(tokenizer.decode([...SENTENCE_IDS, 2])).toBe(`<s>${SENTENCE}</s>`)
    expect(tokenizer.decode([...SENTENCE_IDS, 2], { skipSpecialTokens: true })).toBe(SENTENCE)
    // Only the piece after BOS (or first) loses its space; " was" mid-sequence keeps it.
    expect(tokenizer.decode([286, 286])).toBe("was was")
    expect(tokenizer.decode([1, 286, 1, 286])).toBe("<s>was<s>was")
    // A character split over byte tokens decodes whole; a lone continuation byte is U+FFFD.
    const ri = [0xe6 + 3, 0x97 + 3, 0xa5 + 3]
    expect(tokenizer.decode(ri)).toBe("日")
    expect(tokenizer.decode(ri.slice(0, 2))).toBe("\uFFFD")
    expect(() => tokenizer.decode([512])).toThrow(RangeError)
  })

  it(`reads exactly vocabSize entries when given one, as llama2.c does ${sharedLabel}`, () => {
    const bytes = readFileSync(TOK512)
    expect(Llama2cTokenizer.fromBytes(bytes, { vocabSize: 300 }).vocabSize).toBe(300)
    expect(() => Llama2cTokenizer.fromBytes(bytes, { vocabSize: 513, path: "tok512.bin" })).toThrow(/tok512.bin.*512 entries, fewer than vocabSize 513/)
  })

  it(`encodes 20k characters quickly (heap merges, same result as the O(n^2) scan) ${sharedLabel}`, () => {
    const tokenizer = load()
    const long = `${SENTENCE} She loved to play outside in the park. `.repeat(200)
    const started = performance.now()
    const ids = tokenizer.encode(long)
    expect(performance.now() - started).toBeLessThan(2000)
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe(long)
    const short = long.slice(0, 600)
    expect(tokenizer.encode(short)).toEqual(referenceEncode(vocab(), short))
  })
})

// --- Synthetic files: the merge rules and the format's errors. --------------------------------------

/** A llama2.c tokenizer file from (piece, score) entries after the 3 specials and 256 byte tokens. */
const tokenizerFile = (entries: ReadonlyArray<readonly [string, number]>): Uint8Array => {
  const all: Array<readonly [Uint8Array, number]> = [
    ...["<unk>", "\n<s>\n", "\n</s>\n"].map((piece) => [new TextEncoder().encode(piece), 0] as const),
    ...Array.from({ length: 256 }, (_, b) => [new TextEncoder().encode(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`), 0] as const),
    ...entries.map(([piece, score]) => [new TextEncoder().encode(piece), score] as const)
  ]
  const size = 4 + all.reduce((sum, [piece]) => sum + 8 + piece.length, 0)
  const bytes = new Uint8Array(size)
  const view = new DataView(bytes.buffer)
  view.setInt32(0, Math.max(...all.map(([piece]) => piece.length)), true)
  let offset = 4
  for (const [piece, score] of all) {
    view.setFloat32(offset, score, true)
    view.setInt32(offset + 4, piece.length, true)
    bytes.set(piece, offset + 8)
    offset += 8 + piece.length
  }
  return bytes
}

describe("llama2.c tokenizer rules (synthetic vocabulary)", () => {
  // ids: " "=259, a=260, b=261, ab=262, ba=263, " a"=264, "bb"=265
  const tokenizer = Llama2cTokenizer.fromBytes(tokenizerFile([[" ", -100], ["a", -100], ["b", -100], ["ab", -1], ["ba", -1], [" a", -5], ["bb", -1e10]]))

  it("merges the best-scored pair first and the leftmost among equal scores", () => {
    // " aba": " a"(-5) loses to "ab"(-1) and "ba"(-1); the leftmost of those, "ab", wins.
    expect(tokenizer.encode("aba", { addSpecialTokens: false })).toEqual([259, 262, 260])
    // "bab": "ba" (left) and "ab" tie at -1: "ba" is leftmost.
    expect(tokenizer.encode("bab", { addSpecialTokens: false })).toEqual([259, 263, 261])
  })

  it("never merges a pair scoring at or below llama2.c's -1e10 floor", () => {
    expect(tokenizer.encode("bb", { addSpecialTokens: false })).toEqual([259, 261, 261])
  })

  it("adds BOS and the dummy prefix only for non-empty text", () => {
    expect(tokenizer.encode("")).toEqual([1])
    expect(tokenizer.encode("", { addSpecialTokens: false })).toEqual([])
    expect(tokenizer.encode("a")).toEqual([1, 264])
  })

  it("rejects truncated and malformed files with InvalidCheckpoint naming the path", async () => {
    const good = tokenizerFile([[" ", 0]])
    expect(() => Llama2cTokenizer.fromBytes(good.subarray(0, good.length - 1), { path: "t.bin" })).toThrow(InvalidCheckpoint)
    expect(() => Llama2cTokenizer.fromBytes(good.subarray(0, good.length - 1), { path: "t.bin" })).toThrow(/t\.bin: llama2\.c tokenizer: entry 259 .* runs past the end/)
    expect(() => Llama2cTokenizer.fromBytes(new Uint8Array(2), { path: "t.bin" })).toThrow(/shorter than its 4-byte header/)
    expect(() => Llama2cTokenizer.fromBytes(tokenizerFile([]).subarray(0, 4 + 8 + 5), { path: "t.bin" })).toThrow(/1 entries/)

    const dir = mkdtempSync(join(tmpdir(), "peftkit-l2c-"))
    writeFileSync(join(dir, "tok.bin"), good.subarray(0, 30))
    const bad = await Effect.runPromiseExit(Effect.provide(readLlama2cTokenizer(join(dir, "tok.bin")), NodeFileSystem.layer))
    expect(Exit.isFailure(bad) && bad.cause._tag === "Fail" && bad.cause.error).toMatchObject({ _tag: "InvalidCheckpoint", path: join(dir, "tok.bin") })
    const missing = await Effect.runPromise(Effect.provide(Effect.flip(readLlama2cTokenizer(join(dir, "nope.bin"))), NodeFileSystem.layer))
    expect(missing).toBeInstanceOf(FileError)
    expect(missing.path).toBe(join(dir, "nope.bin"))
  })
})

/** `loadTokenizer` picks the format from what is at the path. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { FileError, InvalidCheckpoint } from "@peftkit/core"
import { Effect } from "effect"
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { HfTokenizer, isLlama2cTokenizerName, Llama2cTokenizer, loadTokenizer } from "../src/index.js"
import { writeTinyHfTokenizer } from "./fixtures/tinyHfTokenizer.js"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const STORIES = join(repoRoot, "../shared/data/models/stories260K")
const haveShared = existsSync(join(STORIES, "tok512.bin")) && existsSync(join(STORIES, "stories260K.bin"))
const sharedLabel = haveShared ? "(shared data)" : "(shared data: skipped, ../shared/data/models/stories260K is absent)"

const tempDir = () => mkdtempSync(join(tmpdir(), "peftkit-load-"))
const load = (path: string) => Effect.runPromise(Effect.provide(loadTokenizer(path), NodeFileSystem.layer))
const fail = (path: string) => Effect.runPromise(Effect.provide(Effect.flip(loadTokenizer(path)), NodeFileSystem.layer))

/** A llama2.c model header (7 int32) with the given vocab_size, padded with some bytes. */
const modelHeader = (vocabSize: number) => new Uint8Array(new Int32Array([64, 172, 5, 8, 4, vocabSize, 512, 0, 0]).buffer)

describe("loadTokenizer", () => {
  it("a directory with tokenizer.json, or the file itself, is a Hugging Face tokenizer", async () => {
    const dir = writeTinyHfTokenizer(join(tempDir(), "tiny"))
    writeFileSync(join(dir, "tok512.bin"), "ignored: tokenizer.json wins")
    expect(await load(dir)).toBeInstanceOf(HfTokenizer)
    expect(await load(join(dir, "tokenizer.json"))).toBeInstanceOf(HfTokenizer)
    expect(await load(join(dir, "tokenizer_config.json"))).toBeInstanceOf(HfTokenizer)
  })

  it("names llama2.c tokenizer files: tokenizer.bin and tok*.bin", () => {
    expect(["tokenizer.bin", "tok512.bin", "tok4096.bin", "stories260K.bin", "tokenizer.json"].map(isLlama2cTokenizerName)).toEqual([true, true, true, false, false])
  })

  it("a missing path is a FileError; an empty directory and an unknown file say what was expected", async () => {
    const dir = tempDir()
    expect(await fail(join(dir, "nope"))).toMatchObject({ _tag: "FileError", path: join(dir, "nope") })
    const empty = await fail(dir)
    expect(empty).toBeInstanceOf(FileError)
    expect(empty.message).toContain("expected tokenizer.json (Hugging Face), or tokenizer.bin / tok*.bin (llama2.c)")
    writeFileSync(join(dir, "vocab.txt"), "a\nb\n")
    expect(await fail(join(dir, "vocab.txt"))).toBeInstanceOf(InvalidCheckpoint)
  })

  it.skipIf(!haveShared)(`finds tok512.bin in the stories260K directory, from the directory or the model file ${sharedLabel}`, async () => {
    for (const path of [STORIES, join(STORIES, "stories260K.bin"), join(STORIES, "tok512.bin")]) {
      const tokenizer = await load(path)
      expect(tokenizer, path).toBeInstanceOf(Llama2cTokenizer)
      expect(tokenizer.vocabSize).toBe(512)
      expect(tokenizer.encode("Once upon a time")).toEqual([1, 403, 407, 261, 378])
    }
  })

  it.skipIf(!haveShared)(`with several tok*.bin, the model header's vocab_size picks one; without a model it is an error ${sharedLabel}`, async () => {
    const dir = tempDir()
    const tok512 = readFileSync(join(STORIES, "tok512.bin"))
    writeFileSync(join(dir, "tok512.bin"), tok512)
    // A second, shorter vocabulary: the first 300 entries of tok512.
    const short = Llama2cTokenizer.fromBytes(tok512, { vocabSize: 300 })
    const end = 4 + short.pieces.reduce((sum, piece) => sum + 8 + piece.length, 0)
    writeFileSync(join(dir, "tok300.bin"), tok512.subarray(0, end))
    const ambiguous = await fail(dir)
    expect(ambiguous).toBeInstanceOf(InvalidCheckpoint)
    expect(ambiguous.message).toContain("several llama2.c tokenizers (tok300.bin, tok512.bin)")

    writeFileSync(join(dir, "model.bin"), modelHeader(300))
    expect((await load(dir)).vocabSize).toBe(300)
    expect((await load(join(dir, "model.bin"))).vocabSize).toBe(300)
    writeFileSync(join(dir, "model.bin"), modelHeader(-512)) // negative: untied head, same vocabulary size
    expect((await load(join(dir, "model.bin"))).vocabSize).toBe(512)
    writeFileSync(join(dir, "model.bin"), modelHeader(1000))
    expect((await fail(dir)).message).toContain("none of tok300.bin, tok512.bin has the model's vocab_size 1000")

    const single = join(tempDir(), "m")
    mkdirSync(single)
    copyFileSync(join(STORIES, "stories260K.bin"), join(single, "stories260K.bin"))
    expect((await fail(join(single, "stories260K.bin"))).message).toContain("stories260K.bin looks like a llama2.c model; expected tokenizer.bin or tok*.bin next to it")
  })
})

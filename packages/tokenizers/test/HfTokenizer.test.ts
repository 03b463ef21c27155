/**
 * Hugging Face tokenizers on a tiny real tokenizer.json (test/fixtures/tinyHfTokenizer.ts): BPE with
 * byte fallback, a Metaspace pre-tokenizer, a TemplateProcessing post-processor adding BOS, and ChatML
 * chat templates rendered like transformers (outputs cross-checked once with Python's jinja2, using
 * transformers' trim_blocks/lstrip_blocks settings).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { FileError, InvalidCheckpoint } from "@peftkit/core"
import { Effect } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { HfTokenizer, readHfTokenizer } from "../src/index.js"
import { buildVocab, CHATML_TEMPLATE, MERGES, tokenizerConfig, tokenizerJson, writeTinyHfTokenizer } from "./fixtures/tinyHfTokenizer.js"

const tempDir = () => mkdtempSync(join(tmpdir(), "peftkit-hf-"))
const load = (configOverrides: Record<string, unknown> = {}) => Effect.runPromise(Effect.provide(readHfTokenizer(writeTinyHfTokenizer(join(tempDir(), "tiny"), configOverrides)), NodeFileSystem.layer))

const SENTENCE = "the cat sat on the mat."
/** Computed once with HfTokenizer; verified below against the vocabulary and the merges by hand. */
const SENTENCE_IDS = [1, 273, 276, 278, 282, 273, 280, 269]

const MESSAGES = [
  { role: "system", content: "be brief" },
  { role: "user", content: "the cat?" },
  { role: "assistant", content: "the mat." }
] as const

describe("HfTokenizer: encoding and decoding", () => {
  it("encodes the sentence to the pinned ids", async () => {
    const tokenizer = await load()
    expect(tokenizer.encode(SENTENCE)).toEqual(SENTENCE_IDS)
    expect(tokenizer.encode(SENTENCE, { addSpecialTokens: false })).toEqual(SENTENCE_IDS.slice(1))
  })

  it("the pinned ids are the pieces the merges produce (hand-derived)", async () => {
    const tokenizer = await load()
    // Metaspace turns the text into "▁the▁cat▁sat▁on▁the▁mat."; merges by rank: ▁t, he, ▁the, at,
    // ▁c, ▁cat, ▁s, ▁sat, ▁m, ▁mat, on, ▁on. "." has no merge. BOS comes from TemplateProcessing.
    expect(SENTENCE_IDS.map((id) => tokenizer.idToToken(id))).toEqual(["<s>", "▁the", "▁cat", "▁sat", "▁on", "▁the", "▁mat", "."])
    const vocab = buildVocab()
    expect(SENTENCE_IDS).toEqual(["<s>", "▁the", "▁cat", "▁sat", "▁on", "▁the", "▁mat", "."].map((piece) => vocab[piece]))
    expect(MERGES.map(([a, b]) => a + b)).toEqual(expect.arrayContaining(["▁the", "▁cat", "▁sat", "▁on", "▁mat"]))
  })

  it("falls back to UTF-8 byte tokens for characters outside the vocabulary", async () => {
    const tokenizer = await load()
    const ids = tokenizer.encode("the é", { addSpecialTokens: false })
    expect(ids.map((id) => tokenizer.idToToken(id))).toEqual(["▁the", "▁", "<0xC3>", "<0xA9>"])
    expect(ids).toEqual([273, 259, 0xc3 + 3, 0xa9 + 3])
  })

  it("round-trips ASCII and non-ASCII text", async () => {
    const tokenizer = await load()
    for (const text of [SENTENCE, "the cat, Café 日本 🙂", "new\nlines\tand tabs", "emoji 👩‍👩‍👧 sat"]) {
      expect(tokenizer.decode(tokenizer.encode(text), { skipSpecialTokens: true }), text).toBe(text)
      expect(tokenizer.decode(tokenizer.encode(text, { addSpecialTokens: false })), text).toBe(text)
    }
    expect(tokenizer.decode(SENTENCE_IDS)).toBe(`<s> ${SENTENCE}`)
    expect(tokenizer.decode([])).toBe("")
    expect(() => tokenizer.decode([tokenizer.vocabSize])).toThrow(RangeError)
  })

  it("keeps spaces before punctuation (clean_up_tokenization_spaces defaults to false, as in transformers)", async () => {
    const tokenizer = await load({ clean_up_tokenization_spaces: undefined })
    expect(tokenizer.decode(tokenizer.encode("the cat , the mat ."), { skipSpecialTokens: true })).toBe("the cat , the mat .")
    const cleaning = await load({ clean_up_tokenization_spaces: true })
    expect(cleaning.decode(cleaning.encode("the cat , the mat ."), { skipSpecialTokens: true })).toBe("the cat, the mat.")
  })
})

describe("HfTokenizer: special tokens", () => {
  it("reads bos/eos from tokenizer_config (strings or AddedToken objects); pad falls back to eos", async () => {
    const tokenizer = await load()
    expect(tokenizer.vocabSize).toBe(285)
    expect([tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId, tokenizer.unkTokenId]).toEqual([1, 2, 2, 0])
    expect(tokenizer.specialTokens).toEqual({ bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" })
    expect(tokenizer.warnings).toEqual([])
  })

  it("uses pad_token when set, and special_tokens_map.json for tokens the config leaves out", async () => {
    expect((await load({ pad_token: "<unk>" })).padTokenId).toBe(0)
    const dir = writeTinyHfTokenizer(join(tempDir(), "tiny"), { eos_token: undefined, pad_token: undefined })
    writeFileSync(join(dir, "special_tokens_map.json"), JSON.stringify({ eos_token: { content: "<|im_end|>" }, pad_token: "<unk>" }))
    const tokenizer = await Effect.runPromise(Effect.provide(readHfTokenizer(dir), NodeFileSystem.layer))
    expect([tokenizer.eosTokenId, tokenizer.padTokenId]).toEqual([284, 0])
  })

  it("warns about special tokens that are not in the vocabulary", async () => {
    const tokenizer = await load({ pad_token: "<pad>" })
    expect(tokenizer.padTokenId).toBe(2)
    expect(tokenizer.warnings).toEqual(["pad_token '<pad>' is not in the vocabulary; treated as absent"])
  })

  it("applies add_bos_token/add_eos_token for Llama-class tokenizers, as transformers' LlamaTokenizerFast does", async () => {
    const tokenizer = await load({ tokenizer_class: "LlamaTokenizerFast", add_eos_token: true })
    expect(tokenizer.encode("the cat")).toEqual([1, 273, 276, 2])
    const noBos = await load({ tokenizer_class: "LlamaTokenizer", add_bos_token: false })
    expect(noBos.encode("the cat")).toEqual([273, 276])
    // Other classes keep tokenizer.json's post-processor.
    expect((await load({ add_eos_token: true })).encode("the cat")).toEqual([1, 273, 276])
  })
})

describe("HfTokenizer: chat templates", () => {
  it("renders a ChatML template with bos_token and the generation prompt (output matches Python jinja2)", async () => {
    const tokenizer = await load()
    expect(tokenizer.chatTemplate).toBe(CHATML_TEMPLATE)
    expect(tokenizer.applyChatTemplate!(MESSAGES)).toBe(
      "<s><|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nthe cat?<|im_end|>\n<|im_start|>assistant\nthe mat.<|im_end|>\n"
    )
    expect(tokenizer.applyChatTemplate!(MESSAGES.slice(0, 2), { addGenerationPrompt: true })).toBe(
      "<s><|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nthe cat?<|im_end|>\n<|im_start|>assistant\n"
    )
  })

  it("tokenizes a rendered chat with the special tokens as single ids", async () => {
    const tokenizer = await load()
    const ids = tokenizer.encode(tokenizer.applyChatTemplate!([{ role: "user", content: "the cat" }]), { addSpecialTokens: false })
    // <s> <|im_start|> u s e r \n t he ▁cat <|im_end|> \n: no dummy prefix after a special token.
    expect(ids).toEqual([1, 283, 0x75 + 3, 265, 262, 0x72 + 3, 0x0a + 3, 260, 272, 276, 284, 0x0a + 3])
    expect(tokenizer.decode(ids)).toBe("<s><|im_start|>user\nthe cat<|im_end|>\n")
  })

  it("renders a multi-line template with trim_blocks/lstrip_blocks like transformers (output matches Python jinja2)", async () => {
    const zephyr =
      "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n" +
      "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n" +
      "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n" +
      "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
    const tokenizer = await load({ chat_template: zephyr })
    expect(tokenizer.applyChatTemplate!(MESSAGES)).toBe("<|system|>\nbe brief</s>\n<|user|>\nthe cat?</s>\n<|assistant|>\nthe mat.</s>\n")
    expect(tokenizer.applyChatTemplate!(MESSAGES.slice(0, 2), { addGenerationPrompt: true })).toBe("<|system|>\nbe brief</s>\n<|user|>\nthe cat?</s>\n<|assistant|>\n")
  })

  it("picks the 'default' template from a named list, or the one asked for", async () => {
    const templates = [{ name: "tool_use", template: "TOOLS {{ tools | length }}" }, { name: "default", template: "{{ messages | length }} messages" }]
    const tokenizer = await load({ chat_template: templates })
    expect(Object.keys(tokenizer.chatTemplates)).toEqual(["tool_use", "default"])
    expect(tokenizer.applyChatTemplate!(MESSAGES)).toBe("3 messages")
    const dir = writeTinyHfTokenizer(join(tempDir(), "tiny"), { chat_template: templates })
    const toolUse = await Effect.runPromise(Effect.provide(readHfTokenizer(dir, { chatTemplateName: "tool_use" }), NodeFileSystem.layer))
    expect(toolUse.applyChatTemplate!(MESSAGES, { variables: { tools: [{}, {}] } })).toBe("TOOLS 2")
    const missing = await Effect.runPromise(Effect.provide(Effect.flip(readHfTokenizer(dir, { chatTemplateName: "rag" })), NodeFileSystem.layer))
    expect(missing).toBeInstanceOf(InvalidCheckpoint)
    expect(missing.message).toContain("no chat template named 'rag' (have: tool_use, default)")
  })

  it("prefers chat_template.jinja; has no applyChatTemplate without a template", async () => {
    const dir = writeTinyHfTokenizer(join(tempDir(), "tiny"))
    writeFileSync(join(dir, "chat_template.jinja"), "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}")
    expect((await Effect.runPromise(Effect.provide(readHfTokenizer(dir), NodeFileSystem.layer))).applyChatTemplate!(MESSAGES.slice(1))).toBe("[user] the cat?\n[assistant] the mat.\n")
    const none = await load({ chat_template: undefined })
    expect(none.applyChatTemplate).toBeUndefined()
    expect(none.chatTemplate).toBeUndefined()
  })

  it("raise_exception in a template throws with the template's message", async () => {
    const tokenizer = await load({ chat_template: "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok" })
    expect(tokenizer.applyChatTemplate!([{ role: "user", content: "x" }])).toBe("ok")
    expect(() => tokenizer.applyChatTemplate!(MESSAGES)).toThrow(/chat template: .*first message must be from the user/)
  })
})

describe("HfTokenizer: errors name the file", () => {
  it("missing tokenizer.json is a FileError naming it", async () => {
    const dir = tempDir()
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig()))
    const error = await Effect.runPromise(Effect.provide(Effect.flip(readHfTokenizer(dir)), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(FileError)
    expect(error.path).toBe(join(dir, "tokenizer.json"))
  })

  it("corrupt JSON, an unusable tokenizer.json and an unparsable template are InvalidCheckpoint naming the file", async () => {
    const dir = writeTinyHfTokenizer(join(tempDir(), "tiny"))
    writeFileSync(join(dir, "tokenizer_config.json"), "{ not json")
    const badConfig = await Effect.runPromise(Effect.provide(Effect.flip(readHfTokenizer(dir)), NodeFileSystem.layer))
    expect(badConfig).toMatchObject({ _tag: "InvalidCheckpoint", path: join(dir, "tokenizer_config.json") })
    expect(badConfig.message).toContain("not valid JSON")

    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig()))
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ ...tokenizerJson(), model: { type: "Nonsense" } }))
    const badModel = await Effect.runPromise(Effect.provide(Effect.flip(readHfTokenizer(dir)), NodeFileSystem.layer))
    expect(badModel).toMatchObject({ _tag: "InvalidCheckpoint", path: join(dir, "tokenizer.json") })
    expect(badModel.message).toContain("Unknown TokenizerModel type: Nonsense")

    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify([1, 2]))
    expect(await Effect.runPromise(Effect.provide(Effect.flip(readHfTokenizer(dir)), NodeFileSystem.layer))).toMatchObject({ path: join(dir, "tokenizer.json"), reason: "tokenizer.json must hold a JSON object" })

    const badTemplate = writeTinyHfTokenizer(join(tempDir(), "tiny"), { chat_template: "{% for m in messages %}unterminated" })
    const templateError = await Effect.runPromise(Effect.provide(Effect.flip(readHfTokenizer(badTemplate)), NodeFileSystem.layer))
    expect(templateError).toMatchObject({ _tag: "InvalidCheckpoint", path: join(badTemplate, "tokenizer_config.json") })
    expect(templateError.message).toContain("chat template does not parse")
    rmSync(dir, { recursive: true })
  })

  it("builds from parsed files without touching the file system", () => {
    const tokenizer = HfTokenizer.fromFiles({ tokenizer: tokenizerJson(), config: tokenizerConfig() })
    expect(tokenizer.encode(SENTENCE)).toEqual(SENTENCE_IDS)
    expect(() => HfTokenizer.fromFiles({ tokenizer: {} }, { path: "somewhere" })).toThrow(/somewhere\/tokenizer\.json.*no 'model' object/)
  })
})

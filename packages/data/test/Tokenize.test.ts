/** Tokens and loss masks of each MLX-LM shape, masking, truncation, and errors that name the line. */
import { ConfigError } from "@peftkit/core"
import { HfTokenizer, Llama2cTokenizer } from "@peftkit/tokenizers"
import { Effect } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { commonPrefixLength, InvalidDataset, tokenizeRecord, tokenizeRecords } from "../src/index.js"
import { tokenizerConfig, tokenizerJson } from "../../tokenizers/test/fixtures/tinyHfTokenizer.js"
import { ID, targets, wordTokenizer } from "./helpers.js"

const { "<s>": BOS, "</s>": EOS, "<user>": USER, "<assistant>": ASSISTANT, "<system>": SYSTEM, "<end>": END } = ID as Record<string, number>
const [the, cat, sat, on, mat, hi, hello, a, dog, be, brief, yes, no] = ["the", "cat", "sat", "on", "mat", "hi", "hello", "a", "dog", "be", "brief", "yes", "no"].map((w) => ID[w]!)

describe("{text}", () => {
  it("encodes with BOS, appends EOS, every token but the first is a target", () => {
    const { example, truncated } = tokenizeRecord({ text: "the cat sat" }, wordTokenizer())
    expect(example).toEqual({ inputIds: [BOS, the, cat, sat, EOS], lossMask: [0, 1, 1, 1, 1] })
    expect(truncated).toBe(false)
  })

  it("does not append a second EOS, and appendEos: false appends none", () => {
    expect(tokenizeRecord({ text: "the cat </s>" }, wordTokenizer()).example.inputIds).toEqual([BOS, the, cat, EOS])
    expect(tokenizeRecord({ text: "the cat" }, wordTokenizer(), { appendEos: false }).example.inputIds).toEqual([BOS, the, cat])
  })
})

describe("{prompt, completion} without a chat template", () => {
  const record = { prompt: "the cat sat on", completion: " the mat" } // the separator is the data's

  it("maskPrompt: targets are the completion and EOS", () => {
    const { example } = tokenizeRecord(record, wordTokenizer(), { maskPrompt: true })
    expect(example).toEqual({ inputIds: [BOS, the, cat, sat, on, the, mat, EOS], lossMask: [0, 0, 0, 0, 0, 1, 1, 1] })
    expect(targets(example)).toEqual(["the", "mat", "</s>"])
  })

  it("without maskPrompt every token but the first is a target", () => {
    expect(tokenizeRecord(record, wordTokenizer()).example.lossMask).toEqual([0, 1, 1, 1, 1, 1, 1, 1])
  })

  it("the prompt ends at the common prefix of the prompt's ids and the full ids (a token spanning the boundary is a target)", () => {
    // "the ca" + "t sat": the prompt alone ends in <unk> ("ca"); the full text has "cat" there.
    const { example } = tokenizeRecord({ prompt: "the ca", completion: "t sat" }, wordTokenizer(), { maskPrompt: true })
    expect(example.inputIds).toEqual([BOS, the, cat, sat, EOS])
    expect(example.lossMask).toEqual([0, 0, 1, 1, 1])
    expect(commonPrefixLength([1, 2, 3], [1, 2, 4, 5])).toBe(2)
  })

  it("completionFormat 'chat' without a template is an error naming the line", () => {
    expect(() => tokenizeRecord(record, wordTokenizer(), { completionFormat: "chat" }, { path: "d/train.jsonl", line: 4 })).toThrow(
      "invalid dataset d/train.jsonl:4: completionFormat 'chat' needs a chat template and the tokenizer has none"
    )
  })
})

describe("{prompt, completion} with a chat template (MLX-LM's CompletionsDataset)", () => {
  const record = { prompt: "hi", completion: "hello" }

  it("renders [user, assistant]; maskPrompt targets what follows the generation prompt", () => {
    const { example } = tokenizeRecord(record, wordTokenizer({ chat: true }), { maskPrompt: true })
    expect(example.inputIds).toEqual([BOS, USER, hi, END, ASSISTANT, hello, END])
    expect(example.lossMask).toEqual([0, 0, 0, 0, 0, 1, 1])
  })

  it("completionFormat 'text' ignores the template and appends EOS", () => {
    const { example } = tokenizeRecord({ prompt: "hi ", completion: "hello" }, wordTokenizer({ chat: true }), { maskPrompt: true, completionFormat: "text" })
    expect(example).toEqual({ inputIds: [BOS, hi, hello, EOS], lossMask: [0, 0, 1, 1] })
  })
})

describe("{messages}", () => {
  const messages = [
    { role: "system", content: "be brief" },
    { role: "user", content: "hi" },
    { role: "assistant", content: "hello" },
    { role: "user", content: "a dog" },
    { role: "assistant", content: "yes no" }
  ]
  const ids = [BOS, SYSTEM, be, brief, END, USER, hi, END, ASSISTANT, hello, END, USER, a, dog, END, ASSISTANT, yes, no, END]

  it("renders with the chat template, encoded without adding BOS again; no maskPrompt: all targets", () => {
    const { example } = tokenizeRecord({ messages }, wordTokenizer({ chat: true }))
    expect(example.inputIds).toEqual(ids)
    expect(example.lossMask).toEqual([0, ...new Array(ids.length - 1).fill(1)])
  })

  it("maskPrompt: every assistant turn (content and its end token) is a target, nothing else", () => {
    const { example } = tokenizeRecord({ messages }, wordTokenizer({ chat: true }), { maskPrompt: true })
    expect(example.lossMask).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1])
    expect(targets(example)).toEqual(["hello", "<end>", "yes", "no", "<end>"])
  })

  it("chatLoss 'last' (MLX-LM): only the final message", () => {
    const { example } = tokenizeRecord({ messages }, wordTokenizer({ chat: true }), { maskPrompt: true, chatLoss: "last" })
    expect(targets(example)).toEqual(["yes", "no", "<end>"])
  })

  it("a conversation opening with the assistant: its turn starts after the template's header", () => {
    const { example } = tokenizeRecord({ messages: [{ role: "assistant", content: "hello" }, { role: "user", content: "hi" }] }, wordTokenizer({ chat: true }), { maskPrompt: true })
    expect(example.inputIds).toEqual([BOS, ASSISTANT, hello, END, USER, hi, END])
    expect(targets(example)).toEqual(["hello", "<end>"])
  })

  it("a conversation without an assistant turn has no targets under maskPrompt, and is counted", async () => {
    const result = await Effect.runPromise(tokenizeRecords([{ messages: [{ role: "user", content: "hi" }] }, { messages }], wordTokenizer({ chat: true }), { maskPrompt: true }))
    expect(result.withoutTargets).toBe(1)
    expect(result.examples[0]!.lossMask).toEqual([0, 0, 0, 0])
  })

  it("no chat template, or a template that raises, is an InvalidDataset naming file and line", async () => {
    const noTemplate = await Effect.runPromise(Effect.flip(tokenizeRecords([{ messages }, { messages }], wordTokenizer(), {}, { path: "chat/train.jsonl", lines: [1, 3] })))
    expect(noTemplate).toBeInstanceOf(InvalidDataset)
    expect(noTemplate.message).toBe("invalid dataset chat/train.jsonl:1: a {messages} record needs a chat template and the tokenizer has none")
    const raising = await Effect.runPromise(
      Effect.flip(tokenizeRecords([{ messages }, { messages: [{ role: "bad", content: "x" }] }], wordTokenizer({ chat: true }), {}, { path: "chat/valid.jsonl", lines: [1, 7] }))
    )
    expect(raising.message).toBe("invalid dataset chat/valid.jsonl:7: chat template: unknown role 'bad'")
  })
})

describe("truncation", () => {
  it("cuts to maxSeqLength, keeping the start of tokens and mask, and counts truncated examples", async () => {
    const records = [{ text: "the cat sat on the mat" }, { text: "hi" }, { text: "a dog ran on the mat" }]
    const result = await Effect.runPromise(tokenizeRecords(records, wordTokenizer(), { maxSeqLength: 4 }))
    expect(result.truncated).toBe(2)
    expect(result.longest).toBe(8)
    expect(result.examples.map((example) => example.inputIds)).toEqual([[BOS, the, cat, sat], [BOS, hi, EOS], [BOS, a, dog, ID["ran"]]])
    expect(result.examples.map((example) => example.lossMask)).toEqual([[0, 1, 1, 1], [0, 1, 1], [0, 1, 1, 1]])
    expect(result.tokens).toBe(11)
  })

  it("a prompt longer than maxSeqLength leaves no targets, and is counted", async () => {
    const result = await Effect.runPromise(tokenizeRecords([{ prompt: "the cat sat on the", completion: "mat" }], wordTokenizer(), { maskPrompt: true, maxSeqLength: 3 }))
    expect(result).toMatchObject({ truncated: 1, withoutTargets: 1 })
    expect(result.examples[0]).toEqual({ inputIds: [BOS, the, cat], lossMask: [0, 0, 0] })
  })

  it("bad options are a ConfigError naming the field", async () => {
    const error = await Effect.runPromise(Effect.flip(tokenizeRecords([{ text: "a" }], wordTokenizer(), { maxSeqLength: 0 })))
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toContain("'tokenize.maxSeqLength'")
    expect(() => tokenizeRecord({ text: "a" }, wordTokenizer(), { chatLoss: "all" } as never)).toThrow(ConfigError)
  })
})

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const TOK512 = join(repoRoot, "../shared/data/models/stories260K/tok512.bin")
const haveShared = existsSync(TOK512)

describe.skipIf(!haveShared)(`with the real llama2.c tokenizer ${haveShared ? "(shared data)" : "(shared data: skipped, ../shared/data/models/stories260K/tok512.bin is absent)"}`, () => {
  it("a MeZO-style prompt/completion: the targets decode to the label word and EOS (shared data)", () => {
    const tokenizer = Llama2cTokenizer.fromBytes(readFileSync(TOK512))
    // No chat template: completionFormat "auto" concatenates prompt and completion.
    const { example } = tokenizeRecord({ prompt: "The movie was fun. It was", completion: " great" }, tokenizer, { maskPrompt: true })
    const targetIds = example.inputIds.filter((_, i) => example.lossMask[i] === 1)
    expect(tokenizer.decode(targetIds.slice(0, -1))).toBe("great") // the first piece's space is dropped when decoded alone
    expect(targetIds.at(-1)).toBe(tokenizer.eosTokenId)
    expect(tokenizer.decode(example.inputIds, { skipSpecialTokens: true })).toBe("The movie was fun. It was great")
    expect(example.inputIds.slice(0, example.lossMask.indexOf(1))).toEqual(tokenizer.encode("The movie was fun. It was"))
  })
})

/** The spans of consecutive targets, decoded. */
const targetSpans = (example: { readonly inputIds: ReadonlyArray<number>; readonly lossMask: ReadonlyArray<number> }, tokenizer: HfTokenizer) => {
  const spans: Array<string> = []
  let current: Array<number> = []
  example.inputIds.forEach((id, i) => {
    if (example.lossMask[i] === 1) current.push(id)
    else if (current.length > 0) {
      spans.push(tokenizer.decode(current))
      current = []
    }
  })
  if (current.length > 0) spans.push(tokenizer.decode(current))
  return spans
}

describe("with a real tokenizer.json and ChatML template (the tokenizers package's fixture)", () => {
  const tokenizer = HfTokenizer.fromFiles({ tokenizer: tokenizerJson(), config: tokenizerConfig() })

  it("maskPrompt on {messages}: exactly the assistant turns, each with its <|im_end|> and newline", () => {
    const messages = [
      { role: "system", content: "be brief" },
      { role: "user", content: "the cat?" },
      { role: "assistant", content: "the mat." },
      { role: "user", content: "on?" },
      { role: "assistant", content: "the cat sat on the mat." }
    ]
    const { example } = tokenizeRecord({ messages }, tokenizer, { maskPrompt: true })
    expect(example.inputIds).toEqual(tokenizer.encode(tokenizer.applyChatTemplate!(messages), { addSpecialTokens: false }))
    expect(example.inputIds[0]).toBe(tokenizer.bosTokenId) // written by the template, not added twice
    expect(targetSpans(example, tokenizer)).toEqual(["the mat.<|im_end|>\n", "the cat sat on the mat.<|im_end|>\n"])
    expect(targetSpans(tokenizeRecord({ messages }, tokenizer, { maskPrompt: true, chatLoss: "last" }).example, tokenizer)).toEqual(["the cat sat on the mat.<|im_end|>\n"])
  })

  it("{prompt, completion} goes through the chat template (MLX-LM); the completion is the target", () => {
    const { example } = tokenizeRecord({ prompt: "the cat?", completion: "the mat." }, tokenizer, { maskPrompt: true })
    expect(tokenizer.decode(example.inputIds)).toBe("<s><|im_start|>user\nthe cat?<|im_end|>\n<|im_start|>assistant\nthe mat.<|im_end|>\n")
    expect(targetSpans(example, tokenizer)).toEqual(["the mat.<|im_end|>\n"])
  })
})

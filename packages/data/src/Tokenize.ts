/**
 * From records to `TokenizedExample`s, the way MLX-LM's datasets do it:
 *
 * - `{text}`: `encode(text)` (with BOS), EOS appended unless already last; every token a target.
 * - `{prompt, completion}`: with a chat template (`completionFormat: "auto"` or `"chat"`), MLX-LM's
 *   CompletionsDataset: the conversation `[user: prompt, assistant: completion]` rendered and encoded;
 *   without one (`"auto"`) or with `"text"`, `encode(prompt + completion)` plus EOS (the separator,
 *   e.g. a leading space in the completion, is the data's). With `maskPrompt`, only the completion's
 *   tokens are targets.
 * - `{messages}`: rendered with the chat template and encoded without adding special tokens (templates
 *   write their own, as `apply_chat_template(tokenize=True)` does). With `maskPrompt`, the targets are
 *   every assistant turn (`chatLoss: "assistant"`, default) or, as MLX-LM, everything after the
 *   generation prompt of the final message (`chatLoss: "last"`).
 *
 * Where the prompt ends is found by encoding the prompt alone (for chat: the render of the messages
 * before a turn, with the generation prompt) and taking the longest common prefix with the full
 * sequence's ids: MLX-LM takes the prompt's length, which marks a prompt token as a target when the
 * tokenizer merges across the boundary; the common prefix never does.
 *
 * `lossMask[i] = 1` marks token i as a prediction target (predicted from positions < i), so the first
 * token is never one. Sequences longer than `maxSeqLength` are cut to their first `maxSeqLength`
 * tokens, as MLX-LM does, and counted; a text far longer than that is tokenised only as far as
 * needed (see `boundedTokenizer`), so one huge line costs no more than a short one.
 */
import { ConfigError, decodeConfig, decodeConfigSync, PositiveInt } from "@peftkit/core"
import type { ChatMessage, Tokenizer } from "@peftkit/tokenizers"
import { Effect, Schema } from "effect"
import { InvalidDataset } from "./DataErrors.js"
import type { TokenizedExample } from "./Example.js"
import type { DataRecord } from "./Jsonl.js"

export interface TokenizeOptions {
  /** Targets only on the completion / assistant turns (MLX-LM's `--mask-prompt`). Default false. */
  readonly maskPrompt?: boolean
  /** Cut longer sequences to this many tokens (MLX-LM's `--max-seq-length`, default 2048 there). Default: no limit. */
  readonly maxSeqLength?: number
  /** How `{prompt, completion}` becomes text: "auto" (chat template when the tokenizer has one), "chat" or "text". */
  readonly completionFormat?: "auto" | "chat" | "text"
  /** With `maskPrompt`, which `{messages}` tokens are targets: every assistant turn, or MLX-LM's final message. */
  readonly chatLoss?: "assistant" | "last"
  /** Append EOS to `{text}` and plain-text completions. Default true. */
  readonly appendEos?: boolean
}

const TokenizeOptionsSchema = Schema.Struct({
  maskPrompt: Schema.optional(Schema.Boolean),
  maxSeqLength: Schema.optional(PositiveInt),
  completionFormat: Schema.optional(Schema.Literal("auto", "chat", "text")),
  chatLoss: Schema.optional(Schema.Literal("assistant", "last")),
  appendEos: Schema.optional(Schema.Boolean)
})

/** Where a record came from, for errors. */
export interface RecordSource {
  readonly path: string
  readonly line?: number
}

/** One example before truncation, and whether it was cut. */
export interface TokenizedRecord {
  readonly example: TokenizedExample
  /** Length before truncation (a lower bound when a very long text was tokenised only in part). */
  readonly length: number
  readonly truncated: boolean
}

/** The common prefix length of two id sequences. */
export const commonPrefixLength = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

const fail = (source: RecordSource | undefined, reason: string): InvalidDataset =>
  new InvalidDataset({ path: source?.path ?? "<records>", ...(source?.line === undefined ? {} : { line: source.line }), reason })

const withEos = (ids: ReadonlyArray<number>, tokenizer: Tokenizer, append: boolean): Array<number> => {
  const out = [...ids]
  if (append && tokenizer.eosTokenId !== undefined && out.at(-1) !== tokenizer.eosTokenId) out.push(tokenizer.eosTokenId)
  return out
}

/** Targets from `start` on (never token 0). */
const maskFrom = (length: number, start: number): Array<number> => Array.from({ length }, (_, i) => (i >= Math.max(start, 1) ? 1 : 0))

const render = (tokenizer: Tokenizer, messages: ReadonlyArray<ChatMessage>, addGenerationPrompt: boolean, source: RecordSource | undefined): string => {
  try {
    return tokenizer.applyChatTemplate!(messages, { addGenerationPrompt })
  } catch (error) {
    throw fail(source, error instanceof Error ? error.message : String(error))
  }
}

const encodeChat = (tokenizer: Tokenizer, messages: ReadonlyArray<ChatMessage>, addGenerationPrompt: boolean, source: RecordSource | undefined) =>
  tokenizer.encode(render(tokenizer, messages, addGenerationPrompt, source), { addSpecialTokens: false })

const chatExample = (
  tokenizer: Tokenizer,
  messages: ReadonlyArray<ChatMessage>,
  maskPrompt: boolean,
  chatLoss: "assistant" | "last",
  source: RecordSource | undefined
): TokenizedExample => {
  const ids = encodeChat(tokenizer, messages, false, source)
  if (!maskPrompt) return { inputIds: ids, lossMask: maskFrom(ids.length, 1) }
  const startOf = (turn: number): number => {
    if (turn > 0) return commonPrefixLength(encodeChat(tokenizer, messages.slice(0, turn), true, source), ids)
    // Nothing before the first message: templates that index messages[0] may not render an empty list.
    try {
      return commonPrefixLength(encodeChat(tokenizer, [], true, source), ids)
    } catch {
      return 1
    }
  }
  if (chatLoss === "last") return { inputIds: ids, lossMask: maskFrom(ids.length, startOf(messages.length - 1)) }
  const lossMask = new Array<number>(ids.length).fill(0)
  messages.forEach((message, turn) => {
    if (message.role !== "assistant") return
    const start = Math.max(startOf(turn), 1)
    // The turn ends where the conversation up to it stops matching the full one (the last turn: the end).
    const end = turn === messages.length - 1 ? ids.length : commonPrefixLength(encodeChat(tokenizer, messages.slice(0, turn + 1), false, source), ids)
    for (let i = start; i < end; i++) lossMask[i] = 1
  })
  return { inputIds: ids, lossMask }
}

const needTemplate = (tokenizer: Tokenizer, source: RecordSource | undefined, what: string) => {
  if (tokenizer.applyChatTemplate === undefined) throw fail(source, `${what} needs a chat template and the tokenizer has none`)
}

type Resolved = Required<Omit<TokenizeOptions, "maxSeqLength">> & { readonly maxSeqLength: number | undefined }

const resolve = (options: Schema.Schema.Type<typeof TokenizeOptionsSchema>): Resolved => ({
  maskPrompt: options.maskPrompt ?? false,
  maxSeqLength: options.maxSeqLength,
  completionFormat: options.completionFormat ?? "auto",
  chatLoss: options.chatLoss ?? "assistant",
  appendEos: options.appendEos ?? true
})

// Tokens past maxSeqLength that a prefix must still yield before its first maxSeqLength tokens are
// trusted to be those of the whole text (merges near the cut only change the last few), and the
// characters per token the first attempt allows for.
const CUT_SLACK_TOKENS = 16
const CHARS_PER_TOKEN = 16

/**
 * `tokenizer` with an `encode` that, for texts far longer than `maxSeqLength` tokens can cover,
 * encodes a prefix (cut at whitespace where there is some, never inside a surrogate pair) instead of
 * the whole text: a 4M-character line with maxSeqLength 64 costs a few kilobytes of tokenising, not
 * 15 s and a gigabyte. The prefix grows 4x at a time until it yields maxSeqLength + 16 tokens, so
 * the first maxSeqLength tokens are the whole text's, and the result is only used cut to them.
 */
const boundedTokenizer = (tokenizer: Tokenizer, maxSeqLength: number): Tokenizer => ({
  // Delegating members, not a spread: tokenizers may be class instances with prototype methods.
  vocabSize: tokenizer.vocabSize,
  bosTokenId: tokenizer.bosTokenId,
  eosTokenId: tokenizer.eosTokenId,
  padTokenId: tokenizer.padTokenId,
  decode: (ids, options) => tokenizer.decode(ids, options),
  ...(tokenizer.applyChatTemplate === undefined ? {} : { applyChatTemplate: (messages, options) => tokenizer.applyChatTemplate!(messages, options) }),
  encode: (text, options) => {
    const want = maxSeqLength + CUT_SLACK_TOKENS
    for (let budget = CHARS_PER_TOKEN * want; budget < text.length; budget *= 4) {
      let cut = budget
      const space = text.slice(budget >> 1, budget).search(/\s\S*$/)
      if (space >= 0) cut = (budget >> 1) + space
      const last = text.charCodeAt(cut - 1)
      if (last >= 0xd800 && last <= 0xdbff) cut--
      const ids = tokenizer.encode(text.slice(0, cut), options)
      if (ids.length >= want) return ids
    }
    return tokenizer.encode(text, options)
  }
})

const tokenizeWith = (record: DataRecord, fullTokenizer: Tokenizer, options: Resolved, source: RecordSource | undefined): TokenizedRecord => {
  const { maskPrompt, maxSeqLength, completionFormat, chatLoss, appendEos } = options
  const tokenizer = maxSeqLength === undefined ? fullTokenizer : boundedTokenizer(fullTokenizer, maxSeqLength)
  let example: TokenizedExample
  if ("messages" in record) {
    needTemplate(tokenizer, source, "a {messages} record")
    example = chatExample(tokenizer, record.messages, maskPrompt, chatLoss, source)
  } else if ("prompt" in record) {
    const chat = completionFormat === "chat" || (completionFormat === "auto" && tokenizer.applyChatTemplate !== undefined)
    if (chat) {
      needTemplate(tokenizer, source, "completionFormat 'chat'")
      const messages = [{ role: "user", content: record.prompt }, { role: "assistant", content: record.completion }]
      example = chatExample(tokenizer, messages, maskPrompt, "last", source)
    } else {
      const ids = withEos(tokenizer.encode(record.prompt + record.completion), tokenizer, appendEos)
      const start = maskPrompt ? commonPrefixLength(tokenizer.encode(record.prompt), ids) : 1
      example = { inputIds: ids, lossMask: maskFrom(ids.length, start) }
    }
  } else {
    const ids = withEos(tokenizer.encode(record.text), tokenizer, appendEos)
    example = { inputIds: ids, lossMask: maskFrom(ids.length, 1) }
  }
  const length = example.inputIds.length
  if (maxSeqLength !== undefined && length > maxSeqLength) {
    return { example: { inputIds: example.inputIds.slice(0, maxSeqLength), lossMask: example.lossMask.slice(0, maxSeqLength) }, length, truncated: true }
  }
  return { example, length, truncated: false }
}

/**
 * Tokenizes one record (see the module comment). Throws `InvalidDataset` (naming `source`) when the
 * record needs a chat template the tokenizer lacks, or the template raises; `ConfigError` for bad options.
 */
export const tokenizeRecord = (record: DataRecord, tokenizer: Tokenizer, options: TokenizeOptions = {}, source?: RecordSource): TokenizedRecord =>
  tokenizeWith(record, tokenizer, resolve(decodeConfigSync(TokenizeOptionsSchema, options, "tokenize")), source)

/** A tokenized split, with what MLX-LM would warn about. */
export interface TokenizedDataset {
  readonly examples: ReadonlyArray<TokenizedExample>
  /** Examples cut to `maxSeqLength`. */
  readonly truncated: number
  /** The longest example before truncation. */
  readonly longest: number
  /** Examples with no target token (e.g. a prompt longer than `maxSeqLength`): they add nothing to the loss. */
  readonly withoutTargets: number
  /** Tokens over all examples, after truncation. */
  readonly tokens: number
}

/**
 * Tokenizes records; `source.lines[i]` is record i's line in `source.path`, for errors. Fails with
 * `InvalidDataset` naming the line of the first record that cannot be tokenized.
 */
export const tokenizeRecords = (
  records: ReadonlyArray<DataRecord>,
  tokenizer: Tokenizer,
  options: TokenizeOptions = {},
  source?: { readonly path: string; readonly lines?: ReadonlyArray<number> }
): Effect.Effect<TokenizedDataset, InvalidDataset | ConfigError> =>
  Effect.flatMap(decodeConfig(TokenizeOptionsSchema, options, "tokenize"), (decoded) => {
    const resolved = resolve(decoded)
    try {
      const examples: Array<TokenizedExample> = []
      let truncated = 0
      let longest = 0
      let withoutTargets = 0
      let tokens = 0
      records.forEach((record, i) => {
        const line = source?.lines?.[i]
        const one = tokenizeWith(record, tokenizer, resolved, source === undefined ? undefined : { path: source.path, ...(line === undefined ? {} : { line }) })
        examples.push(one.example)
        if (one.truncated) truncated++
        longest = Math.max(longest, one.length)
        if (!one.example.lossMask.some((value) => value === 1)) withoutTargets++
        tokens += one.example.inputIds.length
      })
      return Effect.succeed({ examples, truncated, longest, withoutTargets, tokens })
    } catch (error) {
      if (error instanceof InvalidDataset) return Effect.fail(error)
      return Effect.die(error)
    }
  })

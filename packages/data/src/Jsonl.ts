/**
 * MLX-LM's jsonl training data: one JSON object a line, in one of three shapes per file:
 * `{"text": ...}`, `{"prompt": ..., "completion": ...}`, or `{"messages": [{"role", "content"}, ...]}`.
 * Other keys are ignored (as MLX-LM does). A line that is not JSON, matches no shape, or has another
 * shape than the file's first record is an `InvalidDataset` naming the file and the line, as is
 * invalid UTF-8 (with its byte offset). Blank lines are skipped.
 */
import type { FileSystem } from "@effect/platform"
import { type FileError, readFileBytes, Safetensors } from "@peftkit/core"
import type { ChatMessage } from "@peftkit/tokenizers"
import { Effect } from "effect"
import { InvalidDataset } from "./DataErrors.js"

/** `{"text"}`: language modelling on the whole text. */
export interface TextRecord {
  readonly text: string
}

/** `{"prompt", "completion"}`: the completion is the target (the prompt too, unless masked). */
export interface CompletionRecord {
  readonly prompt: string
  readonly completion: string
}

/** `{"messages"}`: a conversation, rendered with the tokenizer's chat template. */
export interface ChatRecord {
  readonly messages: ReadonlyArray<ChatMessage>
}

export type DataRecord = TextRecord | CompletionRecord | ChatRecord

export type RecordShape = "text" | "completion" | "chat"

/** The shape of a record, with MLX-LM's precedence: messages, then prompt/completion, then text. */
export const recordShape = (record: DataRecord): RecordShape => ("messages" in record ? "chat" : "prompt" in record ? "completion" : "text")

const SHAPE_NAMES: Record<RecordShape, string> = { text: "{text}", completion: "{prompt, completion}", chat: "{messages}" }

/** A parsed jsonl file: its records and the 1-based line each came from. */
export interface JsonlFile {
  readonly path: string
  readonly shape: RecordShape | undefined
  readonly records: ReadonlyArray<DataRecord>
  readonly lines: ReadonlyArray<number>
}

const describe = (value: unknown): string => (value === null ? "null" : Array.isArray(value) ? "a list" : typeof value)

/** Validates one parsed line; a string is the reason it is not a record. */
const toRecord = (value: unknown): DataRecord | string => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return `expected a JSON object, got ${describe(value)}`
  const object = value as Record<string, unknown>
  if ("messages" in object) {
    const messages = object["messages"]
    if (!Array.isArray(messages)) return `'messages' must be a list, got ${describe(messages)}`
    if (messages.length === 0) return "'messages' is empty"
    for (const [i, message] of messages.entries()) {
      if (typeof message !== "object" || message === null || Array.isArray(message)) return `messages[${i}] must be an object, got ${describe(message)}`
      const { role, content } = message as Record<string, unknown>
      if (typeof role !== "string") return `messages[${i}].role must be a string, got ${describe(role)}`
      if (typeof content !== "string") return `messages[${i}].content must be a string, got ${describe(content)}`
    }
    return { messages: messages.map((message: Record<string, unknown>) => ({ ...message, role: message["role"], content: message["content"] }) as ChatMessage) }
  }
  if ("prompt" in object || "completion" in object) {
    const { prompt, completion } = object
    if (!("completion" in object)) return "has 'prompt' but no 'completion'"
    if (!("prompt" in object)) return "has 'completion' but no 'prompt'"
    if (typeof prompt !== "string") return `'prompt' must be a string, got ${describe(prompt)}`
    if (typeof completion !== "string") return `'completion' must be a string, got ${describe(completion)}`
    return { prompt, completion }
  }
  if ("text" in object) {
    const text = object["text"]
    if (typeof text !== "string") return `'text' must be a string, got ${describe(text)}`
    return { text }
  }
  const keys = Object.keys(object)
  return `matches none of {text}, {prompt, completion}, {messages} (keys: ${keys.length === 0 ? "none" : keys.join(", ")})`
}

/** Parses jsonl text; throws `InvalidDataset` naming `path` and the line. */
export const parseJsonlSync = (text: string, path: string): JsonlFile => {
  const records: Array<DataRecord> = []
  const lines: Array<number> = []
  let shape: RecordShape | undefined
  let firstLine = 0
  const rows = text.split("\n")
  for (let i = 0; i < rows.length; i++) {
    const line = i + 1
    const row = i === 0 && rows[0]!.charCodeAt(0) === 0xfeff ? rows[0]!.slice(1) : rows[i]!
    if (row.trim() === "") continue
    let value: unknown
    try {
      value = JSON.parse(row)
    } catch (error) {
      throw new InvalidDataset({ path, line, reason: `not valid JSON (${error instanceof Error ? error.message : String(error)})` })
    }
    const record = toRecord(value)
    if (typeof record === "string") throw new InvalidDataset({ path, line, reason: record })
    const own = recordShape(record)
    if (shape === undefined) {
      shape = own
      firstLine = line
    } else if (own !== shape) {
      throw new InvalidDataset({ path, line, reason: `is ${SHAPE_NAMES[own]} but line ${firstLine} is ${SHAPE_NAMES[shape]}: one shape per file` })
    }
    records.push(record)
    lines.push(line)
  }
  return { path, shape, records, lines }
}

/** Parses jsonl text (see `parseJsonlSync`). */
export const parseJsonl = (text: string, path: string): Effect.Effect<JsonlFile, InvalidDataset> =>
  Effect.try({ try: () => parseJsonlSync(text, path), catch: (error) => (error instanceof InvalidDataset ? error : new InvalidDataset({ path, reason: String(error) })) })

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * The text of a jsonl file's bytes (a leading byte-order mark dropped). Invalid UTF-8 is an
 * `InvalidDataset` naming the line and the byte offset, never text silently changed to U+FFFD.
 */
export const decodeJsonlBytes = (bytes: Uint8Array, path: string): Effect.Effect<string, InvalidDataset> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(utf8.decode(bytes))
    } catch {
      const offset = Safetensors.invalidUtf8Offset(bytes) ?? 0
      let line = 1
      for (let i = 0; i < offset; i++) if (bytes[i] === 0x0a) line++
      return Effect.fail(new InvalidDataset({ path, line, reason: `not valid UTF-8 at byte ${offset}` }))
    }
  })

/** Reads and parses a jsonl file: `FileError` when it cannot be read, `InvalidDataset` for its content. */
export const readJsonl = (path: string): Effect.Effect<JsonlFile, FileError | InvalidDataset, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const text = yield* decodeJsonlBytes(yield* readFileBytes(path), path)
    return yield* parseJsonl(text, path)
  })

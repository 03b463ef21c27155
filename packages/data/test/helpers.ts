/** A tiny word-level tokenizer implementing the Tokenizer contract, with readable ids. */
import type { ChatMessage, Tokenizer } from "@peftkit/tokenizers"

export const WORDS = [
  "<pad>", "<s>", "</s>", "<unk>", "<user>", "<assistant>", "<system>", "<end>",
  "the", "cat", "sat", "on", "mat", "hi", "hello", "a", "dog", "ran", "be", "brief", "ok", "yes", "no"
] as const

export const ID: Record<string, number> = Object.fromEntries(WORDS.map((word, id) => [word, id]))

/** Splits on whitespace; unknown words are <unk>. BOS (1) first unless addSpecialTokens is false. */
export const wordTokenizer = (options: { readonly chat?: boolean; readonly pad?: number } = {}): Tokenizer => {
  const base: Tokenizer = {
    vocabSize: WORDS.length,
    bosTokenId: 1,
    eosTokenId: 2,
    padTokenId: options.pad ?? 0,
    encode: (text, encodeOptions) => [
      ...(encodeOptions?.addSpecialTokens ?? true ? [1] : []),
      ...text.split(/\s+/).filter((word) => word !== "").map((word) => ID[word] ?? 3)
    ],
    decode: (ids, decodeOptions) =>
      ids.filter((id) => !(decodeOptions?.skipSpecialTokens ?? false) || id > 3).map((id) => WORDS[id] ?? "<unk>").join(" ")
  }
  if (options.chat !== true) return base
  return {
    ...base,
    // "<s> <role> content <end> ... [<assistant>]"; raises like a template's raise_exception on role "bad".
    applyChatTemplate: (messages: ReadonlyArray<ChatMessage>, chatOptions) => {
      if (messages.some((message) => message.role === "bad")) throw new Error("chat template: unknown role 'bad'")
      return ["<s>", ...messages.map((message) => `<${message.role}> ${message.content} <end>`), ...(chatOptions?.addGenerationPrompt ? ["<assistant>"] : [])].join(" ")
    }
  }
}

/** The words of ids whose loss mask is 1. */
export const targets = (example: { readonly inputIds: ReadonlyArray<number>; readonly lossMask: ReadonlyArray<number> }): Array<string> =>
  example.inputIds.filter((_, i) => example.lossMask[i] === 1).map((id) => WORDS[id]!)

/**
 * The tokenizer contract: what training data, task prompts, generation and the CLI need, whatever
 * the file format behind it (`tokenizer.json`, the llama2.c `tokenizer.bin`).
 */

export interface ChatMessage {
  readonly role: "system" | "user" | "assistant" | (string & {})
  readonly content: string
}

export interface EncodeOptions {
  /** Prepend BOS (and whatever the tokenizer's post-processor adds). Default true. */
  readonly addSpecialTokens?: boolean
}

/** Options of `applyChatTemplate`. */
export interface ChatTemplateOptions {
  /** End with the header of an assistant turn, so generation continues as the assistant. Default false. */
  readonly addGenerationPrompt?: boolean
  /** Extra template variables (`tools`, `documents`, `date_string`, ...), as transformers' `**kwargs`. */
  readonly variables?: Readonly<Record<string, unknown>>
}

export interface Tokenizer {
  readonly vocabSize: number
  readonly bosTokenId: number | undefined
  readonly eosTokenId: number | undefined
  /** The id used to pad batches (falls back to EOS when the tokenizer has none). */
  readonly padTokenId: number
  encode(text: string, options?: EncodeOptions): ReadonlyArray<number>
  decode(ids: ReadonlyArray<number>, options?: { readonly skipSpecialTokens?: boolean }): string
  /** Renders messages with the tokenizer's chat template; undefined when it has none. */
  readonly applyChatTemplate?: (messages: ReadonlyArray<ChatMessage>, options?: ChatTemplateOptions) => string
}

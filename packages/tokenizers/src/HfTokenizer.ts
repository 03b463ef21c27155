/**
 * Hugging Face tokenizers: a model directory's `tokenizer.json` run by `@huggingface/tokenizers` (the
 * pure-JS implementation Transformers.js uses), its special tokens from `tokenizer_config.json` (then
 * `special_tokens_map.json`), and its chat template rendered by `@huggingface/jinja` with the variables
 * `transformers`' `apply_chat_template` passes.
 */
import type { FileSystem } from "@effect/platform"
import { FileError, InvalidCheckpoint } from "@peftkit/core"
import { Template } from "@huggingface/jinja"
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers"
import { Effect } from "effect"
import { joinPath, pathKind, readText } from "./internal/files.js"
import type { ChatMessage, ChatTemplateOptions, EncodeOptions, Tokenizer } from "./Tokenizer.js"

export const TOKENIZER_JSON = "tokenizer.json"
export const TOKENIZER_CONFIG_JSON = "tokenizer_config.json"
export const SPECIAL_TOKENS_MAP_JSON = "special_tokens_map.json"
export const CHAT_TEMPLATE_JINJA = "chat_template.jinja"

/** The special-token attributes `transformers` knows, without the `_token` suffix. */
const SPECIAL_KEYS = ["bos", "eos", "unk", "pad", "sep", "cls", "mask"] as const
type SpecialKey = (typeof SPECIAL_KEYS)[number]

/** The parsed files of a tokenizer directory. */
export interface HfTokenizerFiles {
  /** `tokenizer.json`, parsed. */
  readonly tokenizer: unknown
  /** `tokenizer_config.json`, parsed (absent: `{}`). */
  readonly config?: unknown
  /** `special_tokens_map.json`, parsed: consulted for special tokens the config does not name. */
  readonly specialTokensMap?: unknown
  /** `chat_template.jinja` (newer `transformers` saves the template there); wins over the config's. */
  readonly chatTemplate?: string
}

export interface HfTokenizerOptions {
  /** Which named template to use when `chat_template` is a list; default "default". */
  readonly chatTemplateName?: string
  /** The directory (or file) named in errors. */
  readonly path?: string
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

/** A special token as configs write it: a string, or an AddedToken object `{ content, ... }`. */
const tokenContent = (value: unknown): string | undefined => {
  if (typeof value === "string") return value
  if (isRecord(value) && typeof value["content"] === "string") return value["content"]
  return undefined
}

const LLAMA_STYLE_CLASS = /^(Llama|CodeLlama|Gemma)Tokenizer(Fast)?$/

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosTokenId: number | undefined
  readonly eosTokenId: number | undefined
  readonly padTokenId: number
  readonly unkTokenId: number | undefined
  /** Special tokens by attribute (`bos_token`, `eos_token`, ...) as strings, as chat templates see them. */
  readonly specialTokens: Readonly<Record<string, string>>
  /** The chat template in use (undefined: none). */
  readonly chatTemplate: string | undefined
  /** Every named template when the config holds a list; a single template is named "default". */
  readonly chatTemplates: Readonly<Record<string, string>>
  /** Problems that did not stop loading (a special token that is not in the vocabulary, ...). */
  readonly warnings: ReadonlyArray<string>
  /** The `@huggingface/tokenizers` tokenizer underneath. */
  readonly inner: JsTokenizer
  readonly applyChatTemplate: ((messages: ReadonlyArray<ChatMessage>, options?: ChatTemplateOptions) => string) | undefined
  private readonly template: Template | undefined

  private constructor(files: HfTokenizerFiles, options: HfTokenizerOptions) {
    const path = options.path ?? "<tokenizer>"
    const configPath = `${path}/${TOKENIZER_CONFIG_JSON}`
    const invalid = (where: string, reason: string) => new InvalidCheckpoint({ path: where, reason })
    const tokenizerPath = `${path}/${TOKENIZER_JSON}`
    const json = files.tokenizer
    if (!isRecord(json)) throw invalid(tokenizerPath, "tokenizer.json must hold a JSON object")
    if (!isRecord(json["model"])) throw invalid(tokenizerPath, "tokenizer.json has no 'model' object")
    if (json["added_tokens"] !== undefined && !Array.isArray(json["added_tokens"])) throw invalid(tokenizerPath, "'added_tokens' must be a list")
    const config = files.config ?? {}
    if (!isRecord(config)) throw invalid(configPath, "tokenizer_config.json must hold a JSON object")
    const map = files.specialTokensMap ?? {}
    if (!isRecord(map)) throw invalid(`${path}/${SPECIAL_TOKENS_MAP_JSON}`, "special_tokens_map.json must hold a JSON object")

    // Special tokens: tokenizer_config first, then special_tokens_map, as strings.
    const specialTokens: Record<string, string> = {}
    for (const key of SPECIAL_KEYS) {
      const content = tokenContent(config[`${key}_token`]) ?? tokenContent(map[`${key}_token`])
      if (content !== undefined) specialTokens[`${key}_token`] = content
    }
    // transformers' LlamaTokenizerFast (and Gemma's, CodeLlama's) rebuilds the post-processor from
    // add_bos_token / add_eos_token at load time, whatever tokenizer.json says: do the same.
    const tokenizerJson: Record<string, unknown> = { added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json }
    const tokenizerClass = typeof config["tokenizer_class"] === "string" ? config["tokenizer_class"] : ""
    if (LLAMA_STYLE_CLASS.test(tokenizerClass) && (typeof config["add_bos_token"] === "boolean" || typeof config["add_eos_token"] === "boolean")) {
      tokenizerJson["post_processor"] = llamaPostProcessor(json, specialTokens, config["add_bos_token"] !== false, config["add_eos_token"] === true)
    }
    // The JS tokenizer reads special tokens from its config as strings; Python's default for
    // clean_up_tokenization_spaces is now False (the JS library defaults to true).
    const jsConfig: Record<string, unknown> = { ...config, ...specialTokens, clean_up_tokenization_spaces: config["clean_up_tokenization_spaces"] === true }
    delete jsConfig["chat_template"]
    try {
      this.inner = new JsTokenizer(tokenizerJson, jsConfig)
    } catch (error) {
      throw invalid(tokenizerPath, `cannot build the tokenizer: ${error instanceof Error ? error.message : String(error)}`)
    }

    const vocab = this.inner.get_vocab(true)
    let maxId = -1
    for (const id of vocab.values()) maxId = Math.max(maxId, id)
    this.vocabSize = maxId + 1

    const warnings: Array<string> = []
    const idOf = (key: SpecialKey): number | undefined => {
      const content = specialTokens[`${key}_token`]
      if (content === undefined) return undefined
      const id = this.inner.token_to_id(content)
      if (id === undefined) warnings.push(`${key}_token '${content}' is not in the vocabulary; treated as absent`)
      return id
    }
    this.bosTokenId = idOf("bos")
    this.eosTokenId = idOf("eos")
    this.unkTokenId = idOf("unk")
    this.padTokenId = idOf("pad") ?? this.eosTokenId ?? this.unkTokenId ?? 0
    this.specialTokens = specialTokens
    if (specialTokens["pad_token"] === undefined && this.eosTokenId === undefined) {
      warnings.push(`no pad_token and no eos_token: padding with id ${this.padTokenId}`)
    }

    // Chat template: chat_template.jinja, else tokenizer_config's string or named list.
    const templates: Record<string, string> = {}
    let templatePath = configPath
    const raw = config["chat_template"]
    if (typeof raw === "string") templates["default"] = raw
    else if (Array.isArray(raw)) {
      for (const entry of raw) {
        if (!isRecord(entry) || typeof entry["name"] !== "string" || typeof entry["template"] !== "string") {
          throw invalid(configPath, "chat_template entries must be { name, template } strings")
        }
        templates[entry["name"]] = entry["template"]
      }
    } else if (raw !== undefined && raw !== null) throw invalid(configPath, "chat_template must be a string or a list of { name, template }")
    if (files.chatTemplate !== undefined) {
      templates["default"] = files.chatTemplate
      templatePath = `${path}/${CHAT_TEMPLATE_JINJA}`
    }
    this.chatTemplates = templates
    const name = options.chatTemplateName ?? "default"
    this.chatTemplate = templates[name]
    if (this.chatTemplate === undefined && options.chatTemplateName !== undefined) {
      throw invalid(configPath, `no chat template named '${name}' (have: ${Object.keys(templates).join(", ") || "none"})`)
    }
    if (this.chatTemplate !== undefined) {
      try {
        this.template = new Template(this.chatTemplate)
      } catch (error) {
        throw invalid(templatePath, `chat template does not parse: ${error instanceof Error ? error.message : String(error)}`)
      }
    }
    this.warnings = warnings
    this.applyChatTemplate = this.template === undefined ? undefined : (messages, options) => this.render(messages, options)
  }

  /** Builds a tokenizer from parsed files; throws `InvalidCheckpoint` (with the path) when they are unusable. */
  static fromFiles(files: HfTokenizerFiles, options: HfTokenizerOptions = {}): HfTokenizer {
    return new HfTokenizer(files, options)
  }

  encode(text: string, options?: EncodeOptions): ReadonlyArray<number> {
    return this.inner.encode(text, { add_special_tokens: options?.addSpecialTokens ?? true }).ids
  }

  decode(ids: ReadonlyArray<number>, options?: { readonly skipSpecialTokens?: boolean }): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`)
    }
    if (ids.length === 0) return ""
    return this.inner.decode([...ids], { skip_special_tokens: options?.skipSpecialTokens ?? false })
  }

  /** The id of a token string (vocabulary or added token). */
  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token)
  }

  /** The token string of an id. */
  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id)
  }

  /**
   * Renders `messages` as `transformers`' `apply_chat_template(tokenize=False)` does: the template sees
   * `messages`, `add_generation_prompt` and every special token (`bos_token`, `eos_token`, ...), with
   * Jinja's `trim_blocks` and `lstrip_blocks` on. `raise_exception(...)` in the template throws.
   */
  private render(messages: ReadonlyArray<ChatMessage>, options?: ChatTemplateOptions): string {
    const context: Record<string, unknown> = {
      ...this.specialTokens,
      ...options?.variables,
      messages: messages.map((message) => ({ ...message })),
      add_generation_prompt: options?.addGenerationPrompt ?? false
    }
    try {
      return this.template!.render(context)
    } catch (error) {
      throw new Error(`chat template: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
    }
  }
}

/** `transformers`' LlamaTokenizerFast.update_post_processor: `<s> $A </s>` per add_bos/add_eos. */
const llamaPostProcessor = (json: Record<string, unknown>, special: Record<string, string>, addBos: boolean, addEos: boolean): unknown => {
  const added = Array.isArray(json["added_tokens"]) ? json["added_tokens"] : []
  const model = json["model"] as Record<string, unknown>
  const vocab = isRecord(model["vocab"]) ? model["vocab"] : {}
  const idOf = (content: string): number | undefined => {
    for (const token of added) if (isRecord(token) && token["content"] === content && typeof token["id"] === "number") return token["id"]
    const id = vocab[content]
    return typeof id === "number" ? id : undefined
  }
  const single: Array<unknown> = []
  const pair: Array<unknown> = []
  const specials: Record<string, unknown> = {}
  const add = (content: string | undefined, typeId: number, into: Array<unknown>) => {
    if (content === undefined) return
    const id = idOf(content)
    if (id === undefined) return
    into.push({ SpecialToken: { id: content, type_id: typeId } })
    specials[content] = { id: content, ids: [id], tokens: [content] }
  }
  if (addBos) add(special["bos_token"], 0, single)
  single.push({ Sequence: { id: "A", type_id: 0 } })
  if (addEos) add(special["eos_token"], 0, single)
  if (addBos) add(special["bos_token"], 0, pair)
  pair.push({ Sequence: { id: "A", type_id: 0 } })
  if (addEos) add(special["eos_token"], 0, pair)
  if (addBos) add(special["bos_token"], 1, pair)
  pair.push({ Sequence: { id: "B", type_id: 1 } })
  if (addEos) add(special["eos_token"], 1, pair)
  return { type: "TemplateProcessing", single, pair, special_tokens: specials }
}

const parseJson = (path: string, text: string): Effect.Effect<unknown, InvalidCheckpoint> =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (error) => new InvalidCheckpoint({ path, reason: `not valid JSON: ${error instanceof Error ? error.message : String(error)}` })
  })

const readOptionalJson = (path: string): Effect.Effect<unknown, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.flatMap(pathKind(path), (kind) => (kind === "missing" ? Effect.succeed(undefined) : Effect.flatMap(readText(path), (text) => parseJson(path, text))))

/**
 * Loads a Hugging Face tokenizer directory: `tokenizer.json` (required: a missing one is a `FileError`
 * naming it), `tokenizer_config.json`, `special_tokens_map.json` and `chat_template.jinja` (optional).
 * A file that is not JSON, or a tokenizer the library cannot build, is an `InvalidCheckpoint` naming
 * the file.
 */
export const readHfTokenizer = (
  dir: string,
  options: Omit<HfTokenizerOptions, "path"> = {}
): Effect.Effect<HfTokenizer, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const tokenizerPath = joinPath(dir, TOKENIZER_JSON)
    if ((yield* pathKind(tokenizerPath)) === "missing") {
      return yield* new FileError({ path: tokenizerPath, operation: "read", reason: "no such file (a Hugging Face tokenizer directory needs tokenizer.json)" })
    }
    const tokenizer = yield* Effect.flatMap(readText(tokenizerPath), (text) => parseJson(tokenizerPath, text))
    const config = yield* readOptionalJson(joinPath(dir, TOKENIZER_CONFIG_JSON))
    const specialTokensMap = yield* readOptionalJson(joinPath(dir, SPECIAL_TOKENS_MAP_JSON))
    const jinjaPath = joinPath(dir, CHAT_TEMPLATE_JINJA)
    const chatTemplate = (yield* pathKind(jinjaPath)) === "missing" ? undefined : yield* readText(jinjaPath)
    const files: HfTokenizerFiles = {
      tokenizer,
      ...(config === undefined ? {} : { config }),
      ...(specialTokensMap === undefined ? {} : { specialTokensMap }),
      ...(chatTemplate === undefined ? {} : { chatTemplate })
    }
    return yield* Effect.try({
      try: () => HfTokenizer.fromFiles(files, { ...options, path: dir.replace(/[\\/]+$/, "") }),
      catch: (error) => (error instanceof InvalidCheckpoint ? error : new InvalidCheckpoint({ path: dir, reason: String(error) }))
    })
  })

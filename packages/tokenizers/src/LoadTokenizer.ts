/**
 * One entry point for every tokenizer format: give it a path, it finds out which format sits there.
 *
 * - a directory with `tokenizer.json` (or that file, or its `tokenizer_config.json`): Hugging Face;
 * - a `tokenizer.bin` / `tok*.bin` file: llama2.c;
 * - a directory with `tokenizer.bin` or `tok*.bin` (llama2.c's layout: `stories260K.bin` next to
 *   `tok512.bin`), or a llama2.c model `.bin` file, whose header's vocab_size picks the matching
 *   tokenizer next to it when there are several.
 */
import type { FileSystem } from "@effect/platform"
import { FileError, InvalidCheckpoint } from "@peftkit/core"
import { Effect } from "effect"
import { HfTokenizer, readHfTokenizer, TOKENIZER_CONFIG_JSON, TOKENIZER_JSON } from "./HfTokenizer.js"
import { baseName, dirName, joinPath, listDirectory, pathKind, readHead } from "./internal/files.js"
import { Llama2cTokenizer, readLlama2cTokenizer } from "./Llama2cTokenizer.js"

export interface LoadTokenizerOptions {
  /** llama2.c: entries to read (default: the model header's vocab_size when a model file is known, else the whole file). */
  readonly vocabSize?: number
  /** Hugging Face: the named chat template to use when the config holds several (default "default"). */
  readonly chatTemplateName?: string
}

export type LoadedTokenizer = HfTokenizer | Llama2cTokenizer

/** A llama2.c tokenizer file name: `tokenizer.bin` or `tok*.bin`. */
export const isLlama2cTokenizerName = (name: string): boolean => name === "tokenizer.bin" || /^tok.*\.bin$/.test(name)

/** The vocab_size in a llama2.c model header (7 int32; negative means an untied head), if it looks like one. */
const modelVocabSize = (path: string): Effect.Effect<number | undefined, FileError, FileSystem.FileSystem> =>
  Effect.map(readHead(path, 28), (head) => {
    if (head.length < 28) return undefined
    const view = new DataView(head.buffer, head.byteOffset, 28)
    const fields = Array.from({ length: 7 }, (_, i) => view.getInt32(4 * i, true))
    const vocab = Math.abs(fields[5]!)
    const plausible = fields.every((value, i) => (i === 5 ? value !== 0 : value > 0)) && vocab < 10_000_000
    return plausible ? vocab : undefined
  })

/** Picks among llama2.c tokenizer files in `dir`; `vocabSize` (from a model) breaks ties. */
const fromLlama2cDirectory = (
  dir: string,
  names: ReadonlyArray<string>,
  vocabSize: number | undefined,
  hint: string
): Effect.Effect<Llama2cTokenizer, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const candidates = names.filter(isLlama2cTokenizerName)
    if (candidates.length === 0) {
      return yield* new FileError({ path: dir, operation: "read", reason: `no tokenizer found: ${hint}` })
    }
    if (candidates.length === 1) return yield* readLlama2cTokenizer(joinPath(dir, candidates[0]!), vocabSize === undefined ? {} : { vocabSize })
    if (vocabSize === undefined) {
      return yield* new InvalidCheckpoint({ path: dir, reason: `several llama2.c tokenizers (${candidates.join(", ")}) and no model .bin to pick by vocab_size: pass the file` })
    }
    // Read each fully and keep the one with exactly the model's vocabulary size.
    const matching: Array<Llama2cTokenizer> = []
    for (const name of candidates) {
      const tokenizer = yield* Effect.option(readLlama2cTokenizer(joinPath(dir, name)))
      if (tokenizer._tag === "Some" && tokenizer.value.vocabSize === vocabSize) matching.push(tokenizer.value)
    }
    if (matching.length !== 1) {
      return yield* new InvalidCheckpoint({
        path: dir,
        reason: `${matching.length === 0 ? "none" : "several"} of ${candidates.join(", ")} ${matching.length === 0 ? "has" : "have"} the model's vocab_size ${vocabSize}: pass the file`
      })
    }
    return matching[0]!
  })

/**
 * Loads the tokenizer at `path` (see the module comment for what is recognised). Unreadable or missing
 * files are a `FileError` naming the path; malformed ones an `InvalidCheckpoint` naming the file.
 */
export const loadTokenizer = (path: string, options: LoadTokenizerOptions = {}): Effect.Effect<LoadedTokenizer, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const kind = yield* pathKind(path)
    const hf = (dir: string) => readHfTokenizer(dir, options.chatTemplateName === undefined ? {} : { chatTemplateName: options.chatTemplateName })
    const llama2cOptions = options.vocabSize === undefined ? {} : { vocabSize: options.vocabSize }
    if (kind === "missing") return yield* new FileError({ path, operation: "stat", reason: "no such file or directory" })
    if (kind === "other") return yield* new FileError({ path, operation: "stat", reason: "neither a file nor a directory" })
    if (kind === "directory") {
      const names = yield* listDirectory(path)
      if (names.includes(TOKENIZER_JSON)) return yield* hf(path)
      const models = names.filter((name) => name.endsWith(".bin") && !isLlama2cTokenizerName(name))
      let vocabSize = options.vocabSize
      if (vocabSize === undefined && models.length === 1) vocabSize = yield* modelVocabSize(joinPath(path, models[0]!))
      return yield* fromLlama2cDirectory(path, names, vocabSize, "expected tokenizer.json (Hugging Face), or tokenizer.bin / tok*.bin (llama2.c)")
    }
    const name = baseName(path)
    if (name === TOKENIZER_JSON || name === TOKENIZER_CONFIG_JSON) return yield* hf(dirName(path))
    if (isLlama2cTokenizerName(name)) return yield* readLlama2cTokenizer(path, llama2cOptions)
    if (name.endsWith(".bin")) {
      // A llama2.c model file: its tokenizer sits next to it.
      const vocabSize = options.vocabSize ?? (yield* modelVocabSize(path))
      if (vocabSize === undefined) return yield* readLlama2cTokenizer(path, llama2cOptions)
      const dir = dirName(path)
      return yield* fromLlama2cDirectory(dir, yield* listDirectory(dir), vocabSize, `${name} looks like a llama2.c model; expected tokenizer.bin or tok*.bin next to it`)
    }
    return yield* new InvalidCheckpoint({ path, reason: "not a tokenizer: expected a tokenizer.json directory or a llama2.c .bin tokenizer" })
  })

/**
 * MLX-LM's data directory: `train.jsonl`, `valid.jsonl`, `test.jsonl`. Train is required (unless
 * `required` says otherwise); a missing optional split is reported in `missing`, for the caller to
 * mention, rather than failing.
 */
import type { FileSystem } from "@effect/platform"
import { ConfigError, FileError, pathKind } from "@peftkit/core"
import type { Tokenizer } from "@peftkit/tokenizers"
import { Effect } from "effect"
import { InvalidDataset } from "./DataErrors.js"
import { readJsonl } from "./Jsonl.js"
import type { RecordShape } from "./Jsonl.js"
import { tokenizeRecords } from "./Tokenize.js"
import type { TokenizedDataset, TokenizeOptions } from "./Tokenize.js"

export const SPLITS = ["train", "valid", "test"] as const
export type Split = (typeof SPLITS)[number]

/** A tokenized split and where it came from. */
export interface LoadedSplit extends TokenizedDataset {
  readonly path: string
  readonly shape: RecordShape
}

export interface LoadedDataset {
  readonly train: LoadedSplit | undefined
  readonly valid: LoadedSplit | undefined
  readonly test: LoadedSplit | undefined
  /** Splits whose file is absent, e.g. `["test"]`. */
  readonly missing: ReadonlyArray<Split>
}

export interface LoadDatasetOptions extends TokenizeOptions {
  /** Splits that must exist (a `FileError` otherwise). Default `["train"]`. */
  readonly required?: ReadonlyArray<Split>
}

const exists = (path: string): Effect.Effect<boolean, FileError, FileSystem.FileSystem> =>
  Effect.map(pathKind(path), (kind) => kind === "file")

/** Reads and tokenizes one jsonl file. An empty file is an `InvalidDataset`. */
export const loadSplit = (
  path: string,
  tokenizer: Tokenizer,
  options: TokenizeOptions = {}
): Effect.Effect<LoadedSplit, FileError | InvalidDataset | ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const file = yield* readJsonl(path)
    if (file.shape === undefined) return yield* new InvalidDataset({ path, reason: "no records (the file is empty)" })
    const tokenized = yield* tokenizeRecords(file.records, tokenizer, options, { path, lines: file.lines })
    return { ...tokenized, path, shape: file.shape }
  })

/**
 * Loads `dir/{train,valid,test}.jsonl` and tokenizes them. A missing required split is a `FileError`
 * naming its file; malformed lines an `InvalidDataset` naming file and line.
 */
export const loadDataset = (
  dir: string,
  tokenizer: Tokenizer,
  options: LoadDatasetOptions = {}
): Effect.Effect<LoadedDataset, FileError | InvalidDataset | ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const { required = ["train"], ...tokenize } = options
    const splits: Partial<Record<Split, LoadedSplit>> = {}
    const missing: Array<Split> = []
    for (const split of SPLITS) {
      const path = `${dir.replace(/[\\/]+$/, "")}/${split}.jsonl`
      if (!(yield* exists(path))) {
        if (required.includes(split)) {
          return yield* new FileError({ path, operation: "read", reason: `no such file (the data directory needs ${required.map((s) => `${s}.jsonl`).join(", ")})` })
        }
        missing.push(split)
        continue
      }
      splits[split] = yield* loadSplit(path, tokenizer, tokenize)
    }
    return { train: splits.train, valid: splits.valid, test: splits.test, missing }
  })

/**
 * The data a run trains on, from wherever the person gave it: the built-in fact table, dropped jsonl
 * files (`train.jsonl` / `valid.jsonl` / `test.jsonl`, or one file of any name, of which the last
 * tenth is held out for validation), pasted examples (jsonl lines, or plain text with examples
 * separated by blank lines), or one of the paper's tasks from its dropped official files, sampled
 * as MeZO samples it. Every path ends in the data package's tokenizer, so a bad line is an
 * `InvalidDataset` naming the file and the line.
 */
import { ConfigError, makeMemoryFileSystem } from "@peftkit/core"
import { InvalidDataset, loadDataset, type TokenizedExample } from "@peftkit/data"
import { encodeTrainingExample, promptText, sampleTask, type Task, taskByName, taskDataFromText, type TaskExample } from "@peftkit/tasks"
import type { Tokenizer } from "@peftkit/tokenizers"
import { FileSystem } from "@effect/platform"
import { Effect } from "effect"
import type { DataInfo, DataSource, DroppedFile } from "../protocol.js"

export interface TrainingData {
  readonly train: ReadonlyArray<TokenizedExample>
  readonly valid: ReadonlyArray<TokenizedExample>
  readonly test: ReadonlyArray<TokenizedExample>
  /** For a task: what accuracy is measured on. */
  readonly task?: { readonly task: Task<any>; readonly test: ReadonlyArray<TaskExample<any>> }
  /** A prompt to start generation from: the first validation (or train) example's prompt. */
  readonly samplePrompt: string
  readonly info: DataInfo
}

const SPLIT_NAMES = ["train", "valid", "test"] as const
const baseName = (path: string) => path.slice(path.lastIndexOf("/") + 1)

/** Where a split's lines came from, so an error names the person's file and line, not ours. */
interface Origin {
  readonly name: string
  /** Added to a line number: a held-out split starts partway into its file. */
  readonly offset: number
}

interface JsonlTexts {
  readonly texts: Record<string, string>
  readonly origins: Record<string, Origin>
}

const named = (texts: Record<string, string>, name: (split: string) => string): JsonlTexts => ({
  texts,
  origins: Object.fromEntries(Object.keys(texts).map((split) => [split, { name: name(split), offset: 0 }]))
})

/** The jsonl texts, by split, that a source gives (the task source is handled apart). */
const jsonlTexts = (source: DataSource, builtinUrl: string): Effect.Effect<JsonlTexts, ConfigError> =>
  Effect.gen(function* () {
    switch (source.kind) {
      case "builtin": {
        const fetchText = (name: string) => Effect.promise(() => fetch(`${builtinUrl}/${name}`).then((response) => response.text()))
        return named({ train: yield* fetchText("train.jsonl"), valid: yield* fetchText("valid.jsonl") }, (split) => `built-in ${split}.jsonl`)
      }
      case "pasted": {
        const text = source.text.trim()
        if (text === "") return yield* new ConfigError({ field: "data", reason: "the pasted text is empty" })
        // jsonl when it looks like JSON objects; otherwise plain text, one example per paragraph.
        const jsonl = text.startsWith("{") ? text : text.split(/\n\s*\n/).map((paragraph) => JSON.stringify({ text: paragraph.trim() })).join("\n")
        return holdOut(jsonl, text.startsWith("{") ? "the pasted examples" : "the pasted text")
      }
      case "jsonl": {
        const files = source.files.filter((entry) => entry.path.endsWith(".jsonl"))
        if (files.length === 0) return yield* new ConfigError({ field: "data", reason: `no .jsonl file among ${source.files.map((f) => baseName(f.path)).join(", ")}: drop train.jsonl (and valid.jsonl) or one .jsonl file` })
        const splitFiles = files.filter((entry) => (SPLIT_NAMES as ReadonlyArray<string>).includes(baseName(entry.path).replace(/\.jsonl$/, "")))
        if (splitFiles.length > 0) {
          const texts: Record<string, string> = {}
          for (const entry of splitFiles) texts[baseName(entry.path).replace(/\.jsonl$/, "")] = yield* Effect.promise(() => entry.file.text())
          if (texts.train === undefined) return yield* new ConfigError({ field: "data", reason: "valid/test files came without train.jsonl" })
          return named(texts, (split) => `${split}.jsonl`)
        }
        if (files.length > 1) return yield* new ConfigError({ field: "data", reason: `several .jsonl files (${files.map((f) => baseName(f.path)).join(", ")}): name them train.jsonl / valid.jsonl / test.jsonl, or drop one` })
        return holdOut(yield* Effect.promise(() => files[0]!.file.text()), baseName(files[0]!.path))
      }
      case "task":
        return yield* new ConfigError({ field: "data", reason: "internal: a task is not jsonl" })
    }
  })

/** One file's lines as train, its last tenth (at least one line) as valid. Blank lines are kept, so line numbers stay the file's. */
const holdOut = (text: string, name: string): JsonlTexts => {
  const lines = text.replace(/\n+$/, "").split("\n")
  const filled = lines.filter((line) => line.trim() !== "").length
  if (filled < 2) return { texts: { train: `${lines.join("\n")}\n` }, origins: { train: { name, offset: 0 } } }
  // The cut falls after the line holding the (filled - held)-th example.
  const held = Math.max(1, Math.round(filled / 10))
  let seen = 0
  let cut = 0
  while (cut < lines.length && seen < filled - held) if (lines[cut++]!.trim() !== "") seen++
  return {
    texts: { train: `${lines.slice(0, cut).join("\n")}\n`, valid: `${lines.slice(cut).join("\n")}\n` },
    origins: { train: { name, offset: 0 }, valid: { name, offset: cut } }
  }
}

const promptOf = (line: string | undefined): string => {
  try {
    const record = JSON.parse(line ?? "") as { text?: string; prompt?: string; messages?: ReadonlyArray<{ content: string }> }
    return record.prompt ?? record.messages?.[0]?.content ?? (record.text ?? "").split(" ").slice(0, 4).join(" ")
  } catch {
    return ""
  }
}

const fromJsonl = ({ texts, origins }: JsonlTexts, describe: string, tokenizer: Tokenizer, maxLength: number) =>
  Effect.gen(function* () {
    const handle = makeMemoryFileSystem()
    const fs = handle.fileSystem
    yield* Effect.orDie(fs.makeDirectory("/data", { recursive: true }))
    for (const [split, text] of Object.entries(texts)) yield* Effect.orDie(fs.writeFileString(`/data/${split}.jsonl`, text))
    const dataset = yield* loadDataset("/data", tokenizer, { maxSeqLength: maxLength, required: ["train"] }).pipe(
      Effect.provideService(FileSystem.FileSystem, fs),
      Effect.mapError((error) => {
        const origin = error._tag === "InvalidDataset" ? origins[baseName(error.path).replace(/\.jsonl$/, "")] : undefined
        return origin === undefined || error._tag !== "InvalidDataset"
          ? error
          : new InvalidDataset({ path: origin.name, reason: error.reason, ...(error.line === undefined ? {} : { line: error.line + origin.offset }) })
      })
    )
    const truncated = (dataset.train?.truncated ?? 0) + (dataset.valid?.truncated ?? 0)
    const firstLine = (texts.valid ?? texts.train ?? "").split("\n").find((line) => line.trim() !== "")
    return {
      train: dataset.train!.examples,
      valid: dataset.valid?.examples ?? [],
      test: dataset.test?.examples ?? [],
      samplePrompt: promptOf(firstLine),
      info: {
        describe: `${describe}: ${dataset.train!.shape} records`,
        train: dataset.train!.examples.length,
        valid: dataset.valid?.examples.length ?? 0,
        test: dataset.test?.examples.length ?? 0,
        warnings: truncated > 0 ? [`${truncated} examples longer than ${maxLength} tokens were truncated`] : []
      }
    } satisfies TrainingData
  })

const fromTask = (name: string, files: ReadonlyArray<DroppedFile>, tokenizer: Tokenizer, maxLength: number, seed: number) =>
  Effect.gen(function* () {
    const task = yield* Effect.try({ try: () => taskByName(name), catch: (error) => new ConfigError({ field: "data.task", reason: String(error) }) })
    const find = (official: string) => {
      // The official path (superglue/RTE/val.jsonl) or its last two or one segments, as dropped.
      const wanted = official.split("/")
      return files.find((entry) => entry.path.endsWith(wanted.slice(-2).join("/"))) ?? files.find((entry) => baseName(entry.path) === wanted.at(-1))
    }
    const trainFile = find(task.files.train)
    const validationFile = find(task.files.validation)
    if (trainFile === undefined || validationFile === undefined) {
      return yield* new ConfigError({ field: "data.task", reason: `${task.name} needs its official files ${task.files.train} and ${task.files.validation}: drop the task's folder` })
    }
    const texts = { train: yield* Effect.promise(() => trainFile.file.text()), validation: yield* Effect.promise(() => validationFile.file.text()) }
    const data = yield* taskDataFromText(task, texts)
    const splits = sampleTask(data, { seed })
    const encode = (examples: ReadonlyArray<TaskExample<any>>) => examples.map((example) => encodeTrainingExample(task, example, tokenizer, { maxLength }))
    return {
      train: encode(splits.train),
      valid: encode(splits.dev),
      test: encode(splits.test),
      task: { task, test: splits.test },
      samplePrompt: splits.test[0] === undefined ? "" : promptText(task, splits.test[0].fields),
      info: {
        describe: `task ${task.name} (MeZO's sampling, seed ${seed})`,
        train: splits.train.length,
        valid: splits.dev.length,
        test: splits.test.length,
        task: task.name,
        warnings: []
      }
    } satisfies TrainingData
  })

export const loadTrainingData = (
  source: DataSource,
  tokenizer: Tokenizer,
  options: { readonly maxLength: number; readonly seed: number; readonly builtinUrl: string }
): Effect.Effect<TrainingData, ConfigError | InvalidDataset | import("@peftkit/core").FileError> =>
  source.kind === "task"
    ? fromTask(source.task, source.files, tokenizer, options.maxLength, options.seed)
    : Effect.flatMap(jsonlTexts(source, options.builtinUrl), (texts) =>
        fromJsonl(
          texts,
          source.kind === "builtin" ? "built-in animal facts" : source.kind === "pasted" ? "pasted examples" : source.files.map((f) => baseName(f.path)).join(" + "),
          tokenizer,
          options.maxLength
        )
      )

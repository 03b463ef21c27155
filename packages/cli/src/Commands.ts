/** The command table and the help texts a newcomer reads first. */
import type { FileSystem } from "@effect/platform"
import type { Effect } from "effect"
import { evalFlags, exportFlags, generateFlags, mergeFlags, trainFlags } from "./CommandFlags.js"
import { evalCommand } from "./commands/Eval.js"
import { exportCommand } from "./commands/Export.js"
import { generateCommand } from "./commands/Generate.js"
import { mergeCommand } from "./commands/Merge.js"
import { trainCommand } from "./commands/Train.js"
import { flagHelp } from "./Flags.js"

export interface Command {
  readonly help: string
  /** Needs the file system the program provides (`NodeFileSystem.layer` in `main.ts`). */
  readonly run: (argv: ReadonlyArray<string>) => Effect.Effect<void, unknown, FileSystem.FileSystem>
}

const common = `  --config FILE                      JSON file with the same options (camelCase or kebab-case keys); flags win
  --verbose                          print the full error cause on failure
  -h, --help                         this help`

export const usage = `peftkit: fine-tune language models with LoRA, its variants (DoRA, PiSSA, VeRA) and chains of them
(COLA, RAC-LoRA, XGBLoRA) in JavaScript.

Usage: peftkit <command> [flags]

Commands:
  train      fine-tune a model on a jsonl directory or one of the paper's tasks
  eval       test loss / perplexity, or task accuracy by label-word likelihood
  generate   generate text (greedy or sampled) with or without an adapter
  merge      fuse an adapter into the weights; writes a Hugging Face model directory
  export     rewrite a LoRA adapter as one PEFT LoRA, optionally SVD-compressed to a lower rank

Examples:
  peftkit train --model ../shared/data/models/stories260K/stories260K.bin --data my-data --method cola --iters 200
  peftkit generate --model MODEL --adapter-path adapters --prompt "Once upon a time"
  peftkit export --adapter-path adapters --save-path adapters-r8 --rank 8

Models: a Hugging Face directory (config.json + model.safetensors or shards; Llama, Qwen2, Mistral, OPT)
or a llama2.c .bin checkpoint with its tokenizer .bin beside it. Data: train.jsonl (valid.jsonl,
test.jsonl) with {"text"}, {"prompt","completion"} or {"messages"} lines.

Run 'peftkit <command> --help' for its flags.
`

const help = (name: string, summary: string, flags: Parameters<typeof flagHelp>[0]) => `peftkit ${name}: ${summary}

Flags:
${flagHelp(flags)}
${common}
`

export const commands: Readonly<Record<string, Command>> = {
  train: { help: help("train", "fine-tune with an adapter (--variant lora|dora|pissa|vera), a chain of them (--method cola|rac|xgb) or all weights (--method full); saves a PEFT adapter, metrics.jsonl and report.html", trainFlags), run: trainCommand },
  eval: { help: help("eval", "evaluate a model with or without an adapter", evalFlags), run: evalCommand },
  generate: { help: help("generate", "generate text", generateFlags), run: generateCommand },
  merge: { help: help("merge", "merge an adapter into a model; writes a Hugging Face directory", mergeFlags), run: mergeCommand },
  export: { help: help("export", "rewrite a LoRA adapter (not DoRA or VeRA: use merge) as one PEFT LoRA, optionally compressed by SVD", exportFlags), run: exportCommand }
}

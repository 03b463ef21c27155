/**
 * The page's built-in model and data: the demo's tiny Llama (pretrained from the repository alone,
 * cached in `.peftkit/builtin-llama` at the repository root and shared with `pnpm demo`) as a Hugging
 * Face directory, and the demo's task B, a table of animal facts, as prompt/completion jsonl.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { providers as cpuBackends } from "@peftkit/backend-cpu"
import { Backend } from "@peftkit/core"
import { DEMO_FACTS_SEED, ensureBuiltinModel, factQuestions, factTable, type QaExample } from "@peftkit/demo"
import { Effect, Layer } from "effect"
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const repoRoot = fileURLToPath(new URL("../../../..", import.meta.url))
export const builtinModelCache = join(repoRoot, ".peftkit/builtin-llama")
export const BUILTIN_MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] as const

export interface BuiltinAssets {
  readonly built: boolean
  readonly trainExamples: number
  readonly validExamples: number
}

const jsonl = (examples: ReadonlyArray<QaExample>) => `${examples.map((example) => JSON.stringify(example)).join("\n")}\n`

export const writeBuiltinAssets = async (dir: string, log: (line: string) => void): Promise<BuiltinAssets> => {
  const made = await Effect.runPromise(
    ensureBuiltinModel(builtinModelCache).pipe(Effect.provide(Layer.mergeAll(Backend.layer("auto", cpuBackends), NodeContext.layer)))
  )
  if (made.built) log(`built-in model pretrained in ${made.seconds.toFixed(1)} s`)
  mkdirSync(join(dir, "model"), { recursive: true })
  for (const name of BUILTIN_MODEL_FILES) copyFileSync(join(builtinModelCache, name), join(dir, "model", name))
  const qa = factQuestions(factTable(DEMO_FACTS_SEED))
  mkdirSync(join(dir, "data"), { recursive: true })
  writeFileSync(join(dir, "data/train.jsonl"), jsonl(qa.train))
  writeFileSync(join(dir, "data/valid.jsonl"), jsonl(qa.valid))
  return { built: made.built, trainExamples: qa.train.length, validExamples: qa.valid.length }
}

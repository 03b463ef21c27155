/**
 * What every command needs: the backend, the progress reporter, a model with its tokenizer, and
 * the one-line status output.
 */
import { Backend, type BackendChoice, MetricsLog, ProgressReporter } from "@peftkit/core"
import { type CausalLM, loadCausalLM } from "@peftkit/models"
import { loadTokenizer, type Tokenizer } from "@peftkit/tokenizers"
import { Effect, Layer } from "effect"
import { backendLayer } from "./InstalledBackends.js"

/** Status lines go to stderr so stdout stays clean for generated text and tables. */
export const say = (text: string) => Effect.sync(() => void process.stderr.write(`${text}\n`))

export const baseLayers = (backend: BackendChoice, metricsPath?: string, append = true) =>
  Layer.mergeAll(
    backendLayer(backend),
    ProgressReporter.terminal(),
    metricsPath === undefined ? MetricsLog.none : MetricsLog.jsonl(metricsPath, { append })
  )

export interface LoadedLM {
  readonly model: CausalLM
  readonly tokenizer: Tokenizer
}

/** Loads a model (HF directory or llama2.c file) and its tokenizer (next to it). */
export const loadModelAndTokenizer = (path: string) =>
  Effect.gen(function* () {
    const backend = yield* Backend
    yield* say(`backend: ${backend.info.name} (${backend.selection.reason})`)
    const started = performance.now()
    const loaded = yield* loadCausalLM(path)
    const tokenizer: Tokenizer = yield* loadTokenizer(path)
    for (const warning of loaded.warnings) yield* say(`warning: ${warning}`)
    const parameters = loaded.model.parameters().reduce((sum, p) => sum + p.variable.size, 0)
    yield* say(`model: ${path} (${loaded.config.modelType}, ${(parameters / 1e6).toFixed(2)}M parameters, loaded in ${((performance.now() - started) / 1000).toFixed(1)} s)`)
    return { model: loaded.model, tokenizer, config: loaded.config } as const
  })

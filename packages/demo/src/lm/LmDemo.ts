/**
 * The main job: the built-in tiny Llama (pretrained here on generated stories, task A) learns a
 * fact table (task B: which food each of 40 animals eats) by LoRA, by COLA (same rank, same steps),
 * by DoRA alone and in a COLA chain, by VeRA and by full fine-tuning, each through the same code path as `peftkit train`. Recall is measured
 * the way the paper's tasks are: the model's log-likelihood of each of the 16 foods, on a question
 * form held out from training.
 */
import { writeFileAtomic } from "@peftkit/core"
import { lossReportHtml, runTrain, TrainOptions } from "@peftkit/cli"
import { scoreOptions } from "@peftkit/tasks"
import type { Tokenizer } from "@peftkit/tokenizers"
import type { CausalLM } from "@peftkit/models"
import { Effect, Schema } from "effect"
import { join, resolve } from "node:path"
import { type BuiltinRecipe, ensureBuiltinModel } from "./BuiltinModel.js"
import { DEMO_FACTS_SEED, factQuestions, factTable, foods, type QaExample } from "./Corpus.js"

export interface LmDemoSettings {
  readonly out: string
  readonly modelDir: string
  readonly backend: "auto" | "wasm" | "cpu" | "webgpu" | "node" | "node-gpu"
  readonly seed: number
  readonly iters: number
  /** How the built-in model is made (default `defaultRecipe`). */
  readonly recipe?: BuiltinRecipe
}

/** Share of questions whose true food gets the highest summed log-likelihood among all 16. */
export const recall = (model: CausalLM, tokenizer: Tokenizer, examples: ReadonlyArray<QaExample>) =>
  Effect.gen(function* () {
    let correct = 0
    // Eight questions (128 candidate sequences) per forward pass.
    for (let start = 0; start < examples.length; start += 8) {
      const group = examples.slice(start, start + 8)
      const sequences = group.flatMap((example) => {
        const animal = /the (\w+) eats/.exec(example.completion)![1]!
        const prompt = tokenizer.encode(example.prompt)
        return foods.map((food) => {
          const full = tokenizer.encode(`${example.prompt} the ${animal} eats ${food} .`)
          return { inputIds: full, optionLength: full.length - prompt.length }
        })
      })
      const scores = yield* scoreOptions(model, sequences, { padTokenId: tokenizer.padTokenId })
      group.forEach((example, i) => {
        const own = scores.slice(i * foods.length, (i + 1) * foods.length)
        const best = own.reduce((bestIndex, score, j) => (score.sum > own[bestIndex]!.sum ? j : bestIndex), 0)
        if (example.completion.includes(` ${foods[best]} `)) correct++
      })
    }
    return correct / examples.length
  })

const pad = (text: string, width: number, right = false) => (right ? text.padStart(width) : text.padEnd(width))

export const lmDemo = (settings: LmDemoSettings) =>
  Effect.gen(function* () {
    const started = performance.now()
    const out = resolve(settings.out)
    const built = yield* ensureBuiltinModel(settings.modelDir, settings.recipe)
    console.log(built.built ? `built-in model pretrained on task A in ${built.seconds.toFixed(1)} s (final loss ${built.finalLoss.toFixed(3)}): ${settings.modelDir}` : `built-in model: ${settings.modelDir} (cached)`)

    // Task B as a jsonl directory, like any user's data.
    const facts = factTable(DEMO_FACTS_SEED)
    const qa = factQuestions(facts)
    const dataDir = join(out, "task-b")
    const lines = (examples: ReadonlyArray<QaExample>) => `${examples.map((e) => JSON.stringify(e)).join("\n")}\n`
    yield* writeFileAtomic(join(dataDir, "train.jsonl"), lines(qa.train))
    yield* writeFileAtomic(join(dataDir, "valid.jsonl"), lines(qa.valid))

    const rows: Array<{ method: string; trains: string; params: number; trainLoss: number; validLoss: number; recall: number; trainRecall: number; seconds: number; tokensPerSec: number; peak: number }> = []
    const series = []
    // Each row is a `peftkit train` run: its method, its adapter variant, and its label in the table.
    const methods = [
      { label: "lora", method: "lora", variant: "lora", describe: "r=4, all linear layers", lr: 1e-2 },
      { label: "cola", method: "cola", variant: "lora", describe: "4 links x r=4, all linear", lr: 1e-2 },
      { label: "dora", method: "lora", variant: "dora", describe: "DoRA r=4, all linear", lr: 1e-2 },
      { label: "dora-cola", method: "cola", variant: "dora", describe: "4 links x DoRA r=4", lr: 1e-2 },
      // VeRA trains only r + out numbers per layer: a larger shared rank (PEFT's default is 256) and,
      // as in the VeRA paper, a learning rate ten times LoRA's.
      { label: "vera", method: "lora", variant: "vera", describe: "VeRA r=64, all linear", lr: 1e-1, rank: 64 },
      { label: "full", method: "full", variant: "lora", describe: "all weights", lr: 2e-3 }
    ] as const
    for (const row of methods) {
      const { label, method, variant, describe, lr } = row
      const options = Schema.decodeUnknownSync(TrainOptions)({
        model: settings.modelDir,
        data: dataDir,
        method,
        variant,
        rank: "rank" in row ? row.rank : 4,
        alpha: 8,
        links: 4,
        targetModules: "all-linear",
        iters: settings.iters,
        batchSize: 8,
        learningRate: lr,
        schedule: "linear",
        warmup: 10,
        seed: settings.seed,
        backend: settings.backend,
        adapterPath: join(out, label),
        // Each demo run rebuilds its outputs.
        overwrite: true,
        stepsPerReport: Math.max(1, Math.floor(settings.iters / 3)),
        stepsPerEval: Math.max(1, Math.floor(settings.iters / 6)),
        valBatches: -1
      })
      const run = yield* runTrain(options)
      const trainRecall = yield* recall(run.model, run.tokenizer, qa.train)
      const accuracy = yield* recall(run.model, run.tokenizer, qa.valid)
      run.model.dispose()
      const last = run.result.trainLoss.slice(-10)
      rows.push({
        method: label,
        trains: describe,
        params: run.trainable,
        trainLoss: last.reduce((s, e) => s + e.loss, 0) / last.length,
        validLoss: run.result.validation.at(-1)?.loss ?? Number.NaN,
        recall: accuracy,
        trainRecall,
        seconds: run.result.seconds,
        tokensPerSec: run.result.tokens / run.result.seconds,
        peak: run.result.peakBytes
      })
      series.push({ label, train: run.result.trainLoss, validation: run.result.validation })
    }

    const widths = [9, 26, 8, 11, 13, 10, 11, 9, 7, 10]
    const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => pad(c, widths[i]!, i >= 2)).join("  ")
    const table = [
      line(["method", "trains", "params", "train loss", "train recall", "val loss", "val recall", "time (s)", "tok/s", "peak mem"]),
      line(widths.map((w) => "-".repeat(w))),
      ...rows.map((r) => line([r.method, r.trains, String(r.params), r.trainLoss.toFixed(4), `${(100 * r.trainRecall).toFixed(1)}%`, r.validLoss.toFixed(4), `${(100 * r.recall).toFixed(1)}%`, r.seconds.toFixed(1), r.tokensPerSec.toFixed(0), `${(r.peak / 2 ** 20).toFixed(1)} MiB`]))
    ].join("\n")
    const chance = 100 / foods.length
    yield* writeFileAtomic(
      join(out, "report.html"),
      lossReportHtml({
        title: "LoRA, COLA, DoRA, VeRA and full fine-tuning on a language model",
        paragraphs: [
          `A tiny Llama (${settings.modelDir}) pretrained on generated stories learns a table of 40 facts ("which food does each animal eat") from questions in three phrasings; validation asks in a fourth. Same steps (${settings.iters}), batch, schedule and seed for every method; COLA has LoRA's rank, so the same trainable parameters; DoRA adds a magnitude per output row; VeRA trains only scaling vectors on shared random projections (rank 64, learning rate 1e-1 as its paper's larger rates).`,
          `Recall: the true food must get the highest log-likelihood among all ${foods.length} (chance ${chance.toFixed(1)}%). Train recall asks in the three trained phrasings (how well the facts were fitted); val recall in the held-out phrasing (whether they transfer).`
        ],
        series,
        table
      })
    )
    yield* writeFileAtomic(join(out, "report.json"), `${JSON.stringify({ rows, settings, builtinModel: built }, null, 2)}\n`)
    console.log(`\nTask B: 40 facts; train recall on the 3 trained question forms, val on a held-out 4th (chance ${chance.toFixed(1)}%):\n`)
    console.log(table)
    console.log(`\nAdapters (PEFT layout) in ${out}/{${methods.filter((m) => m.method !== "full").map((m) => m.label).join(",")}}, the fully fine-tuned model in ${out}/full; report ${join(out, "report.html")}. Total ${((performance.now() - started) / 1000).toFixed(1)} s.`)
    return rows
  })

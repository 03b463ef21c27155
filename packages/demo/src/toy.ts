#!/usr/bin/env node
/**
 * The toy demonstration (`pnpm demo:toy`; `pnpm demo` is the language-model job in main.ts): a small model trained on task A, then adapted to task B
 * by LoRA, by COLA (same rank, same total steps) and by full fine-tuning as the reference. Prints a
 * side-by-side table and writes `report.html` (loss curves), `report.json` and `metrics.jsonl`.
 * Everything is generated from the seed: no downloads, no files from outside the repository.
 *
 * Usage: peftkit-demo-toy [--backend auto|wasm|cpu|webgpu|node|node-gpu] [--seed N] [--out DIR] [--steps N]
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { backendLayer, isKnownBackendChoice } from "@peftkit/cli"
import { Backend, type BackendChoice, MetricsLog, ProgressReporter, makeSchedule, train, writeFileAtomic } from "@peftkit/core"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Cause, Effect, Layer } from "effect"
import { join, resolve } from "node:path"
import { adapt, evaluate, type Method, type MethodResult } from "./Methods.js"
import { Mlp } from "./Mlp.js"
import { html, table, type DemoReport } from "./Report.js"
import { batchFor, klDivergence, makeTasks, teacherShape } from "./Tasks.js"

interface Options {
  readonly backend: BackendChoice
  readonly seed: number
  readonly out: string
  readonly steps: number
}

const usage = "usage: peftkit-demo-toy [--backend auto|wasm|cpu|webgpu|node|node-gpu] [--seed N] [--out DIR] [--steps N >= 10]"

const parseArgs = (argv: ReadonlyArray<string>): Options => {
  const options = { backend: "auto" as BackendChoice, seed: 42, out: "reports/demo", steps: 1500 }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const value = argv[i + 1]
    if (flag === "--help" || flag === "-h") {
      console.log(usage)
      process.exit(0)
    }
    if (value === undefined) throw new Error(`${flag} needs a value\n${usage}`)
    i++
    if (flag === "--backend" && isKnownBackendChoice(value)) options.backend = value
    else if (flag === "--seed" && /^\d+$/.test(value)) options.seed = Number(value)
    else if (flag === "--steps" && /^\d+$/.test(value) && Number(value) >= 10) options.steps = Number(value)
    else if (flag === "--out") options.out = value
    else throw new Error(`bad flag or value: ${flag} ${value}\n${usage}`)
  }
  return options
}

const program = (options: Options) =>
  Effect.gen(function* () {
    const started = performance.now()
    const backend = yield* Backend
    console.log(`backend: ${backend.info.name} (${backend.selection.reason})`)
    const tasks = makeTasks(options.seed, { train: 16384, valid: 2048 })

    // 1. Pretrain on task A (full training of a fresh model).
    const shape = teacherShape
    const pretrained = Mlp.init(shape, options.seed + 7, true)
    const pretrainSteps = 3000
    const pretrainOptimizer = adamw([{ params: pretrained.baseParameters() }], { weightDecay: 0 })
    const pretrain = yield* train({
      label: "pretrain A",
      loss: (batch: { x: tf.Tensor2D; targets: tf.Tensor2D }, training) => klDivergence(pretrained.forward(batch.x, training), batch.targets),
      batch: (step) => batchFor(tasks.taskA.train, 128, step, options.seed),
      tokensPerBatch: () => 128,
      optimizer: pretrainOptimizer,
      steps: pretrainSteps,
      learningRate: makeSchedule({ kind: "cosine", peak: 3e-3, totalSteps: pretrainSteps, warmupSteps: 40 }),
      reportEvery: 500,
      profileEvery: 0
    })
    pretrainOptimizer.dispose()
    const afterA = yield* evaluate(pretrained, tasks.taskA.valid)
    const beforeB = yield* evaluate(pretrained, tasks.taskB.valid)

    // 2. Adapt to task B three ways, each from the same pretrained weights.
    const settings = { steps: options.steps, batchSize: 64, rank: 4, alpha: 8, links: 4, learningRate: { lora: 1e-2, full: 2e-3 }, evalEvery: Math.max(1, Math.floor(options.steps / 6)), seed: options.seed }
    const results: Array<MethodResult> = []
    for (const method of ["lora", "cola", "full"] satisfies ReadonlyArray<Method>) {
      const model = pretrained.copy(method === "full")
      results.push(yield* adapt(method, model, tasks.taskB, settings, resolve(options.out)))
      model.dispose()
    }
    pretrained.dispose()
    tasks.dispose()

    const report: DemoReport = {
      backend: `${backend.info.name} (${backend.info.device})`,
      backendReason: backend.selection.reason,
      seed: options.seed,
      pretrain: { steps: pretrainSteps, seconds: pretrain.seconds, validLossA: afterA.loss, validAccuracyA: afterA.accuracy },
      before: { validLossB: beforeB.loss, validAccuracyB: beforeB.accuracy },
      results,
      totalSeconds: (performance.now() - started) / 1000
    }
    const out = resolve(options.out)
    yield* writeFileAtomic(join(out, "report.html"), html(report))
    yield* writeFileAtomic(join(out, "report.json"), `${JSON.stringify(report, null, 2)}\n`)
    console.log(`\nTask B after pretraining on task A (validation accuracy on A: ${(100 * afterA.accuracy).toFixed(1)}%):\n`)
    console.log(table(report))
    const exported = results.find((r) => r.chainExport !== undefined)?.chainExport
    if (exported !== undefined) {
      console.log(`\nCOLA chain saved as one PEFT LoRA of rank ${exported.rank} (exact): ${exported.dir}`)
      console.log(`compressed by SVD to rank ${exported.compressedRank} (relative Frobenius error ${exported.relativeError.toFixed(4)}): ${exported.compressedDir}`)
    }
    console.log(`\nReport: ${join(out, "report.html")} (loss curves), ${join(out, "report.json")}, metrics log ${join(out, "metrics.jsonl")}. Total ${report.totalSeconds.toFixed(1)} s.`)
  })

const main = async () => {
  let options: Options
  try {
    options = parseArgs(process.argv.slice(2))
  } catch (error) {
    console.error(`error: ${(error as Error).message}`)
    process.exit(2)
  }
  const layers = Layer.mergeAll(backendLayer(options.backend), ProgressReporter.terminal(), MetricsLog.jsonl(join(resolve(options.out), "metrics.jsonl"), { append: false }))
  const exit = await Effect.runPromiseExit(program(options).pipe(Effect.provide(layers), Effect.provide(NodeFileSystem.layer)))
  if (exit._tag === "Failure") {
    // One line for the user; the full cause only with PEFTKIT_VERBOSE=1.
    const failure = Cause.squash(exit.cause)
    console.error(`error: ${failure instanceof Error ? failure.message : String(failure)}`)
    if (process.env.PEFTKIT_VERBOSE === "1") console.error(Cause.pretty(exit.cause))
    process.exit(1)
  }
}

await main()

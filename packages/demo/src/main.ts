#!/usr/bin/env node
/**
 * The main job (`pnpm demo`): the built-in tiny Llama, pretrained here on generated stories, learns
 * a fact table by LoRA, by COLA (same rank, same steps) and by full fine-tuning; prints the
 * comparison and writes reports/lm/report.html. Nothing is downloaded; the built-in model is kept
 * in .peftkit/builtin-llama and rebuilt only when its recipe changes.
 *
 * Usage: peftkit-demo [--backend auto|wasm|cpu|webgpu|node|node-gpu] [--seed N] [--iters N] [--out DIR] [--model-dir DIR]
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { backendLayer, isKnownBackendChoice } from "@peftkit/cli"
import { Backend, MetricsLog, ProgressReporter } from "@peftkit/core"
import { Cause, Effect, Layer } from "effect"
import { join, resolve } from "node:path"
import { lmDemo, type LmDemoSettings } from "./lm/LmDemo.js"

const usage = "usage: peftkit-demo [--backend auto|wasm|cpu|webgpu|node|node-gpu] [--seed N] [--iters N >= 10] [--out DIR] [--model-dir DIR]"

const parseArgs = (argv: ReadonlyArray<string>): LmDemoSettings => {
  const settings = { out: "reports/lm", modelDir: ".peftkit/builtin-llama", backend: "auto" as LmDemoSettings["backend"], seed: 0, iters: 500 }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    if (flag === "--help" || flag === "-h") {
      console.log(usage)
      process.exit(0)
    }
    const value = argv[++i]
    if (value === undefined) throw new Error(`${flag} needs a value\n${usage}`)
    if (flag === "--backend" && isKnownBackendChoice(value)) settings.backend = value
    else if (flag === "--seed" && /^\d+$/.test(value)) settings.seed = Number(value)
    else if (flag === "--iters" && /^\d+$/.test(value) && Number(value) >= 10) settings.iters = Number(value)
    else if (flag === "--out") settings.out = value
    else if (flag === "--model-dir") settings.modelDir = value
    else throw new Error(`bad flag or value: ${flag} ${value}\n${usage}`)
  }
  return settings
}

const main = async () => {
  let settings: LmDemoSettings
  try {
    settings = parseArgs(process.argv.slice(2))
  } catch (error) {
    console.error(`error: ${(error as Error).message}`)
    process.exit(2)
  }
  const layers = Layer.mergeAll(backendLayer(settings.backend), ProgressReporter.terminal(), MetricsLog.jsonl(join(resolve(settings.out), "metrics.jsonl"), { append: false }))
  const exit = await Effect.runPromiseExit(
    Effect.gen(function* () {
      const backend = yield* Backend
      console.log(`backend: ${backend.info.name} (${backend.selection.reason})`)
      yield* lmDemo(settings)
    }).pipe(Effect.provide(layers), Effect.provide(NodeFileSystem.layer))
  )
  if (exit._tag === "Failure") {
    const failure = Cause.squash(exit.cause)
    console.error(`error: ${failure instanceof Error ? failure.message : String(failure)}`)
    if (process.env.PEFTKIT_VERBOSE === "1") console.error(Cause.pretty(exit.cause))
    process.exit(1)
  }
}

await main()

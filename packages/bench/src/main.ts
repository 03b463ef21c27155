#!/usr/bin/env node
/**
 * `pnpm bench`: LoRA and COLA fine-tuning on the two fixed shapes, on every backend that loads,
 * side by side with the PyTorch reference; writes reports/bench/latest.{json,md} and prints the
 * tables. Each backend runs in its own child process (see BackendChild.ts), then the reference runs
 * alone, so nothing measured shares the CPU with another measurement.
 *
 * Usage: peftkit-bench [--backends wasm,webgpu,node-gpu,node,cpu] [--shapes stories260K,wide]
 *                      [--steps N] [--warmup N] [--no-torch] [--torch-threads N] [--out DIR]
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { type BackendName, isBackendChoice } from "@peftkit/core"
import { Effect } from "effect"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { runBackendChild, printChildResult } from "./BackendChild.js"
import { machineInfo } from "./Machine.js"
import { writeReport } from "./Report.js"
import type { BackendRun, BenchResult, TorchRun } from "./Results.js"
import { type BenchShape, isShapeName, shapeNames, shapes } from "./Shapes.js"
import { runBackend } from "./TfjsRun.js"
import { runTorchReference } from "./TorchReference.js"
import { type ResidentMethod, residentPeak, runResidentChild } from "./ResidentChild.js"

const usage = `usage: peftkit-bench [--backends wasm,webgpu,node-gpu,node,cpu] [--shapes ${shapeNames.join(",")}]
                     [--steps N >= 2] [--warmup N] [--ratio-seconds S] [--no-torch] [--torch-threads N] [--out DIR]

  --backends   default: each of wasm, webgpu, node-gpu, node that loads here (cpu, the plain JS
               backend, only when named: it is about 50x slower)
  --steps      timed steps per method (default per shape: stories260K 15, wide 9, smollm135M 3; lowered
               automatically on slow backends when not given)
  --warmup     untimed steps first (default: stories260K 3, wide 2, smollm135M 1)
  --ratio-seconds  time for the interleaved COLA/LoRA step-time ratio with its 95% interval (single-
               step pairs until the interval is within +-1% or the time is spent; default: stories260K
               150, wide 300, smollm135M 0; 0 skips it)
  --no-torch   skip the PyTorch reference (python/lora_reference.py: PyTorch 2.x + transformers +
               PEFT from the venv \`pnpm bench:reference\` makes, or $PEFTKIT_BENCH_PYTHON; without
               either, Debian's /usr/bin/python3 as a named fallback)
  --out        report directory (default reports/bench)`

/** Backends tried when none are named; the plain JS cpu backend is opt-in. */
const defaultBackends: ReadonlyArray<BackendName> = ["wasm", "webgpu", "node-gpu", "node"]

interface Settings {
  readonly child: BackendName | undefined
  /** `--resident backend --method lora|cola`: one resident-memory measurement (ResidentChild.ts). */
  readonly resident: { readonly backend: BackendName; readonly method: ResidentMethod } | undefined
  readonly backends: ReadonlyArray<BackendName>
  readonly backendsNamed: boolean
  readonly shapes: ReadonlyArray<BenchShape>
  readonly steps: number | undefined
  readonly warmup: number | undefined
  readonly torch: boolean
  readonly torchThreads: number | undefined
  readonly ratioSeconds: number | undefined
  readonly out: string
}

const count = (flag: string, value: string | undefined, min: number): number | undefined => {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) < min) throw new Error(`--${flag} must be an integer >= ${min}, got '${value}'`)
  return Number(value)
}

const list = (value: string | undefined): Array<string> | undefined =>
  value?.split(",").map((item) => item.trim()).filter((item) => item !== "")

const parseSettings = (argv: Array<string>): Settings => {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      backends: { type: "string" },
      shapes: { type: "string" },
      steps: { type: "string" },
      warmup: { type: "string" },
      "no-torch": { type: "boolean" },
      "torch-threads": { type: "string" },
      "ratio-seconds": { type: "string" },
      out: { type: "string" },
      child: { type: "string" },
      resident: { type: "string" },
      method: { type: "string" },
      help: { type: "boolean", short: "h" }
    }
  })
  if (values.help === true) {
    console.log(usage)
    process.exit(0)
  }
  const backendList = list(values.backends) ?? [...defaultBackends]
  for (const name of backendList) {
    if (!isBackendChoice(name) || name === "auto") throw new Error(`unknown backend '${name}' (choose from wasm, webgpu, node-gpu, node, cpu)`)
  }
  const shapeList = list(values.shapes) ?? [...shapeNames]
  for (const name of shapeList) if (!isShapeName(name)) throw new Error(`unknown shape '${name}' (choose from ${shapeNames.join(", ")})`)
  const child = values.child
  if (child !== undefined && (!isBackendChoice(child) || child === "auto")) throw new Error(`--child needs a backend name, got '${child}'`)
  const resident = values.resident
  if (resident !== undefined && (!isBackendChoice(resident) || resident === "auto")) throw new Error(`--resident needs a backend name, got '${resident}'`)
  if (resident !== undefined && values.method !== "lora" && values.method !== "cola") throw new Error("--resident needs --method lora or cola")
  return {
    child: child as BackendName | undefined,
    resident: resident === undefined ? undefined : { backend: resident as BackendName, method: values.method as ResidentMethod },
    backends: backendList as Array<BackendName>,
    backendsNamed: values.backends !== undefined,
    shapes: shapeList.map((name) => shapes[name as BenchShape["name"]]),
    // Two steps at least, so the COLA window holds a knot.
    steps: count("steps", values.steps, 2),
    warmup: count("warmup", values.warmup, 0),
    torch: values["no-torch"] !== true,
    torchThreads: count("torch-threads", values["torch-threads"], 1),
    ratioSeconds: count("ratio-seconds", values["ratio-seconds"], 0),
    out: values.out ?? "reports/bench"
  }
}

const say = (line: string) => void process.stderr.write(`${line}\n`)

/** The flags a child needs to repeat the parent's plan. */
const childArgs = (settings: Settings): Array<string> => [
  "--shapes", settings.shapes.map((shape) => shape.name).join(","),
  ...(settings.steps === undefined ? [] : ["--steps", String(settings.steps)]),
  ...(settings.warmup === undefined ? [] : ["--warmup", String(settings.warmup)]),
  ...(settings.ratioSeconds === undefined ? [] : ["--ratio-seconds", String(settings.ratioSeconds)])
]

const runChild = (backend: BackendName, settings: Settings) =>
  Effect.gen(function* () {
    const run = yield* runBackend(backend, settings.shapes, { steps: settings.steps, warmup: settings.warmup, ...(settings.ratioSeconds === undefined ? {} : { ratioSeconds: settings.ratioSeconds }), log: say })
    yield* Effect.promise(() => printChildResult(run))
  })

/**
 * Resident memory of LoRA and COLA on each shape, each in a fresh process measured like the PyTorch
 * reference (RSS above the process's before the model was built). CPU backends only: a GPU's
 * memory is not in the process's RSS.
 */
const withResidentPeaks = (script: string, run: Extract<BackendRun, { status: "ok" }>, settings: Settings) =>
  Effect.gen(function* () {
    const measuredShapes = []
    for (const result of run.shapes) {
      const shape = shapes[result.shape]
      const warmup = Math.min(2, settings.warmup ?? shape.defaultWarmup)
      say(`[${run.backend}] ${shape.name}: resident memory of LoRA and COLA (fresh processes)`)
      const lora = yield* residentPeak(script, run.backend, shape, "lora", warmup)
      const cola = yield* residentPeak(script, run.backend, shape, "cola", warmup)
      measuredShapes.push({
        ...result,
        lora: lora === undefined ? result.lora : { ...result.lora, residentPeakBytes: lora },
        cola: cola === undefined ? result.cola : { ...result.cola, residentPeakBytes: cola }
      })
    }
    return { ...run, shapes: measuredShapes }
  })

const runParent = (settings: Settings, argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const startedAt = new Date().toISOString()
    const script = fileURLToPath(import.meta.url)
    const backends: Array<BackendRun> = []
    for (const backend of settings.backends) {
      say(`== ${backend}`)
      const run = yield* runBackendChild(script, backend, childArgs(settings))
      if (run.status === "unavailable") say(`[${backend}] not measured: ${run.reason}`)
      backends.push(run.status === "ok" && !run.info.gpu ? yield* withResidentPeaks(script, run, settings) : run)
    }
    let torch: TorchRun = { status: "unavailable", reason: "skipped (--no-torch)" }
    if (settings.torch) {
      say("== pytorch reference")
      torch = yield* runTorchReference(
        settings.shapes.map((shape) => ({ shape, warmup: settings.warmup ?? shape.defaultWarmup, steps: settings.steps ?? shape.defaultSteps })),
        { threads: settings.torchThreads, log: say }
      )
      if (torch.status === "unavailable") say(`[pytorch] not run: ${torch.reason}`)
    }
    const result: BenchResult = {
      startedAt,
      command: ["pnpm bench", ...argv].join(" "),
      machine: machineInfo(),
      backends,
      torch
    }
    const out = resolve(settings.out)
    const markdown = yield* writeReport(result, out)
    process.stdout.write(markdown)
    say(`wrote ${out}/latest.json and latest.md`)
    // A leak or a crash on a measured backend, or a named backend that is missing, is a failed bench.
    const failed = backends.some((run) => (run.status === "ok" ? run.failures.length > 0 : settings.backendsNamed))
    return failed ? 1 : 0
  })

const main = async () => {
  const argv = process.argv.slice(2)
  let settings: Settings
  try {
    settings = parseSettings(argv)
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n${usage}`)
    process.exit(2)
  }
  if (settings.resident !== undefined) {
    const shape = settings.shapes[0]!
    await Effect.runPromise(runResidentChild(settings.resident.backend, shape, settings.resident.method, settings.warmup ?? shape.defaultWarmup))
    process.exit(0)
  }
  if (settings.child !== undefined) {
    await Effect.runPromise(runChild(settings.child, settings))
    // A WebGPU device or a native backend's threads may keep the event loop alive: the child is done.
    process.exit(0)
  }
  const exit = await Effect.runPromiseExit(runParent(settings, argv).pipe(Effect.provide(NodeFileSystem.layer)))
  if (exit._tag === "Failure") {
    console.error(`error: ${String(exit.cause)}`)
    process.exit(1)
  }
  process.exitCode = exit.value
}

await main()

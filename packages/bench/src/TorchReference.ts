/**
 * The PyTorch reference, run in the same bench: `python/lora_reference.py` under Debian's
 * `/usr/bin/python3` (or `PEFTKIT_BENCH_PYTHON`), same shapes and steps. A missing Python or torch
 * is not an error of the bench: the result is "unavailable" with the reason, which the table prints.
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Data, Effect } from "effect"
import { benchVariants } from "./BenchVariants.js"
import { gflopsPerSecond, loraStepFlops } from "./Flops.js"
import type { ColaTiming, MatmulCeiling, MethodTiming, TorchRun, TorchShapeResult } from "./Results.js"
import { type BenchShape, recipe } from "./Shapes.js"

/** The interpreter could not be started (not installed, not executable). */
export class PythonMissing extends Data.TaggedError("PythonMissing")<{ readonly python: string; readonly reason: string }> {}

/** The script ran but failed or printed no result line. */
export class ReferenceFailed extends Data.TaggedError("ReferenceFailed")<{ readonly reason: string }> {}

export const referenceScript = fileURLToPath(new URL("../python/lora_reference.py", import.meta.url))

/** The venv `pnpm bench:reference` creates (PyTorch 2.x + transformers + PEFT). */
export const referenceVenvPython = fileURLToPath(new URL("../../../.peftkit/bench-venv/bin/python", import.meta.url))

/**
 * The reference's interpreter: PEFTKIT_BENCH_PYTHON, else the `pnpm bench:reference` venv, else
 * Debian's /usr/bin/python3 (whose python3-torch is 1.13 without PEFT: the named fallback).
 */
export const defaultPython = (): string => process.env.PEFTKIT_BENCH_PYTHON ?? (existsSync(referenceVenvPython) ? referenceVenvPython : "/usr/bin/python3")

export interface TorchPlan {
  readonly shape: BenchShape
  readonly warmup: number
  readonly steps: number
}

export interface TorchOptions {
  readonly python?: string
  readonly threads?: number
  readonly log: (line: string) => void
}

interface Finished {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the script; its stderr progress lines are forwarded as they come. */
const runScript = (python: string, args: ReadonlyArray<string>, log: (line: string) => void) =>
  Effect.async<Finished, PythonMissing>((resume) => {
    const child = spawn(python, [referenceScript, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    // "error" may be followed by "close": resume once.
    let settled = false
    const settle = (effect: Effect.Effect<Finished, PythonMissing>) => {
      if (settled) return
      settled = true
      resume(effect)
    }
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => {
      const text = chunk.toString()
      stderr += text
      for (const line of text.split("\n")) if (line.trim() !== "") log(line)
    })
    child.on("error", (error) => settle(Effect.fail(new PythonMissing({ python, reason: error.message }))))
    child.on("close", (code) => settle(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => void child.kill())
  })

/** The last line of stdout that parses as a JSON object. */
export const parseResultLine = (stdout: string): unknown => {
  const lines = stdout.split("\n").map((line) => line.trim()).filter((line) => line.startsWith("{"))
  for (const line of lines.reverse()) {
    try {
      return JSON.parse(line)
    } catch {
      continue
    }
  }
  return undefined
}

type RawTiming = Omit<MethodTiming, "achievedGflops" | "ceilingFraction">
interface RawShape {
  readonly shape: BenchShape["name"]
  readonly tokensPerBatch: number
  readonly lora: RawTiming
  readonly cola: RawTiming & Pick<ColaTiming, "knotOffsets" | "knotMs" | "medianKnotMs">
  readonly variants?: Readonly<Record<string, RawTiming>>
}

/** Adds achieved GFLOP/s from the same FLOP formula as the tfjs rows, so the two compare. */
const withFlops = <T extends RawTiming>(timing: T, flops: number, ceiling: MatmulCeiling): T & MethodTiming => {
  const achievedGflops = gflopsPerSecond(flops, timing.medianStepMs)
  return { ...timing, achievedGflops, ceilingFraction: achievedGflops / ceiling.gflops }
}

export const runTorchReference = (plans: ReadonlyArray<TorchPlan>, options: TorchOptions): Effect.Effect<TorchRun> => {
  const python = options.python ?? defaultPython()
  const args = [
    ...plans.flatMap((plan) => ["--shape", `${plan.shape.name}:${plan.warmup}:${plan.steps}`]),
    ...(options.threads === undefined ? [] : ["--threads", String(options.threads)]),
    // The same variants as the tfjs runs, through PEFT (skipped by the script without PEFT).
    ...(benchVariants.length === 0 ? [] : ["--variants", benchVariants.map((run) => run.name).join(",")])
  ]
  return Effect.gen(function* () {
    if (python.includes("/") && !existsSync(python)) {
      return yield* new PythonMissing({ python, reason: "no such file (install python3, or set PEFTKIT_BENCH_PYTHON)" })
    }
    const finished = yield* runScript(python, args, options.log)
    const parsed = parseResultLine(finished.stdout) as
      | { status: "unavailable"; reason: string }
      | { status: "ok"; ceiling: MatmulCeiling; shapes: ReadonlyArray<RawShape> }
      | undefined
    if (parsed === undefined || finished.code !== 0) {
      const tail = finished.stderr.trim().split("\n").slice(-3).join(" | ")
      return yield* new ReferenceFailed({ reason: `${python} ${referenceScript} exited with ${finished.code}: ${tail || "no output"}` })
    }
    if (parsed.status !== "ok") return parsed satisfies TorchRun
    const byName = new Map(plans.map((plan) => [plan.shape.name, plan.shape]))
    const shapes: Array<TorchShapeResult> = parsed.shapes.map((raw) => {
      const shape = byName.get(raw.shape)!
      const flops = loraStepFlops({ config: shape.config, batch: shape.batch, seqLen: shape.seqLen, rank: recipe.rank, targetModules: recipe.targetModules }).total
      const variants = Object.fromEntries(Object.entries(raw.variants ?? {}).map(([name, timing]) => [name, withFlops(timing, flops, parsed.ceiling)]))
      return { ...raw, lora: withFlops(raw.lora, flops, parsed.ceiling), cola: withFlops(raw.cola, flops, parsed.ceiling), variants }
    })
    return { ...(parsed as Extract<TorchRun, { status: "ok" }>), shapes } satisfies TorchRun
  }).pipe(
    Effect.catchTags({
      PythonMissing: (error) => Effect.succeed<TorchRun>({ status: "unavailable", reason: `cannot run ${error.python}: ${error.reason}` }),
      ReferenceFailed: (error) => Effect.succeed<TorchRun>({ status: "unavailable", reason: error.reason })
    })
  )
}

/**
 * Resident memory of one training run, measured like the PyTorch reference's: `node main.js
 * --resident <backend> --shapes <shape> --method lora|cola` in a fresh process (a wasm heap never
 * shrinks, so a process can measure one run only). The backend is loaded first; then, under
 * `residentPeakOf`, the model is built and trained for the warm-up and 3 steps (COLA: with a knot,
 * merge and re-init, before the second step). The parent (`main.ts`) runs one child per shape and
 * method and puts the figure beside the engine's tensor bytes.
 */
import { AdapterSet, type BackendName, selectBackend } from "@peftkit/core"
import { Chain } from "@peftkit/cola"
import { lora } from "@peftkit/lora"
import * as tf from "@tensorflow/tfjs-core"
import { spawn } from "node:child_process"
import { Effect } from "effect"
import { type Batch, adapterConfig, makeHarness, newModel, newOptimizer, runStep } from "./Harness.js"
import { residentPeakOf } from "./ResidentPeak.js"
import { type BenchShape, recipe, tokenIds } from "./Shapes.js"
import { allProviders } from "./TfjsRun.js"

const MARKER = "@peftkit/bench:resident "
const TIMED_STEPS = 3

export type ResidentMethod = "lora" | "cola"

/** Child side: measures and prints the marker line. */
export const runResidentChild = (backend: BackendName, shape: BenchShape, method: ResidentMethod, warmup: number) =>
  Effect.gen(function* () {
    yield* selectBackend(backend, allProviders)
    const measured = yield* Effect.promise(() =>
      residentPeakOf(async () => {
        const batch: Batch = {
          inputIds: tf.tensor2d(tokenIds(shape), [shape.batch, shape.seqLen], "int32"),
          lossMask: tf.ones([shape.batch, shape.seqLen], "float32") as tf.Tensor2D
        }
        const model = newModel(shape)
        const optimizer = newOptimizer()
        const steps = warmup + TIMED_STEPS
        const knotStep = warmup + 1
        const chain = method === "cola"
          ? Chain.make({ model, variant: lora, adapterConfig: { ...adapterConfig(), targetModules: [...recipe.targetModules] }, chain: { totalSteps: steps, knots: [knotStep], seed: recipe.seed } })
          : undefined
        if (chain === undefined) optimizer.setParameters([{ params: AdapterSet.inject(model, lora, adapterConfig(), { seed: recipe.seed }).parameters() }])
        else chain.attach(optimizer)
        const harness = makeHarness(batch, optimizer, model)
        for (let step = 0; step < steps; step++) {
          if (chain !== undefined && step === knotStep) await Effect.runPromise(chain.knot(step))
          await Effect.runPromise(runStep(harness, step))
        }
        optimizer.dispose()
        model.dispose()
        batch.inputIds.dispose()
        batch.lossMask.dispose()
      })
    )
    yield* Effect.promise(() => new Promise<void>((done) => process.stdout.write(`${MARKER}${JSON.stringify(measured)}\n`, () => done())))
  })

/** Parent side: the child's peak resident bytes above its baseline, or undefined when it failed. */
export const residentPeak = (script: string, backend: BackendName, shape: BenchShape, method: ResidentMethod, warmup: number): Effect.Effect<number | undefined> =>
  Effect.async<number | undefined>((resume) => {
    const child = spawn(process.execPath, ["--expose-gc", script, "--resident", backend, "--shapes", shape.name, "--method", method, "--warmup", String(warmup)], { stdio: ["ignore", "pipe", "inherit"] })
    let stdout = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.on("error", () => resume(Effect.succeed(undefined)))
    child.on("close", () => {
      const line = stdout.split("\n").find((l) => l.startsWith(MARKER))
      let peak: number | undefined
      try {
        peak = line === undefined ? undefined : (JSON.parse(line.slice(MARKER.length)) as { peakBytes: number }).peakBytes
      } catch {
        peak = undefined
      }
      resume(Effect.succeed(peak))
    })
    return Effect.sync(() => void child.kill())
  })

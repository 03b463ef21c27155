#!/usr/bin/env node
/**
 * `pnpm bench:profile [--shape stories260K|wide|smollm135M] [--steps N] [--backend wasm]`: where a
 * LoRA training step's time goes, by kernel. The bench's own harness (same model, recipe and
 * resident batch) runs warm-up steps, then N steps under `tf.profile`, whose per-kernel times are
 * summed by kernel name; the shares are of the summed kernel time (the step's wall time is printed
 * beside it: the rest is JavaScript between kernels, the tape and the optimizer's bookkeeping).
 * Matrix products are then broken down by operand shapes and GFLOP/s, which says which products
 * run far below the backend's ceiling.
 */
import { selectBackend } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { parseArgs } from "node:util"
import { type Batch, newLoraRun, runStep } from "./Harness.js"
import { isShapeName, shapes, tokenIds } from "./Shapes.js"
import { allProviders } from "./TfjsRun.js"

const { values } = parseArgs({ options: { shape: { type: "string" }, steps: { type: "string" }, backend: { type: "string" } } })
const shapeName = values.shape ?? "stories260K"
if (!isShapeName(shapeName)) throw new Error(`unknown shape '${shapeName}'`)
const shape = shapes[shapeName]
const steps = Number(values.steps ?? 3)
const backend = (values.backend ?? "wasm") as "wasm"

/** Multiply-adds of a 2D product whose transposes are unknown: the reading whose inner dimensions agree. */
const productSize = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  const [ar, ac] = [a.at(-2)!, a.at(-1)!]
  const [br, bc] = [b.at(-2)!, b.at(-1)!]
  const batch = a.slice(0, -2).reduce((n, d) => n * d, 1)
  const readings = [ac === br ? ar * ac * bc : 0, ac === bc ? ar * ac * br : 0, ar === br ? ac * ar * bc : 0, ar === bc ? ac * ar * br : 0]
  return batch * Math.max(...readings)
}

const program = Effect.gen(function* () {
  const service = yield* selectBackend(backend, allProviders)
  console.log(`${service.info.device}; ${shape.name}, batch ${shape.batch} x ${shape.seqLen}, LoRA r=8 on q/v; ${steps} profiled steps`)
  const batch: Batch = {
    inputIds: tf.tensor2d(tokenIds(shape), [shape.batch, shape.seqLen], "int32"),
    lossMask: tf.ones([shape.batch, shape.seqLen], "float32") as tf.Tensor2D
  }
  const run = newLoraRun(shape, batch)
  for (let step = 0; step < shape.defaultWarmup; step++) yield* runStep(run, step)
  const byKernel = new Map<string, { ms: number; calls: number }>()
  const byProduct = new Map<string, { ms: number; calls: number; multiplyAdds: number }>()
  let wallMs = 0
  for (let step = 0; step < steps; step++) {
    const started = performance.now()
    const info = yield* Effect.promise(() =>
      tf.profile(async () => {
        const loss = run.step(shape.defaultWarmup + step)
        await loss.data()
        loss.dispose()
      })
    )
    wallMs += performance.now() - started
    for (const kernel of info.kernels) {
      const entry = byKernel.get(kernel.name) ?? { ms: 0, calls: 0 }
      entry.ms += Number(kernel.kernelTimeMs)
      entry.calls += 1
      byKernel.set(kernel.name, entry)
      if (kernel.name === "BatchMatMul") {
        const [a, b] = kernel.inputShapes as Array<Array<number>>
        const key = `${a!.join("x")} . ${b!.join("x")}`
        const product = byProduct.get(key) ?? { ms: 0, calls: 0, multiplyAdds: productSize(a!, b!) }
        product.ms += Number(kernel.kernelTimeMs)
        product.calls += 1
        byProduct.set(key, product)
      }
    }
  }
  const total = [...byKernel.values()].reduce((sum, entry) => sum + entry.ms, 0)
  const rows = [...byKernel].sort((a, b) => b[1].ms - a[1].ms)
  console.log(`\nper step: ${(wallMs / steps).toFixed(1)} ms wall (profiled), ${(total / steps).toFixed(1)} ms in kernels\n`)
  console.log("| kernel | ms/step | share of kernel time | calls/step |")
  console.log("|---|---:|---:|---:|")
  for (const [name, entry] of rows.slice(0, 20)) console.log(`| ${name} | ${(entry.ms / steps).toFixed(1)} | ${((100 * entry.ms) / total).toFixed(1)}% | ${(entry.calls / steps).toFixed(0)} |`)
  const rest = rows.slice(20).reduce((sum, [, entry]) => sum + entry.ms, 0)
  if (rest > 0) console.log(`| ${rows.length - 20} others | ${(rest / steps).toFixed(1)} | ${((100 * rest) / total).toFixed(1)}% | |`)
  // tf.profile sees shapes, not transpose flags: the multiply-adds are the operands' product when
  // their inner dimensions match, else the largest consistent reading.
  console.log(`\nBatchMatMul by operand shapes (a . b as given to the kernel, which may transpose either):\n`)
  console.log("| operands | calls/step | ms/step | GFLOP/s |")
  console.log("|---|---:|---:|---:|")
  for (const [key, product] of [...byProduct].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)) {
    console.log(`| ${key} | ${(product.calls / steps).toFixed(0)} | ${(product.ms / steps).toFixed(1)} | ${((2 * product.multiplyAdds * product.calls) / (product.ms * 1e6)).toFixed(1)} |`)
  }
  run.optimizer.dispose()
  run.model.dispose()
  batch.inputIds.dispose()
  batch.lossMask.dispose()
})

await Effect.runPromise(program)
process.exit(0)

import { describe, expect, it } from "vitest"
import { renderMarkdown } from "../src/Report.js"
import type { BenchResult, ColaTiming, MethodTiming } from "../src/Results.js"

const timing = (medianStepMs: number, peakStepBytes: number | undefined, windowMs: number): MethodTiming => ({
  warmup: 1,
  steps: 3,
  medianStepMs,
  stepMs: [medianStepMs, medianStepMs, medianStepMs],
  tokensPerSecond: 2048 / (medianStepMs / 1000),
  windowMs,
  ...(peakStepBytes === undefined ? {} : { peakStepBytes }),
  achievedGflops: 4.2e9 / (medianStepMs / 1000) / 1e9,
  ceilingFraction: 4.2e9 / (medianStepMs / 1000) / 1e9 / 42,
  lastLoss: 6.2
})

const cola = (base: MethodTiming, peakKnotBytes?: number): ColaTiming => ({
  ...base,
  knotOffsets: [1, 2],
  knotMs: [2, 4],
  medianKnotMs: 3,
  ...(peakKnotBytes === undefined ? {} : { peakKnotBytes })
})

const result: BenchResult = {
  startedAt: "2025-01-01T00:00:00.000Z",
  command: "pnpm bench --shapes stories260K --steps 3 --warmup 1",
  machine: { cpuModel: "Test CPU", cpuCount: 2, platform: "linux", arch: "x64", totalMemoryBytes: 8 * 2 ** 30, node: "v20.0.0" },
  backends: [
    {
      status: "ok",
      backend: "wasm",
      info: { name: "wasm", tfjsName: "wasm", device: "CPU via WebAssembly (SIMD, 1 thread)", gpu: false, details: {} },
      selection: "requested wasm",
      ceiling: { size: 1024, gflops: 42, medianMs: 51.1 },
      shapes: [
        {
          shape: "stories260K",
          tokensPerBatch: 2048,
          flopsPerStep: 4.2e9,
          lora: timing(400, 100 * 2 ** 20, 1200),
          cola: cola(timing(404, 100 * 2 ** 20, 1224), 90 * 2 ** 20),
          variants: { dora: timing(600, 120 * 2 ** 20, 1800) }
        }
      ],
      failures: []
    },
    { status: "unavailable", backend: "node", reason: "package @tensorflow/tfjs-node is not installed" }
  ],
  torch: {
    status: "ok",
    torchVersion: "1.13.0a0",
    threads: 2,
    implementation: "plain-pytorch-lora",
    blas: "BLAS_INFO=generic",
    python: "CPython 3.11.2",
    ceiling: { size: 1024, gflops: 250, medianMs: 8.6 },
    shapes: [{ shape: "stories260K", tokensPerBatch: 2048, lora: timing(500, undefined, 1500), cola: cola(timing(500, undefined, 1510)), variants: { dora: timing(550, undefined, 1650) } }]
  }
}

describe("renderMarkdown", () => {
  const markdown = renderMarkdown(result)

  it("has a throughput row per backend, shape and method with the PyTorch ratio", () => {
    expect(markdown).toContain("| wasm | stories260K | LoRA | 1+3 | 400.0 | 5120 | 100.0 | n/a | 10.5 | 25.0% | 1.25x |")
    expect(markdown).toContain("| wasm | stories260K | COLA | 1+3 | 404.0 | 5069 | 100.0 | n/a | 10.4 | 24.8% | 1.24x |")
    expect(markdown).toContain("| pytorch 1.13.0a0 | stories260K | LoRA | 1+3 | 500.0 | 4096 | n/a | n/a | 8.4 | 20.0% | 1.00x |")
  })

  it("gives tfjs's resident peak over PyTorch's when both were measured (not the engine's tensor bytes)", () => {
    if (result.torch.status !== "ok") throw new Error("fixture")
    const shape = result.torch.shapes[0]!
    const withPeak = renderMarkdown({ ...result, torch: { ...result.torch, shapes: [{ ...shape, lora: { ...shape.lora, peakBytes: 80 * 2 ** 20 } }] } })
    expect(withPeak).toContain("| wasm | stories260K | LoRA | 1+3 | 400.0 | 5120 | 100.0 | n/a | 10.5 | 25.0% | 1.25x | n/a |")
    expect(withPeak).toContain("| pytorch 1.13.0a0 | stories260K | LoRA | 1+3 | 500.0 | 4096 | n/a | 80.0 | 8.4 | 20.0% | 1.00x | 1.00x |")
    if (result.backends[0]!.status !== "ok") throw new Error("fixture")
    const run = result.backends[0]!
    const tfjsShape = run.shapes[0]!
    const resident = renderMarkdown({
      ...result,
      backends: [{ ...run, shapes: [{ ...tfjsShape, lora: { ...tfjsShape.lora, residentPeakBytes: 120 * 2 ** 20 } }] }],
      torch: { ...result.torch, shapes: [{ ...shape, lora: { ...shape.lora, peakBytes: 80 * 2 ** 20 } }] }
    })
    expect(resident).toContain("| wasm | stories260K | LoRA | 1+3 | 400.0 | 5120 | 100.0 | 120.0 | 10.5 | 25.0% | 1.25x | 1.50x |")
  })

  it("has the COLA / LoRA ratios and the knot", () => {
    expect(markdown).toContain("| wasm | stories260K | 2 in 3 steps | n/a | n/a | 1.01x | 1.02x | 1.00x | 3.0 | 90.0 |")
    const ok = result.backends[0]!
    if (ok.status !== "ok") throw new Error("fixture")
    const shape = { ...ok.shapes[0]!, colaRatio: { ratio: 1.0123, low: 0.9951, high: 1.0298, rounds: 40, blockSteps: 1, medianKnotMs: 2.5, postKnotExcessMs: 1.25, stoppedBy: "budget" as const, seconds: 30 } }
    const withRatio = renderMarkdown({ ...result, backends: [{ ...ok, shapes: [shape] }, ...result.backends.slice(1)] })
    expect(withRatio).toContain("| wasm | stories260K | 2 in 3 steps | 1.012x (0.995-1.030), 40 pairs | 2.5 + 1.3 | 1.01x |")
  })

  it("has a row per variant: throughput against PEFT's, and step time and memory against LoRA's", () => {
    expect(markdown).toContain("| wasm | stories260K | DoRA | 1+3 | 600.0 | 3413 | 120.0 | n/a | 7.0 | 16.7% | 0.92x |")
    expect(markdown).toContain("| wasm | stories260K | DoRA | 1.50x | 1.20x |")
    expect(markdown).toContain("| pytorch 1.13.0a0 | stories260K | DoRA | 1.10x | n/a |")
  })

  it("names the machine, the reference and what was not measured", () => {
    expect(markdown).toContain("2 x Test CPU")
    expect(markdown).toContain("torch 1.13.0a0, 2 threads, plain-pytorch-lora")
    expect(markdown).toContain("**node**: not measured: package @tensorflow/tfjs-node is not installed")
  })

  it("says why the reference did not run", () => {
    const without = renderMarkdown({ ...result, torch: { status: "unavailable", reason: "cannot import torch" } })
    expect(without).toContain("reference not run: cannot import torch")
    expect(without).toContain("| wasm | stories260K | LoRA | 1+3 | 400.0 | 5120 | 100.0 | n/a | 10.5 | 25.0% | n/a |")
  })
})

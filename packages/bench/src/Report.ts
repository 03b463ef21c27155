/**
 * The bench's report: `latest.json` (everything measured) and `latest.md` (the tables), written
 * atomically under the output directory, and the same Markdown for stdout. Rendering is a pure
 * function of the result, so it is tested on a fixed object.
 */
import { writeFileAtomic } from "@peftkit/core"
import { Effect } from "effect"
import { join } from "node:path"
import type { InterleavedRatio } from "./InterleavedRatio.js"
import type { BackendRun, BenchResult, ColaTiming, MethodTiming, TorchRun, TorchShapeResult } from "./Results.js"

const MiB = 2 ** 20

const fixed = (value: number | undefined, digits: number): string =>
  value === undefined || !Number.isFinite(value) ? "n/a" : value.toFixed(digits)
const mib = (bytes: number | undefined): string => (bytes === undefined ? "n/a" : fixed(bytes / MiB, 1))
const percent = (fraction: number | undefined): string => (fraction === undefined || !Number.isFinite(fraction) ? "n/a" : `${(fraction * 100).toFixed(1)}%`)
const ratio = (numerator: number | undefined, denominator: number | undefined): string =>
  numerator === undefined || denominator === undefined || !(denominator > 0) || !Number.isFinite(numerator) ? "n/a" : `${(numerator / denominator).toFixed(2)}x`

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const line = (cells: ReadonlyArray<string>) => `| ${cells.join(" | ")} |`
  const align = header.map((_, i) => (i < 3 ? "---" : "---:"))
  return [line(header), line(align), ...rows.map(line)].join("\n")
}

type OkBackend = Extract<BackendRun, { status: "ok" }>
type OkTorch = Extract<TorchRun, { status: "ok" }>

const torchShape = (torch: TorchRun, shape: string): TorchShapeResult | undefined =>
  torch.status === "ok" ? torch.shapes.find((s) => s.shape === shape) : undefined

const torchLabel = (torch: OkTorch): string => `pytorch ${torch.torchVersion}`

const throughputRow = (backend: string, shape: string, method: string, timing: MethodTiming, reference: MethodTiming | undefined): ReadonlyArray<string> => [
  backend,
  shape,
  method,
  `${timing.warmup}+${timing.steps}`,
  fixed(timing.medianStepMs, 1),
  fixed(timing.tokensPerSecond, 0),
  mib(timing.peakStepBytes),
  mib(residentBytes(timing)),
  fixed(timing.achievedGflops, 1),
  percent(timing.ceilingFraction),
  ratio(timing.tokensPerSecond, reference?.tokensPerSecond),
  ratio(residentBytes(timing), reference?.peakBytes)
]

/** Resident memory measured like PyTorch's: the reference's own peak, or a tfjs row's fresh-process one. */
const residentBytes = (timing: MethodTiming): number | undefined => timing.residentPeakBytes ?? timing.peakBytes

const interval = (measured: InterleavedRatio | undefined): string =>
  measured === undefined ? "n/a" : `${measured.ratio.toFixed(3)}x (${measured.low.toFixed(3)}-${measured.high.toFixed(3)}), ${measured.rounds} pairs`

const knotCost = (measured: InterleavedRatio | undefined): string =>
  measured === undefined ? "n/a" : `${fixed(measured.medianKnotMs, 1)} + ${fixed(measured.postKnotExcessMs, 1)}`

const colaRow = (backend: string, shape: string, lora: MethodTiming, cola: ColaTiming, interleaved?: InterleavedRatio): ReadonlyArray<string> => [
  backend,
  shape,
  `${cola.knotMs.length} in ${cola.steps} steps`,
  interval(interleaved),
  knotCost(interleaved),
  ratio(cola.medianStepMs, lora.medianStepMs),
  ratio(cola.windowMs, lora.windowMs),
  ratio(cola.peakStepBytes ?? cola.peakBytes, lora.peakStepBytes ?? lora.peakBytes),
  fixed(cola.medianKnotMs, 1),
  mib(cola.peakKnotBytes)
]

const variantLabels: Readonly<Record<string, string>> = { dora: "DoRA", vera: "VeRA" }
const variantLabel = (name: string): string => variantLabels[name] ?? name

const variantRow = (backend: string, shape: string, name: string, lora: MethodTiming, variant: MethodTiming): ReadonlyArray<string> => [
  backend,
  shape,
  variantLabel(name),
  ratio(variant.medianStepMs, lora.medianStepMs),
  ratio(variant.peakStepBytes ?? variant.peakBytes, lora.peakStepBytes ?? lora.peakBytes)
]

/** The Markdown report: machine, throughput, COLA/LoRA ratios, ceilings, and what did not run. */
export const renderMarkdown = (result: BenchResult): string => {
  const { machine, torch } = result
  const ok = result.backends.filter((run): run is OkBackend => run.status === "ok")
  const out: Array<string> = []
  out.push(`# peftkit bench`)
  out.push("")
  out.push(`\`${result.command}\` at ${result.startedAt}: ${machine.cpuCount} x ${machine.cpuModel}, ${machine.platform} ${machine.arch}, ` +
    `${(machine.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${machine.node}.`)
  out.push("")
  for (const run of ok) out.push(`- **${run.backend}**: ${run.info.device} (${run.selection})`)
  for (const run of result.backends) if (run.status === "unavailable") out.push(`- **${run.backend}**: not measured: ${run.reason}`)
  if (torch.status === "ok") {
    out.push(`- **pytorch**: torch ${torch.torchVersion}, ${torch.threads} threads, ${torch.implementation}, ${torch.blas}; ${torch.python}`)
  } else {
    out.push(`- **pytorch**: reference not run: ${torch.reason}`)
  }
  out.push("")

  out.push("## Throughput")
  out.push("")
  out.push("Median over the timed steps after warm-up (steps column: warm-up + timed). Tensor peak: tfjs engine bytes during one step (weights included; " +
    "the engine counts a reshape or a saved clone again although it shares its source's buffer). " +
    "Resident peak, the one both sides have: peak resident memory above the process's just before the model was built, sampled every millisecond, " +
    "weights, optimizer, activations, allocator slack and every thread's copies included: PyTorch over its run, tfjs (CPU backends, LoRA and COLA) in a fresh process per row " +
    "over warm-up and 3 steps (`src/ResidentChild.ts`). " +
    "GFLOP/s from the analytic count (`src/Flops.ts`) and as a share of the same backend's float32 matmul ceiling; the last two columns are tokens/s and peak memory over PyTorch's for the same shape and method.")
  out.push("")
  const rows: Array<ReadonlyArray<string>> = []
  for (const run of ok) {
    for (const shape of run.shapes) {
      const reference = torchShape(torch, shape.shape)
      rows.push(throughputRow(run.backend, shape.shape, "LoRA", shape.lora, reference?.lora))
      rows.push(throughputRow(run.backend, shape.shape, "COLA", shape.cola, reference?.cola))
      for (const [name, timing] of Object.entries(shape.variants ?? {})) rows.push(throughputRow(run.backend, shape.shape, variantLabel(name), timing, reference?.variants?.[name]))
    }
  }
  if (torch.status === "ok") {
    for (const shape of torch.shapes) {
      rows.push(throughputRow(torchLabel(torch), shape.shape, "LoRA", shape.lora, shape.lora))
      rows.push(throughputRow(torchLabel(torch), shape.shape, "COLA", shape.cola, shape.cola))
      for (const [name, timing] of Object.entries(shape.variants ?? {})) rows.push(throughputRow(torchLabel(torch), shape.shape, variantLabel(name), timing, timing))
    }
  }
  out.push(table(["backend", "shape", "method", "steps", "ms/step", "tokens/s", "tensor peak MiB", "resident peak MiB", "GFLOP/s", "% of ceiling", "x PyTorch tok/s", "x PyTorch resident peak"], rows))
  out.push("")

  out.push("## COLA / LoRA")
  out.push("")
  out.push("Same shape, steps and recipe; COLA's knots (merge, re-init, optimizer reset) run inside the timed window. " +
    "Interleaved: both runs in one process, alternating single steps in ABBA order, pairs added until the 95% interval is within +-1% or the time budget is spent " +
    "(`src/InterleavedRatio.ts`), COLA knotting every 20 of its steps; the geometric mean of the pairs' ratios with a 95% t interval (`src/PairedRatio.ts`), over the steady steps: " +
    "the knot and the 2 COLA steps after it (optimizer slots re-created; on wasm the merged weights' transposes and packings redone) are timed apart, " +
    "since a real chain has them once per link of hundreds of steps. " +
    "Step time: median step of the separate runs, knots excluded; total time: the whole window, knots included (amortised); peak memory: one step.")
  out.push("")
  const colaRows: Array<ReadonlyArray<string>> = []
  for (const run of ok) for (const shape of run.shapes) colaRows.push(colaRow(run.backend, shape.shape, shape.lora, shape.cola, shape.colaRatio))
  if (torch.status === "ok") for (const shape of torch.shapes) colaRows.push(colaRow(torchLabel(torch), shape.shape, shape.lora, shape.cola))
  out.push(table(["backend", "shape", "knots", "steady step time, interleaved (95% CI), pairs", "knot ms + the next steps' excess", "step time", "total time", "peak memory", "knot ms", "knot peak MiB"], colaRows))
  out.push("")

  const variantRows: Array<ReadonlyArray<string>> = []
  for (const run of ok) {
    for (const shape of run.shapes) {
      for (const [name, timing] of Object.entries(shape.variants ?? {})) variantRows.push(variantRow(run.backend, shape.shape, name, shape.lora, timing))
    }
  }
  if (torch.status === "ok") {
    for (const shape of torch.shapes) {
      for (const [name, timing] of Object.entries(shape.variants ?? {})) variantRows.push(variantRow(torchLabel(torch), shape.shape, name, shape.lora, timing))
    }
  }
  if (variantRows.length > 0) {
    out.push("## Variants / LoRA")
    out.push("")
    out.push("Same shape, steps and recipe (rank, targets) as the LoRA row; ratios of the variant's median step time and one step's peak memory to LoRA's. " +
      "DoRA pays for the row norm of W + s B A, a full [out, in] product, every step; VeRA for its shared [max out, r] and [r, max in] projections.")
    out.push("")
    out.push(table(["backend", "shape", "variant", "step time", "peak memory"], variantRows))
    out.push("")
  }

  out.push("## Matmul ceilings")
  out.push("")
  const ceilingRows = ok.map((run) => [run.backend, run.info.device, `${run.ceiling.size}^3`, fixed(run.ceiling.medianMs, 1), fixed(run.ceiling.gflops, 1)])
  if (torch.status === "ok") ceilingRows.push([torchLabel(torch), `CPU, ${torch.threads} threads`, `${torch.ceiling.size}^3`, fixed(torch.ceiling.medianMs, 1), fixed(torch.ceiling.gflops, 1)])
  out.push(table(["backend", "device", "float32 matmul", "ms", "GFLOP/s"], ceilingRows))

  const failures = ok.flatMap((run) => [
    ...run.failures.map((failure) => `- ${run.backend} ${failure.shape}: ${failure.reason}`),
    ...run.shapes.flatMap((shape) => Object.entries(shape.variantFailures ?? {}).map(([name, reason]) => `- ${run.backend} ${shape.shape} ${variantLabel(name)}: ${reason}`))
  ])
  if (failures.length > 0) {
    out.push("")
    out.push("## Failed")
    out.push("")
    out.push(...failures)
  }
  return `${out.join("\n")}\n`
}

/** Writes `latest.json` and `latest.md` under `dir`; returns the Markdown. */
export const writeReport = (result: BenchResult, dir: string) =>
  Effect.gen(function* () {
    const markdown = renderMarkdown(result)
    yield* writeFileAtomic(join(dir, "latest.json"), `${JSON.stringify(result, null, 2)}\n`)
    yield* writeFileAtomic(join(dir, "latest.md"), markdown)
    return markdown
  })

/**
 * The demo's outputs: a side-by-side table for the terminal, and a self-contained HTML report with
 * the loss curves drawn as inline SVG (no scripts, no network), plus the raw numbers as JSON.
 */
import { formatBytes } from "@peftkit/core"
import type { MethodResult } from "./Methods.js"

export interface DemoReport {
  readonly backend: string
  readonly backendReason: string
  readonly seed: number
  readonly pretrain: { readonly steps: number; readonly seconds: number; readonly validLossA: number; readonly validAccuracyA: number }
  readonly before: { readonly validLossB: number; readonly validAccuracyB: number }
  readonly results: ReadonlyArray<MethodResult>
  readonly totalSeconds: number
}

const pad = (text: string, width: number, right = false) => (right ? text.padStart(width) : text.padEnd(width))

export const table = (report: DemoReport): string => {
  const header = ["method", "trains", "params", "train KL", "val KL", "val acc", "time (s)", "peak mem", "+training"]
  const widths = [8, 18, 8, 9, 9, 8, 9, 10, 10]
  const rows = report.results.map((r) => {
    const lastLosses = r.training.trainLoss.slice(-10)
    const trainLoss = lastLosses.reduce((s, e) => s + e.loss, 0) / Math.max(1, lastLosses.length)
    const valLoss = r.training.validation.at(-1)?.loss ?? Number.NaN
    return [r.method, r.description, String(r.trainableParameters), trainLoss.toFixed(4), valLoss.toFixed(4), `${(100 * r.validAccuracy).toFixed(1)}%`, r.training.seconds.toFixed(2), formatBytes(r.training.peakBytes), formatBytes(r.training.peakBytes - r.training.startBytes)]
  })
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => pad(c, widths[i]!, i >= 2)).join("  ")
  const before = line(["(none)", "pretrained on A", "0", "-", report.before.validLossB.toFixed(4), `${(100 * report.before.validAccuracyB).toFixed(1)}%`, "-", "-", "-"])
  return [line(header), line(widths.map((w) => "-".repeat(w))), before, ...rows.map(line)].join("\n")
}

const colors: Record<string, string> = { lora: "#1f77b4", cola: "#d62728", full: "#2ca02c" }

/** One SVG chart of per-step (smoothed) train loss and validation points per method, log-scale loss. */
const chart = (results: ReadonlyArray<MethodResult>, width = 900, height = 420): string => {
  const margin = { left: 64, right: 110, top: 16, bottom: 44 }
  const smooth = (values: ReadonlyArray<number>, window = 10) =>
    values.map((_, i) => {
      const slice = values.slice(Math.max(0, i - window + 1), i + 1)
      return slice.reduce((s, v) => s + v, 0) / slice.length
    })
  const series = results.map((r) => ({ method: r.method, steps: r.training.trainLoss.map((e) => e.step + 1), loss: smooth(r.training.trainLoss.map((e) => e.loss)), valid: r.training.validation }))
  const allLoss = series.flatMap((s) => [...s.loss, ...s.valid.map((v) => v.loss)]).filter((v) => v > 0)
  const maxStep = Math.max(...series.flatMap((s) => s.steps))
  // Log scale: the start of training and the small differences at the end both stay visible.
  const top = Math.ceil(Math.log10(Math.max(...allLoss)))
  const bottom = Math.floor(Math.log10(Math.min(...allLoss)))
  const plotW = width - margin.left - margin.right
  const plotH = height - margin.top - margin.bottom
  const x = (step: number) => margin.left + (plotW * step) / maxStep
  const y = (loss: number) => margin.top + (plotH * (top - Math.log10(Math.max(loss, 10 ** bottom)))) / Math.max(1, top - bottom)
  const yTicks = Array.from({ length: top - bottom + 1 }, (_, i) => 10 ** (bottom + i))
  const xTicks = Array.from({ length: 6 }, (_, i) => Math.round((maxStep * i) / 5))
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...yTicks.map((t) => `<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${y(t)}" y2="${y(t)}" stroke="#e5e5e5"/><text x="${margin.left - 6}" y="${y(t) + 4}" text-anchor="end">${t >= 1 ? t.toFixed(0) : t.toPrecision(1)}</text>`),
    ...xTicks.map((t) => `<line x1="${x(t)}" x2="${x(t)}" y1="${margin.top + plotH}" y2="${margin.top + plotH + 4}" stroke="#666"/><text x="${x(t)}" y="${margin.top + plotH + 17}" text-anchor="middle">${t}</text>`),
    `<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${margin.top + plotH}" y2="${margin.top + plotH}" stroke="#666"/>`,
    `<text x="${margin.left + plotW / 2}" y="${height - 6}" text-anchor="middle">step</text>`,
    `<text x="16" y="${margin.top + plotH / 2}" transform="rotate(-90 16 ${margin.top + plotH / 2})" text-anchor="middle">KL (log scale)</text>`,
    ...series.map((s) => `<polyline fill="none" stroke="${colors[s.method]}" stroke-width="1.5" points="${s.steps.map((st, i) => `${x(st).toFixed(1)},${y(s.loss[i]!).toFixed(1)}`).join(" ")}"/>`),
    ...series.flatMap((s) => s.valid.map((v) => `<circle cx="${x(v.step).toFixed(1)}" cy="${y(v.loss).toFixed(1)}" r="3.5" fill="white" stroke="${colors[s.method]}" stroke-width="2"/>`)),
    ...series.map((s, i) => `<rect x="${margin.left + plotW + 16}" y="${margin.top + 10 + 20 * i}" width="14" height="3" fill="${colors[s.method]}"/><text x="${margin.left + plotW + 36}" y="${margin.top + 15 + 20 * i}">${s.method}</text>`),
    `</svg>`
  ]
  return parts.join("\n")
}

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

export const html = (report: DemoReport): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>peftkit demo: LoRA vs COLA vs full fine-tuning</title>
<style>body{font-family:sans-serif;max-width:940px;margin:2em auto;color:#222}pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head>
<body>
<h1>LoRA vs COLA vs full fine-tuning</h1>
<p>A ${escape("tanh")} MLP pretrained on task A (${report.pretrain.steps} steps, validation accuracy ${(100 * report.pretrain.validAccuracyA).toFixed(1)}%), then adapted to task B, whose labelling teacher differs from A's by a rank-16 change per hidden layer. Same steps, batch and schedule for every method; COLA uses the same rank as LoRA. Backend: ${escape(report.backend)}. Seed ${report.seed}.</p>
${chart(report.results)}
<p>Lines: training KL per step (smoothed over 10 steps); circles: validation KL.</p>
<pre>${escape(table(report))}</pre>
<p>KL is KL(teacher || model) on task B, 0 = the teacher matched exactly. "peak mem" is the tfjs engine's peak during a profiled step (weights and data sets included); "+training" is what training adds on top of what was resident when it started (adapters, optimizer state, activations, gradients).</p>
<p>Generated by <code>pnpm demo</code> in ${report.totalSeconds.toFixed(1)} s.</p>
</body></html>
`

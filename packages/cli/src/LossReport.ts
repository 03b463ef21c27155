/**
 * Loss-curve reports: a self-contained HTML page (inline SVG, no scripts, no network) with one line
 * per run (train loss, smoothed) and circles for validation loss, on a log scale so both the start
 * of training and small differences at the end stay visible. Used by `peftkit train` and the demo.
 */

export interface LossSeries {
  readonly label: string
  readonly train: ReadonlyArray<{ readonly step: number; readonly loss: number }>
  readonly validation: ReadonlyArray<{ readonly step: number; readonly loss: number }>
}

const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]

const smooth = (values: ReadonlyArray<number>, window: number) =>
  values.map((_, i) => {
    const slice = values.slice(Math.max(0, i - window + 1), i + 1)
    return slice.reduce((s, v) => s + v, 0) / slice.length
  })

/** An SVG chart of the series; `yLabel` names the loss. */
export const lossChartSvg = (series: ReadonlyArray<LossSeries>, yLabel = "loss (log scale)", width = 900, height = 420): string => {
  const margin = { left: 64, right: 120, top: 16, bottom: 44 }
  const lines = series.map((s, i) => ({
    label: s.label,
    color: palette[i % palette.length]!,
    steps: s.train.map((e) => e.step + 1),
    loss: smooth(s.train.map((e) => e.loss), Math.max(1, Math.round(s.train.length / 100))),
    valid: s.validation
  }))
  const all = lines.flatMap((l) => [...l.loss, ...l.valid.map((v) => v.loss)]).filter((v) => v > 0 && Number.isFinite(v))
  if (all.length === 0) return ""
  const maxStep = Math.max(1, ...lines.flatMap((l) => [...l.steps, ...l.valid.map((v) => v.step)]))
  const top = Math.ceil(Math.log10(Math.max(...all)))
  const bottom = Math.min(top - 1, Math.floor(Math.log10(Math.min(...all))))
  const plotW = width - margin.left - margin.right
  const plotH = height - margin.top - margin.bottom
  const x = (step: number) => margin.left + (plotW * step) / maxStep
  const y = (loss: number) => margin.top + (plotH * (top - Math.log10(Math.max(loss, 10 ** bottom)))) / (top - bottom)
  const yTicks = Array.from({ length: top - bottom + 1 }, (_, i) => 10 ** (bottom + i))
  const xTicks = Array.from({ length: 6 }, (_, i) => Math.round((maxStep * i) / 5))
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...yTicks.map((t) => `<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${y(t)}" y2="${y(t)}" stroke="#e5e5e5"/><text x="${margin.left - 6}" y="${y(t) + 4}" text-anchor="end">${t >= 1 ? t.toFixed(0) : t.toPrecision(1)}</text>`),
    ...xTicks.map((t) => `<line x1="${x(t)}" x2="${x(t)}" y1="${margin.top + plotH}" y2="${margin.top + plotH + 4}" stroke="#666"/><text x="${x(t)}" y="${margin.top + plotH + 17}" text-anchor="middle">${t}</text>`),
    `<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${margin.top + plotH}" y2="${margin.top + plotH}" stroke="#666"/>`,
    `<text x="${margin.left + plotW / 2}" y="${height - 6}" text-anchor="middle">step</text>`,
    `<text x="16" y="${margin.top + plotH / 2}" transform="rotate(-90 16 ${margin.top + plotH / 2})" text-anchor="middle">${escapeHtml(yLabel)}</text>`,
    ...lines.map((l) => `<polyline fill="none" stroke="${l.color}" stroke-width="1.5" points="${l.steps.map((st, i) => `${x(st).toFixed(1)},${y(l.loss[i]!).toFixed(1)}`).join(" ")}"/>`),
    ...lines.flatMap((l) => l.valid.map((v) => `<circle cx="${x(v.step).toFixed(1)}" cy="${y(v.loss).toFixed(1)}" r="3.5" fill="white" stroke="${l.color}" stroke-width="2"/>`)),
    ...lines.map((l, i) => `<rect x="${margin.left + plotW + 16}" y="${margin.top + 10 + 20 * i}" width="14" height="3" fill="${l.color}"/><text x="${margin.left + plotW + 36}" y="${margin.top + 15 + 20 * i}">${escapeHtml(l.label)}</text>`),
    `</svg>`
  ].join("\n")
}

export const escapeHtml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** A whole report page: title, paragraphs (plain text), the chart, an optional preformatted table. */
export const lossReportHtml = (options: {
  readonly title: string
  readonly paragraphs: ReadonlyArray<string>
  readonly series: ReadonlyArray<LossSeries>
  readonly yLabel?: string
  readonly table?: string
  readonly notes?: ReadonlyArray<string>
}): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(options.title)}</title>
<style>body{font-family:sans-serif;max-width:1120px;margin:2em auto;color:#222}pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head>
<body>
<h1>${escapeHtml(options.title)}</h1>
${options.paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`).join("\n")}
${lossChartSvg(options.series, options.yLabel)}
<p>Lines: training loss per step (smoothed); circles: validation loss.</p>
${options.table === undefined ? "" : `<pre>${escapeHtml(options.table)}</pre>`}
${(options.notes ?? []).map((p) => `<p>${escapeHtml(p)}</p>`).join("\n")}
</body></html>
`

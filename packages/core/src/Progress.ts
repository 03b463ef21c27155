/**
 * The progress reporter service. The training loop tells it what happens; layers decide where it
 * goes: a terminal progress bar with MLX-LM-style report lines (the default), or nothing (tests).
 */
import { Context, Effect, Layer } from "effect"

export interface ReportLine {
  readonly step: number
  readonly totalSteps: number
  readonly trainLoss: number
  readonly learningRate: number
  readonly itPerSec: number
  readonly tokensPerSec: number
  readonly trainedTokens: number
  readonly peakBytes: number | undefined
}

export interface EvalLine {
  readonly step: number
  readonly valLoss: number
  readonly seconds: number
}

export interface Tick {
  readonly step: number
  readonly loss: number | undefined
  readonly learningRate: number
  /** Tokens processed so far in this run (0 when the task does not count them). */
  readonly tokens: number
}

export interface ProgressReporterShape {
  readonly start: (label: string, totalSteps: number, startStep: number) => Effect.Effect<void>
  /** Every step; must be cheap. `loss` is the most recent known train loss (losses are read back in batches, so it lags). */
  readonly tick: (tick: Tick) => Effect.Effect<void>
  readonly report: (line: ReportLine) => Effect.Effect<void>
  readonly evaluation: (line: EvalLine) => Effect.Effect<void>
  readonly note: (message: string) => Effect.Effect<void>
  readonly finish: () => Effect.Effect<void>
}

export class ProgressReporter extends Context.Tag("@peftkit/core/ProgressReporter")<ProgressReporter, ProgressReporterShape>() {
  /** Reports nothing. */
  static readonly silent: Layer.Layer<ProgressReporter> = Layer.succeed(ProgressReporter, {
    start: () => Effect.void,
    tick: () => Effect.void,
    report: () => Effect.void,
    evaluation: () => Effect.void,
    note: () => Effect.void,
    finish: () => Effect.void
  })

  /**
   * A progress bar on an interactive terminal (redrawn at most 10 times a second), report lines
   * always. Where there is no `process.stderr` (a browser) the lines go to `console.log`.
   */
  static terminal(stream: TerminalStream = defaultStream()): Layer.Layer<ProgressReporter> {
    return Layer.sync(ProgressReporter, () => makeTerminalReporter(stream))
  }

  /**
   * Every event as a value handed to `onEvent`: for a page's own progress bar and chart (ticks come
   * every step; keep the handler cheap, e.g. schedule a redraw).
   */
  static callback(onEvent: (event: ProgressEvent) => void): Layer.Layer<ProgressReporter> {
    const emit = (event: ProgressEvent) => Effect.sync(() => onEvent(event))
    return Layer.succeed(ProgressReporter, {
      start: (label, totalSteps, startStep) => emit({ _tag: "start", label, totalSteps, startStep }),
      tick: (tick) => emit({ _tag: "tick", ...tick }),
      report: (line) => emit({ _tag: "report", ...line }),
      evaluation: (line) => emit({ _tag: "evaluation", ...line }),
      note: (message) => emit({ _tag: "note", message }),
      finish: () => emit({ _tag: "finish" })
    })
  }
}

/** What `ProgressReporter.callback` hands over. */
export type ProgressEvent =
  | { readonly _tag: "start"; readonly label: string; readonly totalSteps: number; readonly startStep: number }
  | ({ readonly _tag: "tick" } & Tick)
  | ({ readonly _tag: "report" } & ReportLine)
  | ({ readonly _tag: "evaluation" } & EvalLine)
  | { readonly _tag: "note"; readonly message: string }
  | { readonly _tag: "finish" }

/** The subset of a Node write stream the terminal reporter needs. */
export interface TerminalStream {
  readonly isTTY?: boolean
  readonly columns?: number
  write(text: string): unknown
}

const defaultStream = (): TerminalStream => {
  const proc = (globalThis as { process?: { stderr?: TerminalStream } }).process
  return proc?.stderr ?? { write: (text: string) => console.log(text.replace(/\n$/, "")) }
}

export const formatBytes = (bytes: number): string => {
  if (bytes < 1024) return `${bytes} B`
  const units = ["KiB", "MiB", "GiB", "TiB"]
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`
}

const formatRate = (value: number): string => (value >= 1000 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(1))

export const formatReportLine = (line: ReportLine): string =>
  [
    `Iter ${line.step}: Train loss ${line.trainLoss.toFixed(4)}`,
    `Learning Rate ${line.learningRate.toExponential(3)}`,
    `It/sec ${line.itPerSec.toFixed(2)}`,
    // A task that counts no tokens (no `tokensPerBatch`) gets no token fields rather than zeros.
    ...(line.trainedTokens === 0 ? [] : [`Tokens/sec ${formatRate(line.tokensPerSec)}`, `Trained Tokens ${line.trainedTokens}`]),
    ...(line.peakBytes === undefined ? [] : [`Peak mem ${formatBytes(line.peakBytes)}`])
  ].join(", ")

const makeTerminalReporter = (stream: TerminalStream): ProgressReporterShape => {
  const interactive = stream.isTTY === true
  let label = ""
  let total = 0
  let startedAt = 0
  let firstStep = 0
  let lastDraw = 0
  let barVisible = false

  const clearBar = () => {
    if (barVisible) stream.write("\r\x1b[2K")
    barVisible = false
  }
  const draw = ({ step, loss, learningRate, tokens }: Tick) => {
    const width = Math.max(10, Math.min(30, (stream.columns ?? 100) - 90))
    const done = Math.round((width * step) / Math.max(1, total))
    const elapsed = (performance.now() - startedAt) / 1000
    const rate = (step - firstStep) / Math.max(elapsed, 1e-9)
    const eta = rate > 0 ? (total - step) / rate : 0
    const lossText = loss === undefined ? "" : ` loss ${loss.toFixed(4)}`
    const tokensText = tokens > 0 ? ` ${formatRate(tokens / Math.max(elapsed, 1e-9))} tok/s` : ""
    stream.write(
      `\r\x1b[2K${label} [${"#".repeat(done)}${"-".repeat(width - done)}] ${step}/${total}${lossText} lr ${learningRate.toExponential(2)} ${rate.toFixed(1)} it/s${tokensText} eta ${eta.toFixed(0)}s`
    )
    barVisible = true
  }
  const line = (text: string) =>
    Effect.sync(() => {
      clearBar()
      stream.write(`${text}\n`)
    })

  return {
    start: (name, totalSteps, startStep) =>
      Effect.sync(() => {
        label = name
        total = totalSteps
        firstStep = startStep
        startedAt = performance.now()
        lastDraw = 0
      }),
    tick: (tick) =>
      Effect.sync(() => {
        if (!interactive) return
        const now = performance.now()
        if (now - lastDraw < 100 && tick.step < total) return
        lastDraw = now
        draw(tick)
      }),
    report: (report) => line(`${label ? `[${label}] ` : ""}${formatReportLine(report)}`),
    evaluation: (evaluation) =>
      line(`${label ? `[${label}] ` : ""}Iter ${evaluation.step}: Val loss ${evaluation.valLoss.toFixed(4)}, Val took ${evaluation.seconds.toFixed(2)}s`),
    note: (message) => line(`${label ? `[${label}] ` : ""}${message}`),
    finish: () => Effect.sync(clearBar)
  }
}

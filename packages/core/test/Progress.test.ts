import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { formatBytes, formatReportLine, ProgressReporter } from "../src/index.js"

const capture = (isTTY: boolean) => {
  const chunks: Array<string> = []
  return { stream: { isTTY, columns: 140, write: (text: string) => chunks.push(text) }, chunks }
}

const line = { step: 10, totalSteps: 20, trainLoss: 1.23456, learningRate: 5e-4, itPerSec: 12.5, tokensPerSec: 2048, trainedTokens: 20480, peakBytes: 3 * 1024 * 1024 }

describe("terminal progress", () => {
  it("formats MLX-LM-style report lines", () => {
    expect(formatReportLine(line)).toBe("Iter 10: Train loss 1.2346, Learning Rate 5.000e-4, It/sec 12.50, Tokens/sec 2.0k, Trained Tokens 20480, Peak mem 3.00 MiB")
    expect(formatReportLine({ ...line, tokensPerSec: 0, trainedTokens: 0 })).toBe("Iter 10: Train loss 1.2346, Learning Rate 5.000e-4, It/sec 12.50, Peak mem 3.00 MiB")
    expect(formatBytes(512)).toBe("512 B")
    expect(formatBytes(1536 * 1024 * 1024)).toBe("1.50 GiB")
  })

  it("on a terminal, draws a bar with loss, LR, it/s and tokens/s; report lines clear it first", async () => {
    const { stream, chunks } = capture(true)
    await Effect.runPromise(
      Effect.gen(function* () {
        const progress = yield* ProgressReporter
        yield* progress.start("lora", 20, 0)
        yield* progress.tick({ step: 20, loss: 0.5, learningRate: 1e-3, tokens: 4096 })
        yield* progress.report(line)
        yield* progress.finish()
      }).pipe(Effect.provide(ProgressReporter.terminal(stream)))
    )
    const bar = chunks[0]!
    expect(bar).toMatch(/^\r\x1b\[2Klora \[#+\] 20\/20 loss 0\.5000 lr 1\.00e-3 [\d.]+ it\/s [\d.]+k? tok\/s eta \d+s$/)
    expect(chunks[1]).toBe("\r\x1b[2K")
    expect(chunks[2]).toBe(`[lora] ${formatReportLine(line)}\n`)
  })

  it("in a pipe (CI logs), prints report lines only, no carriage returns", async () => {
    const { stream, chunks } = capture(false)
    await Effect.runPromise(
      Effect.gen(function* () {
        const progress = yield* ProgressReporter
        yield* progress.start("cola", 20, 0)
        yield* progress.tick({ step: 5, loss: 0.5, learningRate: 1e-3, tokens: 0 })
        yield* progress.report(line)
        yield* progress.evaluation({ step: 10, valLoss: 0.75, seconds: 0.5 })
        yield* progress.finish()
      }).pipe(Effect.provide(ProgressReporter.terminal(stream)))
    )
    expect(chunks).toEqual([`[cola] ${formatReportLine(line)}\n`, "[cola] Iter 10: Val loss 0.7500, Val took 0.50s\n"])
  })
})

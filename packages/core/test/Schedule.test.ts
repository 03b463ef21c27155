import { describe, expect, it } from "vitest"
import { ConfigError, makeSchedule, withWarmupRestarts } from "../src/index.js"

describe("learning-rate schedules (Hugging Face formulas)", () => {
  it("linear with warm-up: ramps from 0, peaks, decays to 0 at totalSteps", () => {
    const lr = makeSchedule({ kind: "linear", peak: 1e-3, totalSteps: 110, warmupSteps: 10 })
    expect(lr(0)).toBe(0)
    expect(lr(5)).toBeCloseTo(5e-4, 15)
    expect(lr(10)).toBeCloseTo(1e-3, 15)
    expect(lr(60)).toBeCloseTo(5e-4, 15)
    expect(lr(110)).toBe(0)
  })

  it("cosine: half a cosine to minRatio * peak", () => {
    const lr = makeSchedule({ kind: "cosine", peak: 2, totalSteps: 100, minRatio: 0.1 })
    expect(lr(0)).toBe(2)
    expect(lr(50)).toBeCloseTo(2 * (0.1 + 0.9 * 0.5), 12)
    expect(lr(100)).toBeCloseTo(0.2, 12)
    expect(lr(25)).toBeCloseTo(2 * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 4))), 12)
  })

  it("constant stays at peak after warm-up", () => {
    const lr = makeSchedule({ kind: "constant", peak: 3, totalSteps: 10, warmupSteps: 2 })
    expect([0, 1, 2, 9].map(lr)).toEqual([0, 1.5, 3, 3])
  })

  it("warm-up restarts (ReLoRA's jagged schedule) drop to 0 at each restart and ramp back", () => {
    const lr = withWarmupRestarts(makeSchedule({ kind: "constant", peak: 1, totalSteps: 100 }), [40, 70], 10)
    expect([0, 39, 40, 45, 50, 69, 70, 75, 80].map(lr)).toEqual([1, 1, 0, 0.5, 1, 1, 0, 0.5, 1])
  })

  it("bad schedule config is a ConfigError naming the field", () => {
    expect(() => makeSchedule({ kind: "step" as never, peak: 1, totalSteps: 10 })).toThrow(ConfigError)
    expect(() => makeSchedule({ kind: "linear", peak: 1, totalSteps: 10, warmupSteps: 20 })).toThrowError(/schedule.warmupSteps/)
    expect(() => makeSchedule({ kind: "linear", peak: -1, totalSteps: 10 })).toThrowError(/schedule.peak/)
  })
})

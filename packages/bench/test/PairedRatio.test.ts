import { describe, expect, it } from "vitest"
import { pairedRatio, tQuantile975 } from "../src/PairedRatio.js"

describe("pairedRatio", () => {
  it("is the geometric mean of the rounds' median ratios with a t interval on their logs", () => {
    // Rounds with median ratios 1.1, 1.0, 1.21: logs ln1.1, 0, 2 ln1.1; mean ln1.1, sd ln1.1.
    const result = pairedRatio([[110, 110, 500], [100, 100, 100], [121, 121, 0]], [[100, 100, 100], [100, 100, 100], [100, 100, 100]])
    const l = Math.log(1.1)
    expect(result.ratio).toBeCloseTo(1.1, 12)
    expect(result.low).toBeCloseTo(Math.exp(l - 4.303 * (l / Math.sqrt(3))), 12)
    expect(result.high).toBeCloseTo(Math.exp(l + 4.303 * (l / Math.sqrt(3))), 12)
    expect(result).toMatchObject({ rounds: 3, blockSteps: 3 })
  })

  it("has a zero-width interval when every round agrees", () => {
    const result = pairedRatio([[102], [102]], [[100], [100]])
    expect(result.low).toBeCloseTo(1.02, 12)
    expect(result.high).toBeCloseTo(1.02, 12)
  })

  it("refuses fewer than two rounds or unequal sides", () => {
    expect(() => pairedRatio([[1]], [[1]])).toThrow(RangeError)
    expect(() => pairedRatio([[1], [1]], [[1]])).toThrow(RangeError)
  })

  it("uses Student's t for few rounds and the normal quantile beyond 30", () => {
    expect(tQuantile975(1)).toBe(12.706)
    expect(tQuantile975(9)).toBe(2.262)
    expect(tQuantile975(100)).toBe(1.96)
  })
})

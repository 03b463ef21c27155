/** The metrics against values computed by hand. */
import { describe, expect, it } from "vitest"
import { accuracy, computeMetrics, exactMatch, f1a, macroF1 } from "../src/index.js"

describe("metrics", () => {
  it("accuracy", () => {
    expect(accuracy([0, 1, 1, 0], [0, 1, 0, 0])).toBe(0.75)
    expect(accuracy([2], [2])).toBe(1)
    expect(accuracy([], [])).toBeNaN()
    expect(() => accuracy([0], [0, 1])).toThrow(RangeError)
  })

  it("macro-F1 (CB): per-class F1 averaged over classes in gold or predicted", () => {
    // class 0: tp 1, fp 1, fn 1 -> 1/2; class 1: tp 2, fp 1, fn 0 -> 4/5; class 2: tp 1, fp 0, fn 1 -> 2/3.
    expect(macroF1([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0])).toBeCloseTo(59 / 90, 14)
    // class 1 is only predicted: its F1 is 0 and still counts.
    expect(macroF1([0, 0], [0, 1])).toBeCloseTo(1 / 3, 14)
    // a class absent from both does not count.
    expect(macroF1([0, 1], [0, 1])).toBe(1)
    expect(macroF1([], [])).toBeNaN()
  })

  it("F1a (MultiRC): binary F1 of 'correct answer' over all answers", () => {
    // tp 2, fp 1, fn 1 -> P = R = 2/3.
    expect(f1a([1, 0, 1, 1, 0], [1, 1, 0, 1, 0])).toBeCloseTo(2 / 3, 14)
    expect(f1a([0, 0], [0, 0])).toBe(0)
    expect(f1a([1, 1, 0], [1, 0, 0])).toBeCloseTo(2 / 3, 14) // P 1, R 1/2
  })

  it("exact match (MultiRC): questions whose answers are all right", () => {
    expect(exactMatch([1, 0, 1, 1, 0], [1, 1, 0, 1, 0], ["q1", "q1", "q2", "q2", "q3"])).toBeCloseTo(1 / 3, 14)
    expect(exactMatch([1, 0], [1, 0], ["q", "q"])).toBe(1)
    expect(() => exactMatch([1], [1], [])).toThrow(RangeError)
  })

  it("computeMetrics returns accuracy plus the requested ones", () => {
    const preds = [
      { label: 1, predicted: 1, group: "a" },
      { label: 0, predicted: 1, group: "a" },
      { label: 1, predicted: 1, group: "b" }
    ]
    expect(computeMetrics(["accuracy"], preds)).toEqual({ accuracy: 2 / 3 })
    const m = computeMetrics(["accuracy", "f1a", "exactMatch"], preds)
    expect(m.f1a).toBeCloseTo(0.8, 14) // tp 2, fp 1, fn 0
    expect(m.exactMatch).toBe(0.5)
    expect(computeMetrics(["accuracy", "macroF1"], [{ label: 2, predicted: 2 }, { label: 0, predicted: 1 }]).macroF1).toBeCloseTo(1 / 3, 14)
  })
})

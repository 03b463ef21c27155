import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { InvalidCheckpoint, ShapeMismatch } from "@peftkit/core"
import type { Parameter, ParameterGroup } from "@peftkit/core"
import { adam, adamw, lion, sgd } from "../src/index.js"
import type { SlotOptimizer } from "../src/index.js"
import { disposeAll, param, parametersOf, problem, read, readState, run } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const makers: ReadonlyArray<readonly [string, (groups: ReadonlyArray<ParameterGroup>) => SlotOptimizer]> = [
  ["adamw", (groups) => adamw(groups, { weightDecay: 0.1 })],
  ["adam", (groups) => adam(groups, { weightDecay: 0.1 })],
  ["sgd", (groups) => sgd(groups, { momentum: 0.9, nesterov: true, weightDecay: 0.1 })],
  ["lion", (groups) => lion(groups, { weightDecay: 0.1 })]
]

const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (error) {
    return error
  }
  return expect.unreachable("expected a throw")
}

const disposeParams = (params: ReadonlyArray<Parameter>): void => {
  for (const p of params) p.variable.dispose()
}

/** State with every slot entry set to `fill(key, i)` (steps keep their value). */
const filledState = (opt: SlotOptimizer, fill: (key: string, i: number) => number): Record<string, tf.Tensor> => {
  const state = opt.stateDict()
  for (const [key, t] of Object.entries(state)) {
    if (key.endsWith("/step")) continue
    state[key] = tf.tensor(Array.from({ length: t.size }, (_, i) => fill(key, i)), t.shape, "float32")
    t.dispose()
  }
  return state
}

describe.each(makers)("%s state", (_name, make) => {
  it("reset() zeroes every state tensor and step counter; the next step equals a first step", () => {
    const pb = problem(4, 21)
    const params = parametersOf(pb)
    const opt = make([{ params }])
    run(opt, params, { ...pb, grads: pb.grads.slice(0, 3) })
    for (const values of Object.values(readState(opt.stateDict()))) expect(values.some((x) => x !== 0)).toBe(true)

    opt.reset()
    for (const values of Object.values(readState(opt.stateDict()))) expect(values.every((x) => x === 0)).toBe(true)
    expect(Object.values(opt.steps())).toEqual([0, 0])

    // A fresh optimizer starting from the same values must take bit-for-bit the same step.
    const twins = params.map((p, i) => param(`p${i}`, read(p.variable), p.variable.shape))
    const fresh = make([{ params: twins }])
    const last = { ...pb, grads: pb.grads.slice(3), lrs: pb.lrs.slice(3) }
    expect(run(opt, params, last)).toEqual(run(fresh, twins, last))
    expect(readState(opt.stateDict())).toEqual(readState(fresh.stateDict()))
    opt.dispose()
    fresh.dispose()
    disposeParams([...params, ...twins])
  })

  it("save/load resumes exactly: N steps, save, M steps == load into a new optimizer, same M steps", () => {
    const pb = problem(5, 22)
    const params = parametersOf(pb)
    const opt = make([{ params }])
    run(opt, params, { ...pb, grads: pb.grads.slice(0, 3), lrs: pb.lrs.slice(0, 3) })
    const saved = opt.stateDict()
    const savedParams = params.map((p) => read(p.variable))
    const rest = { ...pb, grads: pb.grads.slice(3), lrs: pb.lrs.slice(3) }
    const continued = run(opt, params, rest)

    const restored = params.map((p, i) => param(p.name, savedParams[i]!, p.variable.shape))
    const resumed = make([{ params: restored }])
    resumed.loadStateDict(saved)
    disposeAll(saved) // loadStateDict copies
    expect(run(resumed, restored, rest)).toEqual(continued)
    expect(readState(resumed.stateDict())).toEqual(readState(opt.stateDict()))
    opt.dispose()
    resumed.dispose()
    disposeParams([...params, ...restored])
  })

  it("leaves tf.memory().numTensors unchanged across step, reset, prune, setParameters, stateDict round trips", () => {
    const pb = problem(3, 23)
    const params = parametersOf(pb)
    const opt = make([{ params }])
    const grads = params.map((p, i) => ({ [p.name]: tf.tensor(pb.grads[0]![i]! as Array<number>, p.variable.shape) }))
    const all = Object.assign({}, ...grads) as Record<string, tf.Tensor>
    const n = tf.memory().numTensors
    opt.step(all, 0.1) // the first step allocates nothing: state exists from construction
    expect(tf.memory().numTensors).toBe(n)
    opt.step(all, 0.05)
    expect(tf.memory().numTensors).toBe(n)
    opt.prune(0.5, "magnitude")
    expect(tf.memory().numTensors).toBe(n)
    opt.prune(0.5, "random", 3)
    expect(tf.memory().numTensors).toBe(n)
    opt.setParameters([{ params }])
    expect(tf.memory().numTensors).toBe(n)
    const state = opt.stateDict()
    opt.loadStateDict(state)
    disposeAll(state)
    expect(tf.memory().numTensors).toBe(n)
    opt.reset()
    expect(tf.memory().numTensors).toBe(n)
    opt.step(all, 0.1)
    expect(tf.memory().numTensors).toBe(n)
    disposeAll(all)
    opt.dispose()
    disposeParams(params)
  })

  it("loadStateDict rejects unknown keys, missing keys and wrong shapes, and keeps its state", () => {
    const params = [param("w", [1, 2, 3, 4], [2, 2])]
    const opt = make([{ params }])
    const g = { w: tf.tensor([0.1, -0.2, 0.3, -0.4], [2, 2]) }
    opt.step(g, 0.1)
    g.w.dispose()
    const before = readState(opt.stateDict())

    const extra = opt.stateDict()
    extra["v/step"] = tf.scalar(1, "int32")
    const unknown = thrown(() => opt.loadStateDict(extra))
    expect(unknown).toBeInstanceOf(InvalidCheckpoint)
    expect((unknown as InvalidCheckpoint).path).toBe("optimizer state")
    expect((unknown as InvalidCheckpoint).tensor).toBe("v/step")
    disposeAll(extra)

    const missing = opt.stateDict()
    missing["w/step"]!.dispose()
    delete missing["w/step"]
    const missingError = thrown(() => opt.loadStateDict(missing))
    expect(missingError).toBeInstanceOf(InvalidCheckpoint)
    expect((missingError as InvalidCheckpoint).tensor).toBe("w/step")
    expect((missingError as InvalidCheckpoint).path).toBe("optimizer state")
    disposeAll(missing)

    const badStep = opt.stateDict()
    badStep["w/step"]!.dispose()
    badStep["w/step"] = tf.scalar(-1, "int32")
    expect(thrown(() => opt.loadStateDict(badStep))).toBeInstanceOf(InvalidCheckpoint)
    disposeAll(badStep)

    const slotKeys = Object.keys(before).filter((key) => !key.endsWith("/step"))
    for (const key of slotKeys) {
      const wrong = opt.stateDict()
      wrong[key]!.dispose()
      wrong[key] = tf.zeros([4])
      const error = thrown(() => opt.loadStateDict(wrong))
      expect(error).toBeInstanceOf(ShapeMismatch)
      expect((error as ShapeMismatch).what).toContain(key)
      disposeAll(wrong)
    }
    expect(readState(opt.stateDict())).toEqual(before)
    opt.dispose()
    disposeParams(params)
  })

  it("stateDict returns copies: disposing them leaves the optimizer intact", () => {
    const params = [param("w", [1, 2], [2])]
    const opt = make([{ params }])
    const g = { w: tf.tensor([0.5, -0.5]) }
    opt.step(g, 0.1)
    const before = readState(opt.stateDict())
    disposeAll(opt.stateDict())
    expect(readState(opt.stateDict())).toEqual(before)
    opt.step(g, 0.1)
    g.w.dispose()
    opt.dispose()
    disposeParams(params)
  })
})

describe("prune", () => {
  // 20 entries with distinct magnitudes 1..20 and mixed signs, in scrambled order.
  const magnitudes = [7, 19, 3, 12, 1, 16, 9, 20, 5, 14, 2, 11, 18, 6, 13, 4, 17, 8, 15, 10]
  const signed = magnitudes.map((m, i) => (i % 3 === 0 ? -m : m))

  for (const fraction of [0.75, 0.25, 0.5]) {
    it(`magnitude ${fraction}: keeps exactly the ${Math.round((1 - fraction) * 100)}% largest |entries|, zeroes the rest`, () => {
      const params = [param("w", Array(20).fill(0) as Array<number>, [4, 5])]
      const opt = adamw([{ params }])
      const state = filledState(opt, (key, i) => (key.endsWith("exp_avg_sq") ? magnitudes[i]! * 0.5 : signed[i]!))
      state["w/step"]!.dispose()
      state["w/step"] = tf.scalar(7, "int32")
      opt.loadStateDict(state)
      disposeAll(state)

      opt.prune(fraction, "magnitude")
      const after = readState(opt.stateDict())
      const keep = 20 - Math.round(fraction * 20)
      const threshold = 20 - keep // magnitudes above this survive
      expect(after["w/exp_avg"]).toEqual(signed.map((x, i) => (magnitudes[i]! > threshold ? x : 0)))
      expect(after["w/exp_avg_sq"]).toEqual(magnitudes.map((m) => (m > threshold ? m * 0.5 : 0)))
      expect(after["w/step"]).toEqual([7]) // step counters untouched
      opt.dispose()
      disposeParams(params)
    })
  }

  it("fraction 0 changes nothing, fraction 1 zeroes everything", () => {
    const params = [param("w", [0, 0, 0], [3])]
    const opt = lion([{ params }])
    const state = filledState(opt, (_key, i) => i + 1)
    opt.loadStateDict(state)
    disposeAll(state)
    opt.prune(0, "magnitude")
    opt.prune(0, "random", 1)
    expect(readState(opt.stateDict())["w/exp_avg"]).toEqual([1, 2, 3])
    opt.prune(1, "random", 1)
    expect(readState(opt.stateDict())["w/exp_avg"]).toEqual([0, 0, 0])
    opt.dispose()
    disposeParams(params)
  })

  it("random: zeroes about `fraction` of each tensor, deterministically for a seed, a different mask per tensor", () => {
    const n = 20_000
    const params = [param("w", new Array<number>(n).fill(0), [100, 200])]
    const opt = adamw([{ params }])
    const ones = filledState(opt, () => 1)
    const prunedWith = (seed: number) => {
      opt.loadStateDict(ones)
      opt.prune(0.3, "random", seed)
      return readState(opt.stateDict())
    }
    const first = prunedWith(42)
    for (const key of ["w/exp_avg", "w/exp_avg_sq"]) {
      const values = first[key]!
      const zeros = values.filter((x) => x === 0).length
      expect(zeros / n).toBeGreaterThan(0.28)
      expect(zeros / n).toBeLessThan(0.32)
      expect(values.every((x) => x === 0 || x === 1)).toBe(true) // survivors keep their value
    }
    expect(first["w/exp_avg"]).not.toEqual(first["w/exp_avg_sq"])
    expect(prunedWith(42)).toEqual(first)
    expect(prunedWith(43)["w/exp_avg"]).not.toEqual(first["w/exp_avg"])
    disposeAll(ones)
    opt.dispose()
    disposeParams(params)
  })

  it("rejects a fraction outside [0, 1]", () => {
    const opt = sgd([], { momentum: 0.9 })
    expect(() => opt.prune(1.5, "magnitude")).toThrow(RangeError)
    expect(() => opt.prune(-0.1, "random")).toThrow(RangeError)
  })
})

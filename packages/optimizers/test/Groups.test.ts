import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { ConfigError, ShapeMismatch } from "@peftkit/core"
import { adamw, sgd } from "../src/index.js"
import { expectClose, gradients, param, parametersOf, problem, read, readState, run } from "./helpers.js"
import { referenceAdam } from "./reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (error) {
    return error
  }
  return expect.unreachable("expected a throw")
}

describe("parameter groups", () => {
  it("LoRA+: B's group runs at lrScale x the scheduled rate, decay included", () => {
    const pb = problem(4, 11)
    const [a, b] = parametersOf(pb, "lora_")
    const lambda = 16
    const opt = adamw([{ params: [a!] }, { params: [b!], lrScale: lambda }], { weightDecay: 0.05 })
    const got = run(opt, [a!, b!], pb)
    const base = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, decoupled: true }
    const refA = referenceAdam(pb.initial[0]!, pb.grads.map((g) => g[0]!), pb.lrs, base)
    const refB = referenceAdam(pb.initial[1]!, pb.grads.map((g) => g[1]!), pb.lrs.map((lr) => lr * lambda), base)
    refA.params.forEach((expected, s) => expectClose(got[s]![0]!, expected))
    refB.params.forEach((expected, s) => expectClose(got[s]![1]!, expected))
    opt.dispose()
  })

  it("a group's weightDecay overrides the optimizer's", () => {
    const pb = problem(3, 12)
    const [a, b] = parametersOf(pb)
    const opt = adamw([{ params: [a!] }, { params: [b!], weightDecay: 0 }], { weightDecay: 0.5 })
    const got = run(opt, [a!, b!], pb)
    const base = { beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: true }
    const refA = referenceAdam(pb.initial[0]!, pb.grads.map((g) => g[0]!), pb.lrs, { ...base, weightDecay: 0.5 })
    const refB = referenceAdam(pb.initial[1]!, pb.grads.map((g) => g[1]!), pb.lrs, { ...base, weightDecay: 0 })
    refA.params.forEach((expected, s) => expectClose(got[s]![0]!, expected))
    refB.params.forEach((expected, s) => expectClose(got[s]![1]!, expected))
    opt.dispose()
  })

  it("rejects duplicate parameters and bad group settings, naming the field", () => {
    const p = param("w", [1], [1])
    const q = param("q", [1], [1])
    const dup = thrown(() => adamw([{ params: [p] }, { params: [p] }]))
    expect(dup).toBeInstanceOf(ConfigError)
    expect((dup as ConfigError).field).toBe("groups.1.params.0")
    const scale = thrown(() => adamw([{ params: [p] }, { params: [q], lrScale: -2 }]))
    expect((scale as ConfigError).field).toBe("groups.1.lrScale")
    const decay = thrown(() => adamw([{ params: [p], weightDecay: Number.NaN }]))
    expect((decay as ConfigError).field).toBe("groups.0.weightDecay")
  })

  it("setParameters keeps state of parameters still present, disposes removed ones, starts new ones at zero", () => {
    const pb = problem(2, 13)
    const [a, b] = parametersOf(pb)
    const opt = adamw([{ params: [a!, b!] }])
    run(opt, [a!, b!], pb)
    const before = readState(opt.stateDict())

    // Same set: nothing changes, no tensor allocated.
    const n0 = tf.memory().numTensors
    opt.setParameters([{ params: [a!, b!] }])
    expect(tf.memory().numTensors).toBe(n0)
    expect(readState(opt.stateDict())).toEqual(before)

    // Drop b, add c: b's two slots are freed, c gets two zero slots.
    const c = param("c", [1, 2, 3], [3])
    opt.setParameters([{ params: [a!] }, { params: [c], lrScale: 2 }])
    expect(tf.memory().numTensors).toBe(n0 + 1) // + c's variable
    const after = readState(opt.stateDict())
    expect(Object.keys(after).sort()).toEqual(["c/exp_avg", "c/exp_avg_sq", "c/step", "p0/exp_avg", "p0/exp_avg_sq", "p0/step"])
    expect(after["p0/exp_avg"]).toEqual(before["p0/exp_avg"])
    expect(after["p0/step"]).toEqual([2])
    expect(after["c/exp_avg"]).toEqual([0, 0, 0])
    expect(after["c/step"]).toEqual([0])
    expect(opt.groups[1]!.lrScale).toBe(2)
    opt.dispose()
  })

  it("setParameters restarts a parameter whose shape changed (a rank change)", () => {
    const a = param("lora_A", [1, 2, 3, 4], [2, 2])
    const opt = adamw([{ params: [a] }])
    const grads = gradients([a], [[1, 1, 1, 1]])
    opt.step(grads, 0.1)
    grads["lora_A"]!.dispose()
    const wider = param("lora_A", [1, 2, 3, 4, 5, 6], [3, 2])
    opt.setParameters([{ params: [wider] }])
    const state = readState(opt.stateDict())
    expect(state["lora_A/exp_avg"]).toEqual([0, 0, 0, 0, 0, 0])
    expect(state["lora_A/step"]).toEqual([0])
    opt.dispose()
  })

  it("a gradient of the wrong shape is a ShapeMismatch and nothing is updated", () => {
    const a = param("a", [1, 2], [2])
    const b = param("b", [3, 4], [2])
    const opt = sgd([{ params: [a, b] }])
    const grads = { a: tf.tensor([1, 1]), b: tf.tensor([1, 1, 1]) }
    const error = thrown(() => opt.step(grads, 0.1))
    expect(error).toBeInstanceOf(ShapeMismatch)
    expect((error as ShapeMismatch).what).toContain("'b'")
    expect(read(a.variable)).toEqual([1, 2])
    expect(opt.steps()).toEqual({ a: 0, b: 0 })
    grads.a.dispose()
    grads.b.dispose()
    opt.dispose()
  })

  it("ignores gradients of names it does not optimize", () => {
    const a = param("a", [1, 2], [2])
    const opt = sgd([{ params: [a] }], { momentum: 0.9 })
    const grads = { a: tf.tensor([1, 1]), frozen: tf.tensor([5]) }
    opt.step(grads, 0.5)
    expect(read(a.variable)).toEqual([0.5, 1.5])
    grads.a.dispose()
    grads.frozen.dispose()
    opt.dispose()
  })
})

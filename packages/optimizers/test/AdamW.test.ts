import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { adamw, adamwDefaults } from "../src/index.js"
import { expectClose, gradients, param, parametersOf, problem, read, readState, run } from "./helpers.js"
import { referenceAdam } from "./reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

describe("adamw", () => {
  it("has PyTorch's defaults", () => {
    const opt = adamw([])
    expect(opt.name).toBe("adamw")
    expect(opt.options).toEqual({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 })
    expect(opt.lr).toBe(1e-3)
    expect(adamwDefaults.weightDecay).toBe(0.01)
  })

  it("matches the Float64 reference over 5 steps (decoupled decay, bias correction, scheduled lr)", () => {
    const pb = problem(5)
    const params = parametersOf(pb)
    const options = { betas: [0.8, 0.95] as const, eps: 1e-6, weightDecay: 0.1 }
    const opt = adamw([{ params }], options)
    const got = run(opt, params, pb)
    params.forEach((_, i) => {
      const ref = referenceAdam(pb.initial[i]!, pb.grads.map((g) => g[i]!), pb.lrs, {
        beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, decoupled: true
      })
      ref.params.forEach((expected, s) => expectClose(got[s]![i]!, expected))
      const state = readState(opt.stateDict())
      // Moments are sums of terms ~0.1 that partly cancel: float32 rounding is absolute, ~1e-8 of those terms.
      expectClose(state[`p${i}/exp_avg`]!, ref.state.exp_avg!, 1e-6, 1e-7)
      expectClose(state[`p${i}/exp_avg_sq`]!, ref.state.exp_avg_sq!, 1e-6, 1e-7)
      expect(state[`p${i}/step`]).toEqual([5])
    })
    opt.dispose()
  })

  it("matches the reference with its defaults", () => {
    const pb = problem(4, 2)
    const params = parametersOf(pb)
    const opt = adamw([{ params }])
    const got = run(opt, params, pb)
    const ref = referenceAdam(pb.initial[0]!, pb.grads.map((g) => g[0]!), pb.lrs, {
      beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: true
    })
    ref.params.forEach((expected, s) => expectClose(got[s]![0]!, expected))
    opt.dispose()
  })

  it("first step is p - lr * g / (|g| + eps) after bias correction", () => {
    const p = param("w", [0.5, -0.25, 2], [3])
    const opt = adamw([{ params: [p] }], { weightDecay: 0 })
    const g = [0.3, -2, 1e-3]
    const grads = gradients([p], [g])
    opt.step(grads, 0.1)
    expectClose(read(p.variable), [0.5, -0.25, 2].map((x, i) => x - (0.1 * g[i]!) / (Math.abs(g[i]!) + 1e-8)))
    grads["w"]!.dispose()
    opt.dispose()
  })

  it("decays decoupled from the gradient: zero gradient gives p * (1 - lr * wd)", () => {
    const p = param("w", [0.5, -0.25, 2], [3])
    const opt = adamw([{ params: [p] }], { weightDecay: 0.5 })
    const grads = { w: tf.zeros([3]) }
    opt.step(grads, 0.1)
    expectClose(read(p.variable), [0.5, -0.25, 2].map((x) => x * (1 - 0.1 * 0.5)))
    grads.w.dispose()
    opt.dispose()
  })

  it("leaves parameters without a gradient alone, and their step counter too", () => {
    const a = param("a", [1, 2], [2])
    const b = param("b", [3, 4], [2])
    const opt = adamw([{ params: [a, b] }])
    const grads = { a: tf.tensor([0.1, 0.2]) }
    opt.step(grads, 0.01)
    expect(read(b.variable)).toEqual([3, 4])
    expect(opt.steps()).toEqual({ a: 1, b: 0 })
    grads.a.dispose()
    opt.dispose()
  })
})

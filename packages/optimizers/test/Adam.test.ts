import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { adam } from "../src/index.js"
import { expectClose, param, parametersOf, problem, read, readState, run } from "./helpers.js"
import { referenceAdam } from "./reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

describe("adam", () => {
  it("has PyTorch's defaults (no weight decay)", () => {
    const opt = adam([])
    expect(opt.name).toBe("adam")
    expect(opt.options).toEqual({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 })
  })

  it("matches the Float64 reference over 5 steps with L2-coupled weight decay", () => {
    const pb = problem(5, 3)
    const params = parametersOf(pb)
    const opt = adam([{ params }], { betas: [0.85, 0.99], eps: 1e-7, weightDecay: 0.2 })
    const got = run(opt, params, pb)
    const state = readState(opt.stateDict())
    params.forEach((_, i) => {
      const ref = referenceAdam(pb.initial[i]!, pb.grads.map((g) => g[i]!), pb.lrs, {
        beta1: 0.85, beta2: 0.99, eps: 1e-7, weightDecay: 0.2, decoupled: false
      })
      ref.params.forEach((expected, s) => expectClose(got[s]![i]!, expected))
      expectClose(state[`p${i}/exp_avg`]!, ref.state.exp_avg!, 1e-6, 1e-7)
      expectClose(state[`p${i}/exp_avg_sq`]!, ref.state.exp_avg_sq!, 1e-6, 1e-7)
    })
    opt.dispose()
  })

  it("folds decay into the gradient: zero gradient moves p by lr * wd p / (|wd p| + eps)", () => {
    const p0 = [0.5, -0.25, 2]
    const p = param("w", p0, [3])
    const opt = adam([{ params: [p] }], { weightDecay: 0.1 })
    const grads = { w: tf.zeros([3]) }
    opt.step(grads, 0.01)
    // With g' = wd p the normalised first step is lr * sign(p) (up to eps), unlike AdamW's p * (1 - lr wd).
    expectClose(read(p.variable), p0.map((x) => x - (0.01 * 0.1 * x) / (Math.abs(0.1 * x) + 1e-8)))
    grads.w.dispose()
    opt.dispose()
  })
})

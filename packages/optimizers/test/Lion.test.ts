import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { lion } from "../src/index.js"
import { expectClose, gradients, param, parametersOf, problem, read, readState, run } from "./helpers.js"
import { referenceLion } from "./reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

describe("lion", () => {
  it("has the paper's defaults", () => {
    expect(lion([]).options).toEqual({ lr: 1e-4, betas: [0.9, 0.99], weightDecay: 0 })
  })

  it("matches the Float64 reference over 5 steps with weight decay", () => {
    const pb = problem(5, 7)
    const params = parametersOf(pb)
    const opt = lion([{ params }], { betas: [0.9, 0.99], weightDecay: 0.3 })
    const got = run(opt, params, pb)
    const state = readState(opt.stateDict())
    params.forEach((_, i) => {
      const ref = referenceLion(pb.initial[i]!, pb.grads.map((g) => g[i]!), pb.lrs, { beta1: 0.9, beta2: 0.99, weightDecay: 0.3 })
      // The sign must not be decided by rounding: every direction is far from 0.
      expect(ref.minAbsDirection).toBeGreaterThan(1e-4)
      ref.params.forEach((expected, s) => expectClose(got[s]![i]!, expected))
      expectClose(state[`p${i}/exp_avg`]!, ref.state.exp_avg!, 1e-6, 1e-7)
    })
    opt.dispose()
  })

  it("first step is p (1 - lr wd) - lr sign(g), with sign(0) = 0", () => {
    const p0 = [0.5, -0.25, 2, 1]
    const p = param("w", p0, [4])
    const opt = lion([{ params: [p] }], { weightDecay: 0.1 })
    const g = [0.3, -2, 0, 1e-6]
    const grads = gradients([p], [g])
    opt.step(grads, 0.01)
    expectClose(read(p.variable), p0.map((x, i) => x * (1 - 0.01 * 0.1) - 0.01 * Math.sign(g[i]!)))
    expectClose(readState(opt.stateDict())["w/exp_avg"]!, g.map((x) => 0.01 * x))
    grads["w"]!.dispose()
    opt.dispose()
  })
})

import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { ConfigError } from "@peftkit/core"
import { sgd } from "../src/index.js"
import { expectClose, gradients, param, parametersOf, problem, read, readState, run } from "./helpers.js"
import { referenceSgd } from "./reference.js"
import type { SgdReferenceOptions } from "./reference.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const check = (options: SgdReferenceOptions, seed: number) => {
  const pb = problem(5, seed)
  const params = parametersOf(pb)
  const opt = sgd([{ params }], options)
  const got = run(opt, params, pb)
  const state = readState(opt.stateDict())
  params.forEach((_, i) => {
    const ref = referenceSgd(pb.initial[i]!, pb.grads.map((g) => g[i]!), pb.lrs, options)
    ref.params.forEach((expected, s) => expectClose(got[s]![i]!, expected))
    if (options.momentum !== 0) expectClose(state[`p${i}/momentum_buffer`]!, ref.state.momentum_buffer!, 1e-6, 1e-7)
    expect(state[`p${i}/step`]).toEqual([5])
  })
  opt.dispose()
  return state
}

describe("sgd", () => {
  it("has PyTorch's defaults", () => {
    expect(sgd([]).options).toEqual({ lr: 1e-3, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0 })
  })

  it("plain SGD with weight decay matches the reference and keeps no momentum slot", () => {
    const state = check({ momentum: 0, dampening: 0, nesterov: false, weightDecay: 0.05 }, 4)
    expect(Object.keys(state).sort()).toEqual(["p0/step", "p1/step"])
  })

  it("momentum with dampening and weight decay matches the reference", () => {
    check({ momentum: 0.9, dampening: 0.3, nesterov: false, weightDecay: 0.01 }, 5)
  })

  it("Nesterov momentum matches the reference", () => {
    check({ momentum: 0.8, dampening: 0, nesterov: true, weightDecay: 0.02 }, 6)
  })

  it("starts the momentum buffer at the first direction itself (no dampening on step 1)", () => {
    const p = param("w", [1, -1, 0.5], [3])
    const opt = sgd([{ params: [p] }], { momentum: 0.9, dampening: 0.5 })
    const grads = gradients([p], [[0.2, 0.4, -0.6]])
    opt.step(grads, 0.1)
    const state = readState(opt.stateDict())
    expectClose(state["w/momentum_buffer"]!, [0.2, 0.4, -0.6])
    expectClose(read(p.variable), [1 - 0.02, -1 - 0.04, 0.5 + 0.06])
    // The buffer is the optimizer's own copy: the caller may dispose the gradient.
    grads["w"]!.dispose()
    const zero = { w: tf.zeros([3]) }
    opt.step(zero, 0.1)
    zero.w.dispose()
    expectClose(readState(opt.stateDict())["w/momentum_buffer"]!, [0.18, 0.36, -0.54])
    opt.dispose()
  })

  it("refuses Nesterov without momentum or with dampening, naming the field", () => {
    for (const options of [{ nesterov: true }, { nesterov: true, momentum: 0.9, dampening: 0.1 }]) {
      try {
        sgd([], options)
        expect.unreachable()
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError)
        expect((error as ConfigError).field).toBe("nesterov")
      }
    }
  })
})

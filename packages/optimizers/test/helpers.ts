/**
 * Test helpers: deterministic values, parameters, and closeness checks.
 */
import * as tf from "@tensorflow/tfjs-core"
import { expect } from "vitest"
import type { NamedGradients, Parameter } from "../../core/src/Parameter.js"

/** Deterministic pseudo-random numbers in [-1, 1) (a small LCG), never exactly 0. */
export const values = (n: number, seed: number): Array<number> => {
  let state = (seed * 2654435761) >>> 0
  const out: Array<number> = []
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    const x = state / 2 ** 32 * 2 - 1
    out.push(Math.abs(x) < 1e-3 ? 0.5 : x)
  }
  return out
}

export const param = (name: string, data: ReadonlyArray<number>, shape: Array<number>): Parameter => {
  const initial = tf.tensor(data as Array<number>, shape, "float32")
  const variable = tf.variable(initial, true)
  initial.dispose()
  return { name, variable }
}

/** Gradients from plain arrays, keyed by parameter name; the caller disposes them. */
export const gradients = (params: ReadonlyArray<Parameter>, data: ReadonlyArray<ReadonlyArray<number>>): Record<string, tf.Tensor> =>
  Object.fromEntries(params.map((p, i) => [p.name, tf.tensor(data[i] as Array<number>, p.variable.shape, "float32")]))

export const disposeAll = (tensors: NamedGradients): void => {
  for (const t of Object.values(tensors)) t.dispose()
}

export const read = (t: tf.Tensor): Array<number> => Array.from(t.dataSync())

/** |actual - expected| <= rtol * |expected| + atol, element-wise. */
export const expectClose = (actual: ArrayLike<number>, expected: ArrayLike<number>, rtol = 1e-6, atol = 1e-8): void => {
  expect(actual.length).toBe(expected.length)
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!
    const e = expected[i]!
    if (!(Math.abs(a - e) <= rtol * Math.abs(e) + atol)) {
      expect.fail(`entry ${i}: got ${a}, expected ${e} (rtol ${rtol}, atol ${atol})`)
    }
  }
}

/** Reads every tensor of a state dict and disposes it. */
export const readState = (state: Record<string, tf.Tensor>): Record<string, Array<number>> => {
  const out: Record<string, Array<number>> = {}
  for (const [key, t] of Object.entries(state)) {
    out[key] = read(t)
    t.dispose()
  }
  return out
}

export interface Problem {
  readonly shapes: ReadonlyArray<Array<number>>
  readonly initial: ReadonlyArray<ReadonlyArray<number>>
  /** grads[step][param] */
  readonly grads: ReadonlyArray<ReadonlyArray<ReadonlyArray<number>>>
  readonly lrs: ReadonlyArray<number>
}

const sizeOf = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)

/** Two parameters ([2, 3] and [4]), `steps` steps of deterministic gradients and a varying (scheduled) rate. */
export const problem = (steps: number, seed = 1, lrs = [0.1, 0.05, 0.02, 0.08, 0.03]): Problem => {
  const shapes = [[2, 3], [4]]
  return {
    shapes,
    initial: shapes.map((shape, i) => values(sizeOf(shape), seed * 100 + i)),
    grads: Array.from({ length: steps }, (_, s) => shapes.map((shape, i) => values(sizeOf(shape), seed * 1000 + s * 10 + i))),
    lrs: lrs.slice(0, steps)
  }
}

/** The parameters of `problem`, named `p0`, `p1`, .... */
export const parametersOf = (pb: Problem, prefix = "p"): Array<Parameter> =>
  pb.shapes.map((shape, i) => param(`${prefix}${i}`, pb.initial[i]!, shape))

/** Runs the problem's steps; returns each parameter's values after each step: out[step][param]. */
export const run = (
  optimizer: { step(grads: NamedGradients, lr: number): void },
  params: ReadonlyArray<Parameter>,
  pb: Problem
): Array<Array<Array<number>>> =>
  pb.grads.map((stepGrads, s) => {
    const grads = gradients(params, stepGrads)
    optimizer.step(grads, pb.lrs[s]!)
    disposeAll(grads)
    return params.map((p) => read(p.variable))
  })

import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { leanVariableGrads } from "../src/internal/leanGradients.js"
import "../src/internal/registerGradients.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** A custom gradient that passes dy straight through (the case where a gradient is another's tensor). */
const passThrough = tf.customGrad((x) => ({ value: tf.mul(x as tf.Tensor, 1), gradFunc: (dy: tf.Tensor) => dy }))

/** Many kinds of tape node: matmuls, broadcasting, a variable read twice, a frozen one, a custom gradient. */
let problems = 0
const makeProblem = () => {
  const id = problems++
  const w1 = tf.variable(tf.randomNormal([6, 5], 0, 1, "float32", 1), true, `lean${id}.w1`)
  const w2 = tf.variable(tf.randomNormal([5, 3], 0, 1, "float32", 2), true, `lean${id}.w2`)
  const bias = tf.variable(tf.randomNormal([3], 0, 1, "float32", 3), true, `lean${id}.bias`)
  const frozen = tf.variable(tf.randomNormal([6, 5], 0, 1, "float32", 4), false, `lean${id}.frozen`)
  const unused = tf.variable(tf.zeros([2]), true, `lean${id}.unused`)
  const x = tf.randomNormal([4, 6], 0, 1, "float32", 5)
  const loss = (): tf.Scalar =>
    tf.tidy(() => {
      const h = tf.tanh(tf.add(tf.matMul(x, w1), tf.matMul(x, frozen)))
      const through = passThrough(tf.mul(h, h)) as tf.Tensor2D
      const out = tf.add(tf.matMul(through, w2), bias)
      // w2 read a second time: its gradient is accumulated over two nodes.
      return tf.add(tf.mean(tf.square(out)), tf.sum(tf.square(w2)))
    })
  const variables = [w1, w2, bias, frozen, unused]
  return { loss, variables, dispose: () => [...variables, x].forEach((t) => t.dispose()) }
}

describe("leanVariableGrads", () => {
  it("gives tf.variableGrads' loss and gradients exactly, for the trainable variables only", () => {
    const problem = makeProblem()
    const reference = tf.variableGrads(problem.loss, problem.variables)
    const lean = leanVariableGrads(problem.loss, problem.variables)
    expect(lean.value.dataSync()[0]).toBe(reference.value.dataSync()[0])
    // tfjs names a frozen variable it was given with a null gradient; the lean walk leaves it out.
    expect(Object.entries(reference.grads).filter(([, grad]) => grad === null).map(([name]) => name)).toEqual(["lean0.frozen"])
    expect(Object.keys(lean.grads).sort()).toEqual(["bias", "w1", "w2"].map((n) => `lean0.${n}`))
    for (const [name, grad] of Object.entries(reference.grads)) {
      if (grad === null) continue
      expect(Array.from(lean.grads[name]!.dataSync())).toEqual(Array.from(grad.dataSync()))
    }
    tf.dispose([reference.value, lean.value, ...Object.values(reference.grads).filter((g): g is tf.Tensor => g !== null), ...Object.values(lean.grads)])
    problem.dispose()
  })

  it("leaves only the loss and the gradients alive, and a later step starts from a clean tape", () => {
    const problem = makeProblem()
    const before = tf.memory().numTensors
    for (let step = 0; step < 3; step++) {
      const { value, grads } = leanVariableGrads(problem.loss, problem.variables)
      expect(tf.memory().numTensors).toBe(before + 1 + Object.keys(grads).length)
      tf.dispose([value, ...Object.values(grads)])
      expect(tf.memory().numTensors).toBe(before)
    }
    problem.dispose()
  })

  it("frees saved tensors and intermediate gradients as the backward walks: at the first layer almost nothing is left", () => {
    const size = 1 << 16
    const vector = size * 4
    const w = tf.variable(tf.fill([size], 0.5), true, "lean.chain")
    const depth = 24
    // The first op of the chain is the last one the backward reaches; its gradient notes the memory held then.
    let heldAtFirstLayer = 0
    const probe = tf.customGrad((x) => ({
      value: tf.mul(x as tf.Tensor, 1),
      gradFunc: (dy: tf.Tensor) => {
        heldAtFirstLayer = tf.memory().numBytes
        return tf.mul(dy, 1)
      }
    }))
    const loss = (): tf.Scalar =>
      tf.tidy(() => {
        let h = probe(w) as tf.Tensor
        for (let i = 0; i < depth; i++) h = tf.sin(tf.mul(h, 1.01))
        return tf.sum(h)
      })
    const held = (grads: (f: () => tf.Scalar, variables: ReadonlyArray<tf.Variable>) => { value: tf.Scalar; grads: Record<string, tf.Tensor | null> }) => {
      const start = tf.memory().numBytes
      const { value, grads: named } = grads(loss, [w])
      tf.dispose([value, ...Object.values(named).filter((g): g is tf.Tensor => g !== null)])
      return (heldAtFirstLayer - start) / vector
    }
    const reference = held((f, vars) => tf.variableGrads(f, [...vars]))
    const lean = held(leanVariableGrads)
    // tfjs still holds what every layer saved and the gradient of every intermediate tensor.
    expect(reference).toBeGreaterThan(2 * depth)
    expect(lean).toBeLessThan(4)
    w.dispose()
  })

  it("falls back to tf.variableGrads inside another gradient computation", () => {
    const w = tf.variable(tf.scalar(2), true, "lean.nested")
    // d/dx of (the gradient of w^2 x at w), evaluated through the fallback.
    const outer = tf.grad((x: tf.Tensor) => {
      const { value, grads } = leanVariableGrads(() => tf.mul(tf.square(w), x) as tf.Scalar, [w])
      value.dispose()
      return grads["lean.nested"]!
    })
    const result = outer(tf.scalar(3))
    expect(result.dataSync()[0]).toBeCloseTo(4, 5)
    tf.dispose([result, w])
  })
})

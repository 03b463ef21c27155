import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { causalLmLoss } from "../src/CausalLmLoss.js"
import { Llama } from "../src/Llama.js"
import { Rope, type RopeAngles } from "../src/Rope.js"
import { tinyLlama } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** Every weight's gradient of a 2-layer Llama's loss, by name. */
const allGradients = (layout: "half" | "interleaved") => {
  const model = Llama.init(tinyLlama({ ropeLayout: layout, tieWordEmbeddings: false }), 3)
  model.setTrainable(true)
  const ids = tf.tensor2d(Array.from({ length: 2 * 12 }, (_, i) => (i * 7) % model.config.vocabSize), [2, 12], "int32")
  const mask = tf.ones([2, 12]) as tf.Tensor2D
  const names = new Map(model.parameters().map((p) => [p.variable.name, p.name]))
  const { value, grads } = tf.variableGrads(() => causalLmLoss(model.forward(ids, { training: true }), ids, mask), model.parameters().map((p) => p.variable))
  const out = new Map(Object.entries(grads).map(([name, grad]) => [names.get(name)!, grad!.dataSync().slice()]))
  const loss = value.dataSync()[0]!
  tf.dispose([value, ...Object.values(grads).filter((g): g is tf.Tensor => g !== null), ids, mask])
  model.dispose()
  return { out, loss }
}

describe("hand-written gradients in the model (SwiGLU, RoPE)", () => {
  for (const layout of ["half", "interleaved"] as const) {
    it(`${layout} RoPE: every weight's gradient equals tfjs's own differentiation of the plain formulas (1e-6 relative)`, () => {
      const custom = allGradients(layout)
      // The plain formulas, differentiated by tfjs itself, swapped in for the comparison.
      const mlp = Object.getOwnPropertyDescriptor(Llama.prototype, "mlp")!
      const apply = Object.getOwnPropertyDescriptor(Rope.prototype, "apply")!
      let plainCalls = 0
      type Layer = { gateProj: { apply(x: tf.Tensor, t: boolean): tf.Tensor }; upProj: { apply(x: tf.Tensor, t: boolean): tf.Tensor }; downProj: { apply(x: tf.Tensor, t: boolean): tf.Tensor } }
      Object.defineProperty(Llama.prototype, "mlp", {
        value(layer: Layer, x: tf.Tensor, training: boolean) {
          plainCalls++
          const gate = layer.gateProj.apply(x, training)
          return layer.downProj.apply(tf.mul(tf.mul(gate, tf.sigmoid(gate)), layer.upProj.apply(x, training)), training)
        }
      })
      Object.defineProperty(Rope.prototype, "apply", {
        value(this: Rope, x: tf.Tensor4D, angles: RopeAngles) {
          plainCalls++
          return tf.tidy(() => {
            const [b, h, t, d] = x.shape
            const pairs = this.layout === "half" ? tf.reshape(x, [b * h * t, 2, d / 2]) : tf.reshape(x, [b * h * t, d / 2, 2])
            const swapped = tf.reshape(tf.reverse(pairs, this.layout === "half" ? 1 : 2), [b, h, t, d])
            return tf.add(tf.mul(x, angles.cos), tf.mul(swapped, angles.sin))
          })
        }
      })
      let plain: ReturnType<typeof allGradients>
      try {
        plain = allGradients(layout)
      } finally {
        Object.defineProperty(Llama.prototype, "mlp", mlp)
        Object.defineProperty(Rope.prototype, "apply", apply)
      }
      // 2 layers: 2 MLPs and 4 rotations (q and k) ran the plain formulas.
      expect(plainCalls).toBe(6)
      expect(custom.loss).toBe(plain.loss)
      expect([...custom.out.keys()].sort()).toEqual([...plain.out.keys()].sort())
      for (const [name, grad] of custom.out) {
        const reference = plain.out.get(name)!
        const scale = Math.max(...Array.from(reference, Math.abs), 1e-12)
        const worst = Math.max(...Array.from(grad, (g, i) => Math.abs(g - reference[i]!)))
        expect(worst / scale, name).toBeLessThan(1e-6)
      }
    })
  }
})

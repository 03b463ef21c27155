/**
 * SwiGLU, Llama's MLP activation: silu(gate) * up, with silu(g) = g * sigmoid(g).
 *
 * Differentiated by hand so that a training step keeps only `gate` and `up` (the two projections'
 * outputs) for the backward, where tfjs's own differentiation of sigmoid, two products and their
 * inputs keeps five [tokens, intermediate] tensors a layer; the MLP's hidden activations are the
 * largest a layer has. The backward recomputes sigmoid(gate), an elementwise op, and frees its
 * temporaries as it goes. A backend may compute the whole op its own way (core's
 * `BackendOps.swiGlu`).
 */
import { backendOps } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { consume } from "./internal/consume.js"

const plainSwiGlu = tf.customGrad((gate, up, save) => {
  const g = gate as tf.Tensor
  const u = up as tf.Tensor
  ;(save as tf.GradSaveFunc)([g, u])
  return {
    value: tf.tidy(() => tf.mul(tf.mul(g, tf.sigmoid(g)), u)),
    gradFunc: (dy: tf.Tensor, saved: Array<tf.Tensor>) => {
      const [savedGate, savedUp] = saved as [tf.Tensor, tf.Tensor]
      // d silu / dg = s (1 + g (1 - s)) = s + silu (1 - s), with s = sigmoid(g).
      const s = tf.sigmoid(savedGate)
      const silu = tf.mul(savedGate, s)
      const dUp = tf.mul(dy, silu)
      // silu (1 - s) as silu - silu s: no scalar tensor for the 1, which nothing would free.
      const siluS = tf.mul(silu, s)
      const siluOneMinusS = consume(siluS, tf.sub(silu, siluS))
      const slope = consume([s, silu, siluOneMinusS], tf.add(s, siluOneMinusS))
      const dyUp = tf.mul(dy, savedUp)
      const dGate = consume([slope, dyUp], tf.mul(dyUp, slope))
      return [dGate, dUp]
    }
  }
})

/** silu(gate) * up, elementwise, differentiable in both; gate and up of one shape. */
export const swiGlu = (gate: tf.Tensor, up: tf.Tensor): tf.Tensor => {
  if (!tf.util.arraysEqual(gate.shape, up.shape)) throw new RangeError(`swiGlu needs gate and up of one shape, got [${gate.shape.join(", ")}] and [${up.shape.join(", ")}]`)
  return backendOps().swiGlu?.(gate, up) ?? plainSwiGlu(gate, up)
}

/**
 * The Adam update shared by `adam` (L2-coupled decay) and `adamw` (decoupled decay).
 */
import * as tf from "@tensorflow/tfjs-core"
import type { UpdateRule } from "../SlotOptimizer.js"

export type AdamSlot = "exp_avg" | "exp_avg_sq"

export const adamRule = (
  name: string,
  betas: readonly [number, number],
  eps: number,
  decay: "decoupled" | "l2"
): UpdateRule<AdamSlot> => {
  const [beta1, beta2] = betas
  return {
    name,
    slots: ["exp_avg", "exp_avg_sq"],
    update: (param, grad, state, { lr, weightDecay, step, scalar }) => {
      const g = decay === "l2" && weightDecay !== 0 ? tf.add(grad, tf.mul(param, scalar(weightDecay))) : grad
      const m = tf.add(tf.mul(state.exp_avg, scalar(beta1)), tf.mul(g, scalar(1 - beta1)))
      const v = tf.add(tf.mul(state.exp_avg_sq, scalar(beta2)), tf.mul(tf.square(g), scalar(1 - beta2)))
      // Bias corrections are JS numbers from the JS step counter: nothing is read back from the device.
      const stepSize = lr / (1 - beta1 ** step)
      const denom = tf.add(tf.div(tf.sqrt(v), scalar(Math.sqrt(1 - beta2 ** step))), scalar(eps))
      const decayFactor = decay === "decoupled" ? 1 - lr * weightDecay : 1
      const base = decayFactor === 1 ? param : tf.mul(param, scalar(decayFactor))
      return { param: tf.sub(base, tf.mul(tf.div(m, denom), scalar(stepSize))), state: { exp_avg: m, exp_avg_sq: v } }
    }
  }
}

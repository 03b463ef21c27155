/**
 * Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms"), as in the authors' and
 * lucidrains' `lion-pytorch` reference. Per parameter with learning rate lr:
 *
 *   c  <- b1 * m + (1 - b1) * g                          the update direction's interpolation
 *   p  <- p * (1 - lr * wd) - lr * sign(c)               decoupled weight decay, sign(0) = 0
 *   m  <- b2 * m + (1 - b2) * g                          slot `exp_avg`
 *
 * Defaults: lr 1e-4, betas [0.9, 0.99], weightDecay 0. Lion's updates have unit magnitude per
 * entry, so its learning rate is typically 3-10x smaller than AdamW's and its weight decay larger.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Schema } from "effect"
import { decodeConfigSync } from "@peftkit/core"
import type { ParameterGroup } from "@peftkit/core"
import { Betas, NonNegativeNumber } from "./internal/schema.js"
import { SlotOptimizer } from "./SlotOptimizer.js"
import type { UpdateRule } from "./SlotOptimizer.js"

/** Lion settings; every field is optional. `lr` is the default/peak rate (see `SlotOptimizer.lr`). */
export const LionOptions = Schema.Struct({
  lr: Schema.optional(NonNegativeNumber),
  betas: Schema.optional(Betas),
  weightDecay: Schema.optional(NonNegativeNumber)
})
export type LionOptions = typeof LionOptions.Encoded

/** `{ name: "lion", ...LionOptions }`, for `makeOptimizer`. */
export const LionConfig = Schema.Struct({ name: Schema.Literal("lion"), ...LionOptions.fields })
export type LionConfig = typeof LionConfig.Encoded

export interface ResolvedLionOptions {
  readonly lr: number
  readonly betas: readonly [number, number]
  readonly weightDecay: number
}

export const lionDefaults: ResolvedLionOptions = { lr: 1e-4, betas: [0.9, 0.99], weightDecay: 0 }

export type Lion = SlotOptimizer<ResolvedLionOptions>

const lionRule = ([beta1, beta2]: readonly [number, number]): UpdateRule<"exp_avg"> => ({
  name: "lion",
  slots: ["exp_avg"],
  update: (param, grad, state, { lr, weightDecay, scalar }) => {
    const direction = tf.sign(tf.add(tf.mul(state.exp_avg, scalar(beta1)), tf.mul(grad, scalar(1 - beta1))))
    const decayFactor = 1 - lr * weightDecay
    const base = decayFactor === 1 ? param : tf.mul(param, scalar(decayFactor))
    const m = tf.add(tf.mul(state.exp_avg, scalar(beta2)), tf.mul(grad, scalar(1 - beta2)))
    return { param: tf.sub(base, tf.mul(direction, scalar(lr))), state: { exp_avg: m } }
  }
})

/** A Lion optimizer over `groups`; throws `ConfigError` naming the field on a bad option. */
export const lion = (groups: ReadonlyArray<ParameterGroup>, options: LionOptions = {}): Lion => {
  const decoded = decodeConfigSync(LionOptions, options)
  const resolved: ResolvedLionOptions = {
    lr: decoded.lr ?? lionDefaults.lr,
    betas: decoded.betas ?? lionDefaults.betas,
    weightDecay: decoded.weightDecay ?? lionDefaults.weightDecay
  }
  return new SlotOptimizer(lionRule(resolved.betas), groups, resolved)
}

/**
 * AdamW (Loshchilov & Hutter), with PyTorch's `torch.optim.AdamW` semantics exactly. Per parameter,
 * at step t (counted from 1 since the last reset) with learning rate lr (scheduled x group lrScale):
 *
 *   p  <- p * (1 - lr * wd)                              decoupled weight decay
 *   m  <- b1 * m + (1 - b1) * g                          slot `exp_avg`
 *   v  <- b2 * v + (1 - b2) * g^2                        slot `exp_avg_sq`
 *   p  <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * Defaults: lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 0.01 (PyTorch's).
 */
import { Schema } from "effect"
import { decodeConfigSync } from "@peftkit/core"
import type { ParameterGroup } from "@peftkit/core"
import { adamRule } from "./internal/adam.js"
import { Betas, NonNegativeNumber, PositiveNumber } from "./internal/schema.js"
import { SlotOptimizer } from "./SlotOptimizer.js"

/** AdamW settings; every field is optional. `lr` is the default/peak rate (see `SlotOptimizer.lr`). */
export const AdamWOptions = Schema.Struct({
  lr: Schema.optional(NonNegativeNumber),
  betas: Schema.optional(Betas),
  eps: Schema.optional(PositiveNumber),
  weightDecay: Schema.optional(NonNegativeNumber)
})
export type AdamWOptions = typeof AdamWOptions.Encoded

/** `{ name: "adamw", ...AdamWOptions }`, for `makeOptimizer`. */
export const AdamWConfig = Schema.Struct({ name: Schema.Literal("adamw"), ...AdamWOptions.fields })
export type AdamWConfig = typeof AdamWConfig.Encoded

export interface ResolvedAdamWOptions {
  readonly lr: number
  readonly betas: readonly [number, number]
  readonly eps: number
  readonly weightDecay: number
}

export const adamwDefaults: ResolvedAdamWOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 }

export type AdamW = SlotOptimizer<ResolvedAdamWOptions>

/** An AdamW optimizer over `groups`; throws `ConfigError` naming the field on a bad option. */
export const adamw = (groups: ReadonlyArray<ParameterGroup>, options: AdamWOptions = {}): AdamW => {
  const decoded = decodeConfigSync(AdamWOptions, options)
  const resolved: ResolvedAdamWOptions = {
    lr: decoded.lr ?? adamwDefaults.lr,
    betas: decoded.betas ?? adamwDefaults.betas,
    eps: decoded.eps ?? adamwDefaults.eps,
    weightDecay: decoded.weightDecay ?? adamwDefaults.weightDecay
  }
  return new SlotOptimizer(adamRule("adamw", resolved.betas, resolved.eps, "decoupled"), groups, resolved)
}

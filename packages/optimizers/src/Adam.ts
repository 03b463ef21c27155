/**
 * Adam (Kingma & Ba) with L2-coupled weight decay, PyTorch's `torch.optim.Adam` semantics exactly.
 * Per parameter, at step t (from 1 since the last reset) with learning rate lr:
 *
 *   g  <- g + wd * p                                     L2 penalty folded into the gradient
 *   m  <- b1 * m + (1 - b1) * g                          slot `exp_avg`
 *   v  <- b2 * v + (1 - b2) * g^2                        slot `exp_avg_sq`
 *   p  <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * Defaults: lr 1e-3, betas [0.9, 0.999], eps 1e-8, weightDecay 0. Prefer `adamw` when decaying.
 */
import { Schema } from "effect"
import { decodeConfigSync } from "@peftkit/core"
import type { ParameterGroup } from "@peftkit/core"
import { adamRule } from "./internal/adam.js"
import { Betas, NonNegativeNumber, PositiveNumber } from "./internal/schema.js"
import { SlotOptimizer } from "./SlotOptimizer.js"

/** Adam settings; every field is optional. `lr` is the default/peak rate (see `SlotOptimizer.lr`). */
export const AdamOptions = Schema.Struct({
  lr: Schema.optional(NonNegativeNumber),
  betas: Schema.optional(Betas),
  eps: Schema.optional(PositiveNumber),
  weightDecay: Schema.optional(NonNegativeNumber)
})
export type AdamOptions = typeof AdamOptions.Encoded

/** `{ name: "adam", ...AdamOptions }`, for `makeOptimizer`. */
export const AdamConfig = Schema.Struct({ name: Schema.Literal("adam"), ...AdamOptions.fields })
export type AdamConfig = typeof AdamConfig.Encoded

export interface ResolvedAdamOptions {
  readonly lr: number
  readonly betas: readonly [number, number]
  readonly eps: number
  readonly weightDecay: number
}

export const adamDefaults: ResolvedAdamOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 }

export type Adam = SlotOptimizer<ResolvedAdamOptions>

/** An Adam optimizer over `groups`; throws `ConfigError` naming the field on a bad option. */
export const adam = (groups: ReadonlyArray<ParameterGroup>, options: AdamOptions = {}): Adam => {
  const decoded = decodeConfigSync(AdamOptions, options)
  const resolved: ResolvedAdamOptions = {
    lr: decoded.lr ?? adamDefaults.lr,
    betas: decoded.betas ?? adamDefaults.betas,
    eps: decoded.eps ?? adamDefaults.eps,
    weightDecay: decoded.weightDecay ?? adamDefaults.weightDecay
  }
  return new SlotOptimizer(adamRule("adam", resolved.betas, resolved.eps, "l2"), groups, resolved)
}

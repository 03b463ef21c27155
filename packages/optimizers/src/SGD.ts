/**
 * Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay,
 * PyTorch's `torch.optim.SGD` semantics exactly. Per parameter with learning rate lr:
 *
 *   d  <- g + wd * p
 *   if momentum != 0:
 *     buf <- d                                         on the first step since the last reset
 *     buf <- momentum * buf + (1 - dampening) * d      afterwards           (slot `momentum_buffer`)
 *     d   <- d + momentum * buf  if nesterov, else buf
 *   p  <- p - lr * d
 *
 * Defaults: lr 1e-3, momentum 0, dampening 0, nesterov false, weightDecay 0. Nesterov needs
 * momentum > 0 and dampening 0 (as in PyTorch). With momentum 0 there is no state slot.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Schema } from "effect"
import { decodeConfigSync, FiniteNumber } from "@peftkit/core"
import type { ParameterGroup } from "@peftkit/core"
import { NonNegativeNumber } from "./internal/schema.js"
import { SlotOptimizer } from "./SlotOptimizer.js"
import type { UpdateRule } from "./SlotOptimizer.js"

/** SGD settings; every field is optional. `lr` is the default/peak rate (see `SlotOptimizer.lr`). */
const sgdFields = {
  lr: Schema.optional(NonNegativeNumber),
  momentum: Schema.optional(NonNegativeNumber),
  dampening: Schema.optional(FiniteNumber),
  nesterov: Schema.optional(Schema.Boolean),
  weightDecay: Schema.optional(NonNegativeNumber)
}

// PyTorch refuses Nesterov without momentum or with dampening; so do we, naming the field.
const nesterovCheck = (options: { readonly momentum?: number | undefined; readonly dampening?: number | undefined; readonly nesterov?: boolean | undefined }) =>
  options.nesterov !== true || ((options.momentum ?? 0) > 0 && (options.dampening ?? 0) === 0)
    ? undefined
    : { path: ["nesterov"], message: "Nesterov momentum requires momentum > 0 and dampening 0" }

export const SgdOptions = Schema.Struct(sgdFields).pipe(Schema.filter(nesterovCheck))
export type SgdOptions = typeof SgdOptions.Encoded

/** `{ name: "sgd", ...SgdOptions }`, for `makeOptimizer`. */
export const SgdConfig = Schema.Struct({ name: Schema.Literal("sgd"), ...sgdFields }).pipe(Schema.filter(nesterovCheck))
export type SgdConfig = typeof SgdConfig.Encoded

export interface ResolvedSgdOptions {
  readonly lr: number
  readonly momentum: number
  readonly dampening: number
  readonly nesterov: boolean
  readonly weightDecay: number
}

export const sgdDefaults: ResolvedSgdOptions = { lr: 1e-3, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0 }

export type Sgd = SlotOptimizer<ResolvedSgdOptions>

const sgdRule = ({ momentum, dampening, nesterov }: ResolvedSgdOptions): UpdateRule<"momentum_buffer"> => ({
  name: "sgd",
  slots: momentum === 0 ? [] : ["momentum_buffer"],
  update: (param, grad, state, { lr, weightDecay, step, scalar }) => {
    let d = weightDecay === 0 ? grad : tf.add(grad, tf.mul(param, scalar(weightDecay)))
    if (momentum === 0) return { param: tf.sub(param, tf.mul(d, scalar(lr))), state }
    // PyTorch starts the buffer at the first direction itself (no dampening on that step).
    const buffer = step === 1 ? d : tf.add(tf.mul(state.momentum_buffer, scalar(momentum)), tf.mul(d, scalar(1 - dampening)))
    d = nesterov ? tf.add(d, tf.mul(buffer, scalar(momentum))) : buffer
    return { param: tf.sub(param, tf.mul(d, scalar(lr))), state: { momentum_buffer: buffer } }
  }
})

/** An SGD optimizer over `groups`; throws `ConfigError` naming the field on a bad option. */
export const sgd = (groups: ReadonlyArray<ParameterGroup>, options: SgdOptions = {}): Sgd => {
  const decoded = decodeConfigSync(SgdOptions, options)
  const resolved: ResolvedSgdOptions = {
    lr: decoded.lr ?? sgdDefaults.lr,
    momentum: decoded.momentum ?? sgdDefaults.momentum,
    dampening: decoded.dampening ?? sgdDefaults.dampening,
    nesterov: decoded.nesterov ?? sgdDefaults.nesterov,
    weightDecay: decoded.weightDecay ?? sgdDefaults.weightDecay
  }
  return new SlotOptimizer(sgdRule(resolved), groups, resolved)
}

/**
 * The machinery every optimizer in this package shares, public so a new optimizer is one
 * `UpdateRule` (a pure tensor function) away: parameter groups (`lrScale`, per-group `weightDecay`),
 * per-parameter state slots and step counters keyed by parameter name, `reset` (the COLA knot),
 * `prune` (ReLoRA), `stateDict`/`loadStateDict`, and the memory discipline of the core `Optimizer`
 * contract: `step` runs in one `tf.tidy`, replaces state tensors with kept new ones and disposes the
 * old, and reads nothing back from the device (bias corrections are computed in JS from the
 * per-parameter step counters, which are plain numbers).
 *
 * State is allocated eagerly (zeros) when a parameter joins, so `tf.memory().numTensors` is the
 * same before and after `step`, `reset`, `prune` and `loadStateDict`, and `stateDict` always lists
 * every parameter.
 */
import * as tf from "@tensorflow/tfjs-core"
import { ConfigError, InvalidCheckpoint, ShapeMismatch } from "@peftkit/core"
import type { NamedGradients, Optimizer, Parameter, ParameterGroup, PruneMode } from "@peftkit/core"
import { pruneTensor } from "./internal/prune.js"

/** What an update rule knows about the parameter it updates, for this step. */
export interface UpdateContext {
  /** The scheduled learning rate times the parameter group's `lrScale`. */
  readonly lr: number
  /** The group's `weightDecay`, or the optimizer's when the group sets none. */
  readonly weightDecay: number
  /** 1-based number of this update for this parameter since the last `reset` (drives bias correction). */
  readonly step: number
  /**
   * A float32 scalar for `value`, shared by every parameter in this `step` (one upload per distinct
   * constant per step instead of one per parameter per use). Owned by the step's `tf.tidy`.
   */
  readonly scalar: (value: number) => tf.Scalar
}

/**
 * One optimizer's math. `update` is called inside `tf.tidy` with the current parameter value, its
 * gradient and its state slots, and returns the new parameter value and the new slot values. It
 * must not read tensor data (`dataSync`, `data`, `array`) and must not dispose its inputs.
 */
export interface UpdateRule<Slot extends string = string> {
  /** e.g. "adamw". */
  readonly name: string
  /** State slot names, e.g. `["exp_avg", "exp_avg_sq"]`; each slot has the parameter's shape. */
  readonly slots: ReadonlyArray<Slot>
  readonly update: (
    param: tf.Tensor,
    grad: tf.Tensor,
    state: Readonly<Record<Slot, tf.Tensor>>,
    context: UpdateContext
  ) => { readonly param: tf.Tensor; readonly state: Readonly<Record<Slot, tf.Tensor>> }
}

/** Settings every optimizer has. */
export interface BaseOptions {
  /**
   * The default (peak) learning rate. `step` takes the rate to apply, because the training loop
   * schedules it; this value is what a caller schedules from when it has no other.
   */
  readonly lr: number
  /** Weight decay for groups that do not set their own. */
  readonly weightDecay: number
}

interface Entry {
  readonly param: Parameter
  readonly lrScale: number
  readonly weightDecay: number
}

interface ParamState {
  step: number
  readonly shape: ReadonlyArray<number>
  readonly slots: Record<string, tf.Tensor>
}

/** The key of a state slot (or `step`) in `stateDict`. */
export const stateKey = (paramName: string, slot: string): string => `${paramName}/${slot}`

const STATE_PATH = "optimizer state"

const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): boolean =>
  a.length === b.length && a.every((dim, i) => dim === b[i])

const hasOwn = (record: object, key: string): boolean => Object.prototype.hasOwnProperty.call(record, key)

/** Checks groups (finite non-negative `lrScale`/`weightDecay`, unique float32 parameters) and flattens them. */
const entriesOf = (groups: ReadonlyArray<ParameterGroup>, defaults: BaseOptions): Array<Entry> => {
  const seen = new Set<string>()
  const entries: Array<Entry> = []
  groups.forEach((group, g) => {
    const lrScale = group.lrScale ?? 1
    const weightDecay = group.weightDecay ?? defaults.weightDecay
    if (!Number.isFinite(lrScale) || lrScale < 0) {
      throw new ConfigError({ field: `groups.${g}.lrScale`, reason: "must be a non-negative finite number" })
    }
    if (!Number.isFinite(weightDecay) || weightDecay < 0) {
      throw new ConfigError({ field: `groups.${g}.weightDecay`, reason: "must be a non-negative finite number" })
    }
    group.params.forEach((param, p) => {
      if (seen.has(param.name)) {
        throw new ConfigError({ field: `groups.${g}.params.${p}`, reason: `parameter '${param.name}' appears more than once` })
      }
      if (param.variable.dtype !== "float32") {
        throw new ConfigError({
          field: `groups.${g}.params.${p}`,
          reason: `parameter '${param.name}' is ${param.variable.dtype}; optimizers update float32 variables`
        })
      }
      seen.add(param.name)
      entries.push({ param, lrScale, weightDecay })
    })
  })
  return entries
}

/**
 * An `Optimizer` driven by an `UpdateRule`. Build one with `fromUpdateRule` or the named
 * constructors (`adamw`, `adam`, `sgd`, `lion`, `makeOptimizer`).
 */
export class SlotOptimizer<Options extends BaseOptions = BaseOptions> implements Optimizer {
  readonly name: string
  private currentGroups: ReadonlyArray<ParameterGroup> = []
  private entries: Array<Entry> = []
  private readonly state = new Map<string, ParamState>()
  private disposed = false

  constructor(
    private readonly rule: UpdateRule,
    groups: ReadonlyArray<ParameterGroup>,
    /** The resolved settings (defaults filled in). */
    readonly options: Options
  ) {
    this.name = rule.name
    for (const field of ["lr", "weightDecay"] as const) {
      const value = options[field]
      if (!Number.isFinite(value) || value < 0) throw new ConfigError({ field, reason: "must be a non-negative finite number" })
    }
    this.setParameters(groups)
  }

  /** The default (peak) learning rate from the config; `step` applies the rate it is given. */
  get lr(): number {
    return this.options.lr
  }

  get groups(): ReadonlyArray<ParameterGroup> {
    return this.currentGroups
  }

  /** Steps taken by each parameter since its state was last reset (a copy). */
  steps(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [name, state] of this.state) out[name] = state.step
    return out
  }

  setParameters(groups: ReadonlyArray<ParameterGroup>): void {
    this.assertLive()
    const entries = entriesOf(groups, this.options)
    const keep = new Set(entries.map((entry) => entry.param.name))
    for (const [name, state] of this.state) {
      if (!keep.has(name)) {
        disposeSlots(state)
        this.state.delete(name)
      }
    }
    for (const { param } of entries) {
      const shape = param.variable.shape
      const existing = this.state.get(param.name)
      // Same name, same shape: the same parameter continuing. A new shape (a rank change) starts fresh.
      if (existing !== undefined && sameShape(existing.shape, shape)) continue
      if (existing !== undefined) disposeSlots(existing)
      this.state.set(param.name, this.freshState(shape))
    }
    this.entries = entries
    this.currentGroups = groups
  }

  step(grads: NamedGradients, lr: number): void {
    this.assertLive()
    if (!Number.isFinite(lr) || lr < 0) throw new RangeError(`learning rate must be a non-negative finite number, got ${lr}`)
    // Validate everything before touching anything, so a bad gradient leaves the model as it was.
    const work: Array<readonly [Entry, tf.Tensor]> = []
    for (const entry of this.entries) {
      if (!hasOwn(grads, entry.param.name)) continue
      const grad = grads[entry.param.name]!
      if (!sameShape(grad.shape, entry.param.variable.shape)) {
        throw new ShapeMismatch({ what: `gradient of '${entry.param.name}'`, expected: entry.param.variable.shape, actual: grad.shape })
      }
      work.push([entry, grad])
    }
    tf.tidy(() => {
      const scalars = new Map<number, tf.Scalar>()
      const scalar = (value: number): tf.Scalar => {
        let cached = scalars.get(value)
        if (cached === undefined) {
          cached = tf.scalar(value, "float32")
          scalars.set(value, cached)
        }
        return cached
      }
      for (const [entry, grad] of work) {
        const state = this.state.get(entry.param.name)!
        const variable = entry.param.variable
        const context: UpdateContext = { lr: lr * entry.lrScale, weightDecay: entry.weightDecay, step: state.step + 1, scalar }
        const result = this.rule.update(variable, grad, state.slots, context)
        const inputs = [variable, grad, ...Object.values(state.slots)]
        for (const slot of this.rule.slots) {
          const next = result.state[slot]
          const previous = state.slots[slot]!
          if (next === undefined) throw new Error(`update rule '${this.rule.name}' returned no '${slot}' state`)
          if (next === previous) continue
          // A rule may hand back one of its inputs (SGD's first momentum buffer is the gradient): own a copy.
          state.slots[slot] = tf.keep(inputs.includes(next) ? tf.clone(next) : next)
          previous.dispose()
        }
        if (result.param !== variable) variable.assign(result.param)
        state.step = context.step
      }
    })
  }

  reset(): void {
    this.assertLive()
    for (const state of this.state.values()) {
      for (const slot of this.rule.slots) {
        state.slots[slot]!.dispose()
        state.slots[slot] = tf.zeros(state.shape as Array<number>, "float32")
      }
      state.step = 0
    }
  }

  prune(fraction: number, mode: PruneMode, seed?: number): void {
    this.assertLive()
    if (!Number.isFinite(fraction) || fraction < 0 || fraction > 1) {
      throw new RangeError(`prune fraction must be in [0, 1], got ${fraction}`)
    }
    if (mode !== "magnitude" && mode !== "random") throw new RangeError(`prune mode must be "magnitude" or "random", got ${String(mode)}`)
    let index = 0
    for (const entry of this.entries) {
      const state = this.state.get(entry.param.name)!
      for (const slot of this.rule.slots) {
        const previous = state.slots[slot]!
        // Each tensor gets its own stream, so same-shaped tensors do not share a mask.
        const tensorSeed = seed === undefined ? undefined : seed + index
        index += 1
        state.slots[slot] = pruneTensor(previous, fraction, mode, tensorSeed)
        previous.dispose()
      }
    }
  }

  stateDict(): Record<string, tf.Tensor> {
    this.assertLive()
    const out: Record<string, tf.Tensor> = {}
    for (const { param } of this.entries) {
      const state = this.state.get(param.name)!
      for (const slot of this.rule.slots) out[stateKey(param.name, slot)] = tf.clone(state.slots[slot]!)
      out[stateKey(param.name, "step")] = tf.scalar(state.step, "int32")
    }
    return out
  }

  loadStateDict(input: Readonly<Record<string, tf.Tensor>>): void {
    this.assertLive()
    const expected = new Map<string, ReadonlyArray<number>>()
    for (const { param } of this.entries) {
      for (const slot of this.rule.slots) expected.set(stateKey(param.name, slot), param.variable.shape)
      expected.set(stateKey(param.name, "step"), [])
    }
    for (const key of Object.keys(input)) {
      if (!expected.has(key)) {
        throw new InvalidCheckpoint({ path: STATE_PATH, tensor: key, reason: `unexpected key for a ${this.name} optimizer over these parameters` })
      }
    }
    for (const [key, shape] of expected) {
      if (!hasOwn(input, key)) throw new InvalidCheckpoint({ path: STATE_PATH, tensor: key, reason: "missing" })
      const tensor = input[key]!
      if (!sameShape(tensor.shape, shape)) throw new ShapeMismatch({ what: `${STATE_PATH} '${key}'`, expected: shape, actual: tensor.shape })
      if (tensor.dtype !== "float32" && tensor.dtype !== "int32") {
        throw new InvalidCheckpoint({ path: STATE_PATH, tensor: key, reason: `dtype ${tensor.dtype}, expected float32 or int32` })
      }
    }
    // Read and check every step counter before changing anything: a bad checkpoint leaves the state intact.
    const steps = new Map<string, number>()
    for (const { param } of this.entries) {
      const key = stateKey(param.name, "step")
      const value = input[key]!.dataSync()[0]!
      if (!Number.isInteger(value) || value < 0) {
        throw new InvalidCheckpoint({ path: STATE_PATH, tensor: key, reason: `step must be a non-negative integer, got ${value}` })
      }
      steps.set(param.name, value)
    }
    for (const { param } of this.entries) {
      const state = this.state.get(param.name)!
      for (const slot of this.rule.slots) {
        const source = input[stateKey(param.name, slot)]!
        state.slots[slot]!.dispose()
        state.slots[slot] = source.dtype === "float32" ? tf.clone(source) : tf.cast(source, "float32")
      }
      state.step = steps.get(param.name)!
    }
  }

  dispose(): void {
    for (const state of this.state.values()) disposeSlots(state)
    this.state.clear()
    this.entries = []
    this.currentGroups = []
    this.disposed = true
  }

  private freshState(shape: ReadonlyArray<number>): ParamState {
    const slots: Record<string, tf.Tensor> = {}
    for (const slot of this.rule.slots) slots[slot] = tf.zeros(shape as Array<number>, "float32")
    return { step: 0, shape: [...shape], slots }
  }

  private assertLive(): void {
    if (this.disposed) throw new Error(`${this.name} optimizer used after dispose()`)
  }
}

const disposeSlots = (state: ParamState): void => {
  for (const tensor of Object.values(state.slots)) tensor.dispose()
}

/** An optimizer from an update rule: the extension point for optimizers this package does not ship. */
export const fromUpdateRule = <Slot extends string, Options extends BaseOptions>(
  rule: UpdateRule<Slot>,
  groups: ReadonlyArray<ParameterGroup>,
  options: Options
): SlotOptimizer<Options> => new SlotOptimizer(rule as unknown as UpdateRule, groups, options)

/**
 * The optimizer contract the training loop and the COLA chain rely on. Implementations live in
 * `@peftkit/optimizers`; anything that satisfies this interface plugs in.
 *
 * Rules every implementation keeps:
 * - `step` updates variables in place (`variable.assign`), reads no tensor data back to JS (no
 *   `dataSync`), and leaves `tf.memory().numTensors` unchanged (state tensors are replaced, the old
 *   ones disposed).
 * - After `reset()`, every state tensor is exactly zero and every step counter is 0 (the COLA knot).
 * - State is keyed by parameter name, so `stateDict`/`loadStateDict` round-trip across processes.
 */
import type * as tf from "@tensorflow/tfjs-core"
import type { NamedGradients, ParameterGroup } from "./Parameter.js"

export type PruneMode = "random" | "magnitude"

export interface Optimizer {
  /** e.g. "adamw". */
  readonly name: string
  /** The groups currently optimized. */
  readonly groups: ReadonlyArray<ParameterGroup>
  /**
   * Replaces the parameter set (a chain link with new factors, a rank change). State of parameters
   * that are no longer present is disposed; parameters seen for the first time start at zero state.
   */
  setParameters(groups: ReadonlyArray<ParameterGroup>): void
  /**
   * Applies one update with the scheduled learning rate `lr` (each group's `lrScale` multiplies it).
   * Parameters without a gradient in `grads` are left alone. Does not dispose `grads`.
   */
  step(grads: NamedGradients, lr: number): void
  /** Zeroes all state and step counters. */
  reset(): void
  /** Zeroes `fraction` of the entries of every state tensor, chosen at random or by smallest magnitude (ReLoRA). */
  prune(fraction: number, mode: PruneMode, seed?: number): void
  /** State tensors keyed `<parameter name>/<slot>` (plus step counters); copies the caller owns. */
  stateDict(): Record<string, tf.Tensor>
  /** Restores what `stateDict` produced; throws `ShapeMismatch` or `InvalidCheckpoint` on bad input. */
  loadStateDict(state: Readonly<Record<string, tf.Tensor>>): void
  /** Frees all state tensors. */
  dispose(): void
}

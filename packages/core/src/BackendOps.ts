/**
 * Ops a backend may compute faster than their plain-tfjs form: algorithms rather than kernels
 * (a kernel override is registered with tfjs itself). Library code calls `backendOps()` and uses
 * what it finds, else its plain form; it never asks which backend is active. A provider installs
 * its implementations with `registerBackendOps` when it loads, never on import.
 *
 * An implementation may answer `undefined` for inputs it does not handle; the caller then computes
 * the plain form. Packages add ops by augmenting the {@link BackendOps} interface.
 */
import * as tf from "@tensorflow/tfjs-core"

export interface BackendOps {
  /**
   * softmax(q k^T + bias) v with grouped-query attention: q [b, heads, t, d] (already scaled and
   * rotated), k and v [b, kvHeads, L, d], bias broadcastable to [b, heads, t, L] or undefined;
   * [b, heads, t, d], differentiable in q, k and v.
   */
  readonly attention?: (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D | undefined) => tf.Tensor4D | undefined
  /**
   * RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight, weight [d]; differentiable in
   * x and weight.
   */
  readonly rmsNorm?: (x: tf.Tensor, weight: tf.Tensor, eps: number) => tf.Tensor | undefined
  /** silu(gate) * up (Llama's MLP activation), gate and up of one shape; differentiable in both. */
  readonly swiGlu?: (gate: tf.Tensor, up: tf.Tensor) => tf.Tensor | undefined
  /**
   * Whether `error`, thrown by a kernel, means the backend ran out of memory: a sentence saying
   * what it holds and what to do (it becomes core's `BackendOutOfMemory`), or undefined.
   */
  readonly outOfMemory?: (error: unknown) => string | undefined
}

const byBackend = new Map<string, BackendOps>()

/** Installs `ops` for the tfjs backend `tfjsName` (merged over earlier ones); returns an undo. */
export const registerBackendOps = (tfjsName: string, ops: BackendOps): (() => void) => {
  const previous = byBackend.get(tfjsName)
  byBackend.set(tfjsName, { ...previous, ...ops })
  return () => {
    if (previous === undefined) byBackend.delete(tfjsName)
    else byBackend.set(tfjsName, previous)
  }
}

const none: BackendOps = {}

/** The ops installed for tfjs's active backend (none: use the plain forms). */
export const backendOps = (): BackendOps => byBackend.get(tf.getBackend()) ?? none

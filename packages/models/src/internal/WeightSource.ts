/**
 * Where a model's weights come from while it is being built: a checkpoint's tensors
 * (`fromWeights`) or a seeded random initialisation (`init`). Models ask for each tensor by its HF
 * name and shape; the source checks (or creates) it, and the model wraps it in a variable.
 */
import { InvalidCheckpoint, mixSeed, ShapeMismatch } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import type { FromWeightsOptions } from "../CausalLM.js"

/** How a tensor is initialised from scratch (HF `_init_weights`). */
export type WeightKind = "matrix" | "bias" | "norm-weight" | "norm-bias"

export interface WeightSource {
  /** The tensor named `name` with shape `shape`, as float32. */
  take(name: string, shape: ReadonlyArray<number>, kind: WeightKind): tf.Tensor
  /** Whether the source holds `name` (for optional tensors, e.g. a tied head stored anyway). */
  has(name: string): boolean
  /** Called once a tensor from `take` is wrapped in a variable: frees it when the source made it. */
  release(tensor: tf.Tensor): void
  /** Marks `name` as accounted for without using it (a tied head stored anyway). */
  ignore(name: string): void
  /** Throws on tensors the model never asked for (strict checkpoints). */
  finish(): void
}

/** Tensors that HF checkpoints may carry but that are derived, not learned. */
const IGNORED = /\.rotary_emb\.inv_freq$/

/**
 * A checkpoint's tensors. The caller keeps ownership: variables made from them share their buffers
 * (tfjs reference counting), so the caller may dispose the map right after and memory is not
 * doubled. Non-float32 tensors are cast into new tensors that this source owns and frees.
 */
export const checkpointSource = (weights: ReadonlyMap<string, tf.Tensor>, options: FromWeightsOptions = {}): WeightSource => {
  const path = options.path ?? "weights"
  const used = new Set<string>()
  const owned = new Set<tf.Tensor>()
  return {
    take(name, shape) {
      const tensor = weights.get(name)
      if (tensor === undefined) throw new InvalidCheckpoint({ path, reason: "missing tensor", tensor: name })
      if (tensor.isDisposed) throw new InvalidCheckpoint({ path, reason: "tensor is disposed", tensor: name })
      if (!tf.util.arraysEqual(tensor.shape, [...shape])) throw new ShapeMismatch({ what: name, expected: shape, actual: tensor.shape })
      used.add(name)
      if (tensor.dtype === "float32") return tensor
      const cast = tf.cast(tensor, "float32")
      owned.add(cast)
      return cast
    },
    has: (name) => weights.has(name),
    ignore: (name) => {
      used.add(name)
    },
    release(tensor) {
      if (owned.delete(tensor)) tensor.dispose()
    },
    finish() {
      if (options.strict === false) return
      for (const name of weights.keys()) {
        if (!used.has(name) && !IGNORED.test(name)) throw new InvalidCheckpoint({ path, reason: "unexpected tensor (not part of this architecture)", tensor: name })
      }
    }
  }
}

/**
 * HF-style random initialisation: matrices (linears, embeddings) normal(0, std), biases 0, norm
 * weights 1, norm biases 0. Each tensor's seed is mixed from `seed` and its position in build order,
 * so the same config and seed give the same model.
 */
export const randomSource = (seed: number, std = 0.02): WeightSource => {
  let index = 0
  return {
    take(_name, shape, kind) {
      const s = [...shape]
      index++
      switch (kind) {
        case "matrix":
          return tf.randomNormal(s, 0, std, "float32", mixSeed(seed, index))
        case "norm-weight":
          return tf.ones(s, "float32")
        case "bias":
        case "norm-bias":
          return tf.zeros(s, "float32")
      }
    },
    has: () => false,
    ignore: () => undefined,
    release: (tensor) => tensor.dispose(),
    finish: () => undefined
  }
}

/** A (frozen) float32 variable holding `tensor`'s data; `tensor` is released back to its source. */
export const variableFrom = (source: WeightSource, tensor: tf.Tensor): tf.Variable => {
  const variable = tf.variable(tensor, false)
  source.release(tensor)
  return variable
}

/**
 * What every checkpoint reader returns: the decoded config and float32 tfjs tensors under Hugging
 * Face names, exactly the set `hfWeightShapes(config)` lists (checked), plus what was skipped.
 */
import type { ConfigError, FileError, InvalidCheckpoint, InvalidSafetensors, ShapeMismatch } from "@peftkit/core"
import type * as tf from "@tensorflow/tfjs-core"
import type { ModelConfig } from "../ModelConfig.js"

export interface LoadedCheckpoint<C extends ModelConfig = ModelConfig> {
  readonly config: C
  /** HF name -> float32 tensor; the caller owns (and disposes) them, e.g. via `disposeWeights`. */
  readonly weights: Map<string, tf.Tensor>
  /** Tensors in the files that the architecture does not use, as named in the files (not loaded). RoPE `inv_freq` buffers are dropped without a mention. */
  readonly ignoredTensors: ReadonlyArray<string>
  /** Human-readable notes about what was ignored (one line each); empty for a clean checkpoint. */
  readonly warnings: ReadonlyArray<string>
  /** The safetensors dtypes the weights were stored in (e.g. ["BF16"]); ["F32"] for llama2.c. */
  readonly sourceDtypes: ReadonlyArray<string>
}

/** Everything loading a checkpoint can fail with. */
export type LoadCheckpointError = FileError | InvalidSafetensors | InvalidCheckpoint | ShapeMismatch | ConfigError

/** Disposes every tensor of a weights map and empties it. */
export const disposeWeights = (weights: Map<string, tf.Tensor>): void => {
  for (const tensor of weights.values()) tensor.dispose()
  weights.clear()
}

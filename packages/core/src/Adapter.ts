/**
 * The adapter-variant contract. A variant (LoRA, DoRA, ...) is a small value that creates an
 * `Adapter` for one linear layer; the adapter owns its variables and knows how to apply itself,
 * how to express itself as a weight update (`delta`, which is what merging and the COLA chain
 * need), and how its tensors are named in a PEFT state dict. A variant may carry a `PeftFormat`,
 * which is how it is saved to and loaded from Hugging Face PEFT's files.
 *
 * Write a new variant with `defineAdapter` (`DefineAdapter.ts`): declare its tensors and its math,
 * and the rest of these interfaces is derived. `@peftkit/lora` is the reference.
 */
import type * as tf from "@tensorflow/tfjs-core"
import type { Parameter, ParameterGroup } from "./Parameter.js"
import type { PeftFormat } from "./PeftFormat.js"
import type { TargetModules } from "./TargetModules.js"

/** What a variant may know about the layer it adapts. `weight` is [out, in], the PyTorch layout. */
export interface LinearTarget {
  readonly name: string
  readonly inFeatures: number
  readonly outFeatures: number
  readonly weight: tf.Tensor2D
  readonly bias: tf.Tensor1D | undefined
}

/** An update as factors: W <- rowScale (W + b a), row-wise; `rowScale` absent means 1 (delta = b a). */
export interface AdapterFactors {
  readonly a: tf.Tensor2D
  readonly b: tf.Tensor2D
  readonly rowScale?: tf.Tensor1D
}

export interface Adapter {
  /** Variant name, e.g. "lora". */
  readonly variant: string
  /** The adapted module's name, e.g. `model.layers.0.self_attn.q_proj`. */
  readonly moduleName: string
  /** Trainable parameters, named `<moduleName>.<suffix>` (e.g. `...q_proj.lora_A.weight`). */
  parameters(): ReadonlyArray<Parameter>
  /**
   * The layer output with the adapter applied. `x` is [n, in]; `base` is the frozen layer's own
   * output x W^T + b for the same rows. Called only while the adapter is enabled and unmerged.
   */
  forward(x: tf.Tensor2D, base: tf.Tensor2D, layer: LinearTarget, training: boolean): tf.Tensor2D
  /**
   * The weight update this adapter stands for, [out, in] float32: merging sets W <- W + delta.
   * Returns a new tensor the caller owns (and disposes).
   */
  delta(layer: LinearTarget): tf.Tensor2D
  /**
   * True when `delta` depends on the current base weight (DoRA-like variants): `Linear` then keeps
   * the merged delta so `unmerge` subtracts exactly what `merge` added.
   */
  readonly deltaDependsOnWeight?: boolean
  /**
   * Low-rank factors of the update, when the variant has them: merging sets
   * W <- rowScale (W + b a), row-wise (b [out, k], a [k, in], rowScale [out]; without `rowScale`,
   * delta = b a). DoRA's magnitude is such a row scale. The COLA chain uses them to export a whole
   * chain as one adapter by exact concatenation. New tensors the caller owns.
   */
  factors?(): AdapterFactors
  /**
   * Random-stream position (dropout), so a resumed run draws the same masks; restored with
   * `setRandomState`. Omit when the variant draws no random numbers after initialisation.
   */
  randomState?(): ReadonlyArray<number>
  setRandomState?(state: ReadonlyArray<number>): void
  /** Re-draws the adapter's initialisation in place (a new COLA link), from `seed`. */
  reinitialize(seed: number): void
  /** Tensors keyed by their suffix in a PEFT state dict (`lora_A.weight`); new tensors the caller owns. */
  stateDict(): Record<string, tf.Tensor>
  /** Loads tensors keyed like `stateDict`; throws `ShapeMismatch`/`InvalidCheckpoint` on bad input. */
  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>): void
  dispose(): void
}

/** What every variant's config says: which linear layers it adapts (PEFT's `target_modules` rules). */
export interface AdapterConfigBase {
  readonly targetModules: TargetModules
}

export interface AdapterVariant<Config> {
  /** e.g. "lora". */
  readonly name: string
  /** Creates the adapter for one layer; `seed` makes its initialisation reproducible. */
  create(target: LinearTarget, config: Config, seed: number): Adapter
  /** How it reads and writes PEFT's files; absent for variants PEFT has no format for. */
  readonly format?: PeftFormat<Config>
  /**
   * The tensors `create` would make for `target`, by state-dict key, with their shapes, without
   * allocating anything: loaders check a file against them before creating adapters.
   */
  readonly shapes?: (target: LinearTarget, config: Config) => Readonly<Record<string, ReadonlyArray<number>>>
  /**
   * How the adapters' parameters map to optimizer groups under `config` (LoRA+: B at a higher
   * learning rate); one group when absent. `AdapterSet.parameterGroups()` applies it.
   */
  readonly groups?: (params: ReadonlyArray<Parameter>, config: Config) => ReadonlyArray<ParameterGroup>
}

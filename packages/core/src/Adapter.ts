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

/**
 * An update as factors: W <- rowScale (W + b a), row-wise; `rowScale` absent means 1 (delta = b a).
 * For an adapter with an `initialDelta`, W is the weight before that was folded out of it.
 */
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
   * The update this adapter already stands for right after its (re-)initialisation, when that is not
   * zero (PiSSA: s B0 A0, the top-r SVD part of W), as factors: delta0 = b a. The hosting `Linear`
   * folds it out of W when it attaches the adapter and when it re-initialises it
   * (`Linear.reinitializeAdapter`), so the adapted output at init is the output before. With a fold,
   * `delta` is relative to the folded weight and `factors` to the weight before the fold. New
   * tensors the caller owns; absent or undefined means zero (LoRA, DoRA, VeRA).
   */
  initialDelta?(): AdapterFactors | undefined
  /**
   * Random-stream position (dropout), so a resumed run draws the same masks; restored with
   * `setRandomState`. Omit when the variant draws no random numbers after initialisation.
   */
  randomState?(): ReadonlyArray<number>
  setRandomState?(state: ReadonlyArray<number>): void
  /**
   * Re-draws the adapter's initialisation in place (a new COLA link), from `seed`. An adapter with an
   * `initialDelta` is re-initialised through its layer's `Linear.reinitializeAdapter`, which refolds it.
   */
  reinitialize(seed: number): void
  /** Tensors keyed by their suffix in a PEFT state dict (`lora_A.weight`); new tensors the caller owns. */
  stateDict(): Record<string, tf.Tensor>
  /**
   * Loads tensors keyed like `stateDict` (or by a key's alias, `AdapterVariant.keyAliases`); throws
   * `ShapeMismatch`/`InvalidCheckpoint` on bad input.
   */
  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>): void
  dispose(): void
}

/**
 * Tensors an adapter set holds once for all its layers (VeRA's frozen random projections `vera_A` /
 * `vera_B`): created once per set, saved and loaded once under their own top-level PEFT keys,
 * disposed once by the set, and handed to every adapter of the set.
 */
export interface SharedTensors {
  /** By the names the variant's math uses. */
  readonly tensors: Readonly<Record<string, tf.Variable>>
  /** The trainable ones, named by their file key. */
  parameters(): ReadonlyArray<Parameter>
  /** Keyed by their full key in the adapter file (`base_model.vera_A`); copies the caller owns. */
  stateDict(): Record<string, tf.Tensor>
  /** Loads tensors keyed like `stateDict`; checks every key and shape before assigning anything. */
  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>): void
  dispose(): void
}

/** A shared tensor's shape, and whether a file must hold it (false: its init rebuilds it exactly, and a file's copy is ignored). */
export interface SharedShape {
  readonly shape: ReadonlyArray<number>
  readonly fromFile: boolean
}

/** What an adapter set gives each adapter it creates, besides the layer. */
export interface AdapterContext {
  /** The set's shared tensors, for variants that declare some. */
  readonly shared?: SharedTensors
  /**
   * For each output row of the layer in the model's order, that row's index in the model's Hugging
   * Face form; absent when they agree. Per-layer tensors are permuted by the file reader and writer,
   * but a shared output-indexed tensor (VeRA's `vera_B`) is in file order and must be gathered.
   */
  readonly peftRows?: ReadonlyArray<number>
}

/** What every variant's config says: which linear layers it adapts (PEFT's `target_modules` rules). */
export interface AdapterConfigBase {
  readonly targetModules: TargetModules
}

export interface AdapterVariant<Config> {
  /** e.g. "lora". */
  readonly name: string
  /** Creates the adapter for one layer; `seed` makes its initialisation reproducible. */
  create(target: LinearTarget, config: Config, seed: number, context?: AdapterContext): Adapter
  /** Creates the tensors shared by all layers of a set on `targets`; absent when the variant has none. */
  readonly createShared?: (targets: ReadonlyArray<LinearTarget>, config: Config, seed: number) => SharedTensors
  /** The shared tensors by file key, without allocating (as `shapes` is for one layer). */
  readonly sharedShapes?: (targets: ReadonlyArray<LinearTarget>, config: Config) => Readonly<Record<string, SharedShape>>
  /** How it reads and writes PEFT's files; absent for variants PEFT has no format for. */
  readonly format?: PeftFormat<Config>
  /**
   * The tensors `create` would make for `target`, by state-dict key, with their shapes, without
   * allocating anything: loaders check a file against them before creating adapters.
   */
  readonly shapes?: (target: LinearTarget, config: Config) => Readonly<Record<string, ReadonlyArray<number>>>
  /**
   * Other spellings of state-dict keys that loading accepts, each mapped to the key it stands for
   * (PEFT's loader also reads DoRA's `lora_magnitude_vector.weight`); saving writes only the key.
   */
  readonly keyAliases?: (target: LinearTarget, config: Config) => Readonly<Record<string, string>>
  /**
   * How the adapters' parameters map to optimizer groups under `config` (LoRA+: B at a higher
   * learning rate); one group when absent. `AdapterSet.parameterGroups()` applies it.
   */
  readonly groups?: (params: ReadonlyArray<Parameter>, config: Config) => ReadonlyArray<ParameterGroup>
}

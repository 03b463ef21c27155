/**
 * `defineAdapter`: write an adapter variant by declaring its tensors and its math. A variant states
 * the tensors one layer's adapter holds (shape, initialisation, whether it trains, its key in a PEFT
 * state dict), its `forward` and its `delta` (the weight update it stands for: merging and the COLA
 * chain need it), optionally `factors` (a chain then exports exactly as one LoRA) and a PEFT
 * `format`. Everything else an `Adapter` must do is derived here: named parameters, `stateDict` /
 * `loadStateDict` with key and shape checks, re-initialisation for a new chain link, the dropout
 * random stream and its state, and disposal.
 *
 * The math is plain tfjs (`tf.matMul` and friends): backends install their fast paths as kernels,
 * so a variant never asks which backend runs it.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Adapter, AdapterFactors, AdapterVariant, LinearTarget } from "./Adapter.js"
import { InvalidCheckpoint, ShapeMismatch } from "./Errors.js"
import type { Parameter, ParameterGroup } from "./Parameter.js"
import type { PeftFormat } from "./PeftFormat.js"
import { mixSeed } from "./Seed.js"

/** Draws a tensor's initial value; `seed` differs per layer and per chain link. */
export type Initializer = (shape: ReadonlyArray<number>, seed: number) => tf.Tensor

/** One tensor of a layer's adapter. */
export interface TensorSpec {
  readonly shape: ReadonlyArray<number>
  readonly init: Initializer
  /** Trained by the optimizer (default true); a frozen tensor is still saved and re-drawn per link. */
  readonly trainable?: boolean
  /** Its key in a PEFT state dict, after the module name (e.g. `lora_A.weight`). */
  readonly key: string
}

/** The tensors of one layer's adapter, by the names the variant's math uses. */
export type TensorValues<Names extends string> = { readonly [K in Names]: tf.Variable }

/** What `forward`, `delta` and `factors` see. */
export interface AdapterScope<Config, Names extends string> {
  readonly tensors: TensorValues<Names>
  readonly config: Config
  readonly layer: LinearTarget
}

export interface ForwardScope<Config, Names extends string> extends AdapterScope<Config, Names> {
  /** The layer input, [n, in]. */
  readonly x: tf.Tensor2D
  /** The frozen layer's own output x W^T + b, [n, out]. */
  readonly base: tf.Tensor2D
  readonly training: boolean
  /** Inverted dropout at `rate` while training (identity otherwise), from the adapter's resumable stream. */
  readonly dropout: (x: tf.Tensor2D, rate: number) => tf.Tensor2D
}

export interface AdapterDefinition<Config, Names extends string> {
  /** The variant's name ("lora", "dora", ...). */
  readonly name: string
  readonly tensors: (layer: LinearTarget, config: Config) => { readonly [K in Names]: TensorSpec }
  /** The adapted output, [n, out]. Runs inside `tf.tidy`. */
  readonly forward: (scope: ForwardScope<Config, Names>) => tf.Tensor
  /** The weight update, [out, in] float32: merging sets W <- W + delta (shape checked there). Runs inside `tf.tidy`. */
  readonly delta: (scope: AdapterScope<Config, Names>) => tf.Tensor
  /**
   * Low-rank factors, when the variant has them: merging sets W <- rowScale (W + b a) row-wise
   * (b [out, k], a [k, in], rowScale [out]; without rowScale, delta = b a). Runs inside `tf.tidy`.
   */
  readonly factors?: (scope: AdapterScope<Config, Names>) => { readonly a: tf.Tensor; readonly b: tf.Tensor; readonly rowScale?: tf.Tensor }
  /** Set when `delta` depends on the current base weight (DoRA-like). */
  readonly deltaDependsOnWeight?: boolean
  /** How the variant reads and writes Hugging Face PEFT's files; without it, saving as PEFT is a typed error. */
  readonly format?: PeftFormat<Config>
  /** Optimizer groups for the adapters' parameters under `config` (LoRA+); one group when absent. */
  readonly groups?: (params: ReadonlyArray<Parameter>, config: Config) => ReadonlyArray<ParameterGroup>
}

/** Initialisers that match PyTorch/PEFT's defaults. */
export const init = {
  zeros: ((shape) => tf.zeros(shape as Array<number>)) as Initializer,
  /**
   * PyTorch's `kaiming_uniform_(a=sqrt(5))` on a [rows, fan_in] weight (nn.Linear's and LoRA A's
   * default): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in).
   */
  kaimingUniform: ((shape, seed) => {
    const bound = 1 / Math.sqrt(shape[shape.length - 1]!)
    return tf.randomUniform(shape as Array<number>, -bound, bound, "float32", seed)
  }) as Initializer,
  normal: (std: number): Initializer => (shape, seed) => tf.randomNormal(shape as Array<number>, 0, std, "float32", seed),
  constant: (value: number): Initializer => (shape) => tf.fill(shape as Array<number>, value)
} as const

/**
 * The first declared tensor draws from the layer's seed itself, later ones from seeds derived from
 * it. tfjs reads a seed of 0 as "unseeded" (Math.random), so 0 is never passed on.
 */
const tensorSeed = (seed: number, index: number): number => (index === 0 && seed !== 0 ? seed : mixSeed(seed, index))

/** Builds a full `AdapterVariant` from a definition. */
export const defineAdapter = <Config, Names extends string>(definition: AdapterDefinition<Config, Names>): AdapterVariant<Config> => ({
  name: definition.name,
  ...(definition.format === undefined ? {} : { format: definition.format }),
  ...(definition.groups === undefined ? {} : { groups: definition.groups }),
  shapes: (layer, config) => Object.fromEntries(Object.values<TensorSpec>(definition.tensors(layer, config)).map((spec) => [spec.key, spec.shape])),
  create: (layer, config, seed) => new DefinedAdapter(definition, layer, config, seed)
})

/** The adapter `defineAdapter` builds; `tensors` and `config` are there for inspection and tests. */
export class DefinedAdapter<Config, Names extends string> implements Adapter {
  readonly variant: string
  readonly moduleName: string
  readonly deltaDependsOnWeight: boolean
  readonly factors?: () => AdapterFactors
  private readonly specs: ReadonlyArray<readonly [Names, TensorSpec]>
  /** The adapter's tensors, by the names its definition gave them. */
  readonly tensors: TensorValues<Names>
  private readonly params: ReadonlyArray<Parameter>
  private seed: number
  private dropoutCalls = 0

  constructor(
    private readonly definition: AdapterDefinition<Config, Names>,
    layer: LinearTarget,
    readonly config: Config,
    seed: number
  ) {
    this.variant = definition.name
    this.moduleName = layer.name
    this.deltaDependsOnWeight = definition.deltaDependsOnWeight === true
    this.seed = seed
    this.specs = Object.entries(definition.tensors(layer, config)) as Array<[Names, TensorSpec]>
    const values: Partial<Record<Names, tf.Variable>> = {}
    this.specs.forEach(([name, spec], index) => {
      // tf.variable keeps its own reference to the data: free the initial tensor.
      const initial = spec.init(spec.shape, tensorSeed(seed, index))
      values[name] = tf.variable(initial, spec.trainable !== false, undefined, "float32")
      initial.dispose()
    })
    this.tensors = values as TensorValues<Names>
    this.params = this.specs.filter(([, spec]) => spec.trainable !== false).map(([name, spec]) => ({ name: `${layer.name}.${spec.key}`, variable: this.tensors[name] }))
    const factors = definition.factors
    if (factors !== undefined) {
      this.factors = () =>
        tf.tidy(() => {
          const { a, b, rowScale } = factors(this.scope(layer))
          // A factor returned as is (a variable) must be copied: the caller owns and disposes it.
          const owned = (t: tf.Tensor) => (t === this.tensorsOf(t) ? t.clone() : t)
          return {
            a: owned(a) as tf.Tensor2D,
            b: owned(b) as tf.Tensor2D,
            ...(rowScale === undefined ? {} : { rowScale: owned(rowScale) as tf.Tensor1D })
          }
        })
    }
  }

  private tensorsOf(tensor: tf.Tensor): tf.Tensor | undefined {
    return Object.values<tf.Variable>(this.tensors).find((variable) => variable === tensor)
  }

  private scope(layer: LinearTarget): AdapterScope<Config, Names> {
    return { tensors: this.tensors, config: this.config, layer }
  }

  parameters(): ReadonlyArray<Parameter> {
    return this.params
  }

  forward(x: tf.Tensor2D, base: tf.Tensor2D, layer: LinearTarget, training: boolean): tf.Tensor2D {
    const dropout = (input: tf.Tensor2D, rate: number): tf.Tensor2D =>
      training && rate > 0 ? (tf.dropout(input, rate, undefined, mixSeed(this.seed, ++this.dropoutCalls)) as tf.Tensor2D) : input
    return tf.tidy(() => this.definition.forward({ ...this.scope(layer), x, base, training, dropout }) as tf.Tensor2D)
  }

  delta(layer: LinearTarget): tf.Tensor2D {
    return tf.tidy(() => this.definition.delta(this.scope(layer)) as tf.Tensor2D)
  }

  randomState(): ReadonlyArray<number> {
    return [this.seed, this.dropoutCalls]
  }

  setRandomState(state: ReadonlyArray<number>): void {
    this.seed = state[0] ?? this.seed
    this.dropoutCalls = state[1] ?? 0
  }

  reinitialize(seed: number): void {
    this.seed = seed
    this.dropoutCalls = 0
    tf.tidy(() => this.specs.forEach(([name, spec], index) => this.tensors[name].assign(spec.init(spec.shape, tensorSeed(seed, index)))))
  }

  stateDict(): Record<string, tf.Tensor> {
    return Object.fromEntries(this.specs.map(([name, spec]) => [spec.key, this.tensors[name].clone()]))
  }

  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>): void {
    const byKey = new Map(this.specs.map(([name, spec]) => [spec.key, this.tensors[name]]))
    for (const key of Object.keys(tensors)) {
      if (!byKey.has(key)) throw new InvalidCheckpoint({ path: this.moduleName, tensor: key, reason: `unexpected tensor for a ${this.variant} adapter (expected ${[...byKey.keys()].join(", ")})` })
    }
    // All checked before anything is assigned, so a bad file leaves the adapter as it was.
    for (const [key, variable] of byKey) {
      const tensor = tensors[key]
      if (tensor === undefined) throw new InvalidCheckpoint({ path: this.moduleName, tensor: key, reason: "missing" })
      if (!tf.util.arraysEqual(tensor.shape, variable.shape)) throw new ShapeMismatch({ what: `${this.moduleName}.${key}`, expected: variable.shape, actual: tensor.shape })
    }
    tf.tidy(() => {
      for (const [key, variable] of byKey) variable.assign(tf.cast(tensors[key]!, "float32"))
    })
  }

  dispose(): void {
    for (const [name] of this.specs) this.tensors[name].dispose()
  }
}

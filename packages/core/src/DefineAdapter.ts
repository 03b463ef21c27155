/**
 * `defineAdapter`: write an adapter variant by declaring its tensors and its math. A variant states
 * the tensors one layer's adapter holds (shape, initialisation, whether it trains, its key in a PEFT
 * state dict), its `forward` and its `delta` (the weight update it stands for: merging and the COLA
 * chain need it), optionally `factors` (a chain then exports exactly as one LoRA) and a PEFT
 * `format`. Everything else an `Adapter` must do is derived here: named parameters, `stateDict` /
 * `loadStateDict` with key and shape checks, re-initialisation for a new chain link, the dropout
 * random stream and its state, and disposal.
 *
 * A variant may also declare `shared` tensors, held once by the adapter set for all its layers (VeRA's
 * frozen random projections): they get their own top-level keys in PEFT's file, are saved, loaded and
 * disposed once, and reach `forward` / `delta` / `factors` as `scope.shared`.
 *
 * A variant whose fresh adapter already stands for an update (PiSSA: A and B from W's top-r SVD)
 * declares it as `initialDelta`: the hosting `Linear` folds it out of W (see `Linear.ts`), the
 * adapter keeps the tensors' initial values (`scope.initial`), and `fileTensors` / `fromFile` may
 * write the file in another form than the tensors (PiSSA's conversion to a plain LoRA of rank 2r).
 *
 * The math is plain tfjs (`tf.matMul` and friends): backends install their fast paths as kernels,
 * so a variant never asks which backend runs it.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Adapter, AdapterContext, AdapterFactors, AdapterVariant, LinearTarget, SharedTensors } from "./Adapter.js"
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
  /** Other spellings of `key` that loading accepts (PEFT's loader reads `lora_magnitude_vector.weight` too); saving writes `key`. */
  readonly aliases?: ReadonlyArray<string>
}

/**
 * One tensor shared by all layers of an adapter set. `key` is its full key in the adapter file
 * (`base_model.vera_A`), not one under a module; it is re-drawn only with a new set, never per link,
 * and always saved.
 */
export interface SharedTensorSpec extends TensorSpec {
  /**
   * False when `init` rebuilds the tensor a file would hold exactly (VeRA's projections with
   * `save_projection: false`): loading then neither needs nor reads it. Default true.
   */
  readonly fromFile?: boolean
}

/** The tensors of one layer's adapter, by the names the variant's math uses. */
export type TensorValues<Names extends string> = { readonly [K in Names]: tf.Variable }

/** What `forward`, `delta` and `factors` see. */
export interface AdapterScope<Config, Names extends string, Shared extends string = never> {
  readonly tensors: TensorValues<Names>
  /**
   * The tensors' values at the last (re-)initialisation, kept only for variants with an
   * `initialDelta` that is not zero (PiSSA's A0, B0); undefined otherwise.
   */
  readonly initial: { readonly [K in Names]: tf.Tensor } | undefined
  /** The set's shared tensors (whole, e.g. [r, max in]: a variant slices what its layer needs). */
  readonly shared: TensorValues<Shared>
  /**
   * Set only for variants with shared tensors, on a layer whose rows the model keeps in another order
   * than its Hugging Face form: int32 [out], the HF row of each model row (`AdapterContext.peftRows`).
   * Gather shared output-indexed tensors with it; per-layer tensors are already in model order.
   */
  readonly peftRows: tf.Tensor1D | undefined
  readonly config: Config
  readonly layer: LinearTarget
}

export interface ForwardScope<Config, Names extends string, Shared extends string = never> extends AdapterScope<Config, Names, Shared> {
  /** The layer input, [n, in]. */
  readonly x: tf.Tensor2D
  /** The frozen layer's own output x W^T + b, [n, out]. */
  readonly base: tf.Tensor2D
  readonly training: boolean
  /** Inverted dropout at `rate` while training (identity otherwise), from the adapter's resumable stream. */
  readonly dropout: (x: tf.Tensor2D, rate: number) => tf.Tensor2D
}

export interface AdapterDefinition<Config, Names extends string, Shared extends string = never> {
  /** The variant's name ("lora", "dora", ...). */
  readonly name: string
  readonly tensors: (layer: LinearTarget, config: Config) => { readonly [K in Names]: TensorSpec }
  /** Tensors the set holds once for all its `layers` (the adapted ones); absent for most variants. */
  readonly shared?: (layers: ReadonlyArray<LinearTarget>, config: Config) => { readonly [K in Shared]: SharedTensorSpec }
  /** The adapted output, [n, out]. Runs inside `tf.tidy`. */
  readonly forward: (scope: ForwardScope<Config, Names, Shared>) => tf.Tensor
  /** The weight update, [out, in] float32: merging sets W <- W + delta (shape checked there). Runs inside `tf.tidy`. */
  readonly delta: (scope: AdapterScope<Config, Names, Shared>) => tf.Tensor
  /**
   * Low-rank factors, when the variant has them: merging sets W <- rowScale (W + b a) row-wise
   * (b [out, k], a [k, in], rowScale [out]; without rowScale, delta = b a). Runs inside `tf.tidy`.
   */
  readonly factors?: (scope: AdapterScope<Config, Names, Shared>) => { readonly a: tf.Tensor; readonly b: tf.Tensor; readonly rowScale?: tf.Tensor }
  /** Set when `delta` depends on the current base weight (DoRA-like). */
  readonly deltaDependsOnWeight?: boolean
  /**
   * Draws several tensors together (PiSSA's A and B come from one SVD of `layer.weight`), at
   * creation and at every re-initialisation; tensors it leaves out draw from their spec's `init`.
   * Runs inside `tf.tidy`.
   */
  readonly initialize?: (layer: LinearTarget, config: Config, seed: number) => { readonly [K in Names]?: tf.Tensor }
  /**
   * The update a freshly (re-)initialised adapter already stands for, as factors (delta0 = b a), or
   * undefined when it is zero under this config (PiSSA: s B0 A0). The hosting `Linear` folds it out
   * of W (`Adapter.initialDelta`); `delta` is then relative to the folded weight and `factors` to
   * the weight before. `scope.initial` holds the values it was computed from. Runs inside `tf.tidy`.
   */
  readonly initialDelta?: (scope: AdapterScope<Config, Names, Shared>) => { readonly a: tf.Tensor; readonly b: tf.Tensor } | undefined
  /**
   * The state dict as the variant's file holds it, keyed by state-dict key, when that is not the
   * tensors themselves (PiSSA writes B A - B0 A0 as one plain LoRA of rank 2r); undefined: the
   * tensors. Runs inside `tf.tidy`.
   */
  readonly fileTensors?: (scope: AdapterScope<Config, Names, Shared>) => Readonly<Record<string, tf.Tensor>> | undefined
  /**
   * Reads `fileTensors`' form (or a file's) back into tensors keyed like the specs, before the key
   * and shape checks; undefined: as given. May throw `InvalidCheckpoint`. Runs inside `tf.tidy`.
   */
  readonly fromFile?: (tensors: Readonly<Record<string, tf.Tensor>>, scope: AdapterScope<Config, Names, Shared>) => Readonly<Record<string, tf.Tensor>> | undefined
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

const shapesByKey = (specs: Readonly<Record<string, TensorSpec>>) => Object.fromEntries(Object.values<TensorSpec>(specs).map((spec) => [spec.key, spec.shape]))

const aliasesOf = (specs: Readonly<Record<string, TensorSpec>>): Record<string, string> =>
  Object.fromEntries(Object.values<TensorSpec>(specs).flatMap((spec) => (spec.aliases ?? []).map((alias) => [alias, spec.key] as const)))

/**
 * `tensors` with every alias renamed to the key it stands for; an alias given beside its key is an
 * `InvalidCheckpoint` (two values for one tensor).
 */
export const resolveKeyAliases = <T>(tensors: Readonly<Record<string, T>>, aliases: Readonly<Record<string, string>>, path: string): Record<string, T> => {
  const out: Record<string, T> = {}
  for (const [key, value] of Object.entries(tensors)) {
    const canonical = aliases[key] ?? key
    if (canonical !== key && canonical in tensors) throw new InvalidCheckpoint({ path, tensor: key, reason: `an alias of ${canonical}, which is given too` })
    if (canonical in out) throw new InvalidCheckpoint({ path, tensor: key, reason: `another alias of ${canonical} is given too` })
    out[canonical] = value
  }
  return out
}

/** Builds a full `AdapterVariant` from a definition. */
export const defineAdapter = <Config, Names extends string, Shared extends string = never>(definition: AdapterDefinition<Config, Names, Shared>): AdapterVariant<Config> => {
  const shared = definition.shared
  return {
    name: definition.name,
    ...(definition.format === undefined ? {} : { format: definition.format }),
    ...(definition.groups === undefined ? {} : { groups: definition.groups }),
    shapes: (layer, config) => shapesByKey(definition.tensors(layer, config)),
    keyAliases: (layer, config) => aliasesOf(definition.tensors(layer, config)),
    ...(shared === undefined
      ? {}
      : {
        sharedShapes: (layers, config) =>
          Object.fromEntries(Object.values<SharedTensorSpec>(shared(layers, config)).map((spec) => [spec.key, { shape: spec.shape, fromFile: spec.fromFile !== false }])),
        createShared: (layers, config, seed) => new DefinedSharedTensors(shared(layers, config), seed)
      }),
    create: (layer, config, seed, context) => new DefinedAdapter(definition, layer, config, seed, context)
  }
}

/** The shared tensors `defineAdapter` builds for a variant that declares some. */
export class DefinedSharedTensors<Shared extends string> implements SharedTensors {
  readonly tensors: TensorValues<Shared>
  private readonly specs: ReadonlyArray<readonly [Shared, SharedTensorSpec]>
  private disposed = false

  constructor(specs: { readonly [K in Shared]: SharedTensorSpec }, seed: number) {
    this.specs = Object.entries(specs) as Array<[Shared, SharedTensorSpec]>
    const values: Partial<Record<Shared, tf.Variable>> = {}
    this.specs.forEach(([name, spec], index) => {
      // Seeds of their own, apart from the per-layer streams (0x5a4ed: "shared").
      const initial = spec.init(spec.shape, mixSeed(seed, 0x5a4ed, index))
      values[name] = tf.variable(initial, spec.trainable !== false, undefined, "float32")
      initial.dispose()
    })
    this.tensors = values as TensorValues<Shared>
  }

  parameters(): ReadonlyArray<Parameter> {
    return this.specs.filter(([, spec]) => spec.trainable !== false).map(([name, spec]) => ({ name: spec.key, variable: this.tensors[name] }))
  }

  stateDict(): Record<string, tf.Tensor> {
    return Object.fromEntries(this.specs.map(([name, spec]) => [spec.key, this.tensors[name].clone()]))
  }

  /** Loads the tensors a file holds (`fromFile`); copies of rebuilt ones are ignored, as PEFT ignores them. */
  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>): void {
    const fromFile = this.specs.filter(([, spec]) => spec.fromFile !== false)
    const rebuilt = new Set(this.specs.filter(([, spec]) => spec.fromFile === false).map(([, spec]) => spec.key))
    const given = Object.fromEntries(Object.entries(tensors).filter(([key]) => !rebuilt.has(key)))
    loadChecked(new Map(fromFile.map(([name, spec]) => [spec.key, this.tensors[name]])), given, "shared tensors", "the adapter set's shared tensors", (key) => key)
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    for (const [name] of this.specs) this.tensors[name].dispose()
  }
}

/** Checks keys and shapes of `tensors` against `byKey`, then assigns them all (a bad input changes nothing). */
const loadChecked = (
  byKey: ReadonlyMap<string, tf.Variable>,
  tensors: Readonly<Record<string, tf.Tensor>>,
  path: string,
  owner: string,
  what: (key: string) => string = (key) => `${path}.${key}`
): void => {
  for (const key of Object.keys(tensors)) {
    if (!byKey.has(key)) throw new InvalidCheckpoint({ path, tensor: key, reason: `unexpected tensor for ${owner} (expected ${[...byKey.keys()].join(", ")})` })
  }
  for (const [key, variable] of byKey) {
    const tensor = tensors[key]
    if (tensor === undefined) throw new InvalidCheckpoint({ path, tensor: key, reason: "missing" })
    if (!tf.util.arraysEqual(tensor.shape, variable.shape)) throw new ShapeMismatch({ what: what(key), expected: variable.shape, actual: tensor.shape })
  }
  tf.tidy(() => {
    for (const [key, variable] of byKey) variable.assign(tf.cast(tensors[key]!, "float32"))
  })
}

/** The adapter `defineAdapter` builds; `tensors` and `config` are there for inspection and tests. */
export class DefinedAdapter<Config, Names extends string, Shared extends string = never> implements Adapter {
  readonly variant: string
  readonly moduleName: string
  readonly deltaDependsOnWeight: boolean
  readonly factors?: () => AdapterFactors
  private readonly specs: ReadonlyArray<readonly [Names, TensorSpec]>
  /** The adapter's tensors, by the names its definition gave them. */
  readonly tensors: TensorValues<Names>
  private readonly params: ReadonlyArray<Parameter>
  /** The set's shared tensors (or this adapter's own, when created outside a set). */
  readonly shared: TensorValues<Shared>
  /** Shared tensors this adapter made itself (created outside a set), so it disposes them. */
  private readonly ownShared: SharedTensors | undefined
  private readonly peftRows: tf.Tensor1D | undefined
  private readonly layer: LinearTarget
  /** The tensors' values at the last (re-)initialisation, for variants with a non-zero `initialDelta`. */
  private initial: { readonly [K in Names]: tf.Tensor } | undefined = undefined
  private seed: number
  private dropoutCalls = 0
  readonly initialDelta?: () => AdapterFactors | undefined

  constructor(
    private readonly definition: AdapterDefinition<Config, Names, Shared>,
    layer: LinearTarget,
    readonly config: Config,
    seed: number,
    context: AdapterContext = {}
  ) {
    this.variant = definition.name
    this.moduleName = layer.name
    this.layer = layer
    this.deltaDependsOnWeight = definition.deltaDependsOnWeight === true
    this.seed = seed
    this.specs = Object.entries(definition.tensors(layer, config)) as Array<[Names, TensorSpec]>
    const values: Partial<Record<Names, tf.Variable>> = {}
    const drawn = this.draw(seed)
    this.specs.forEach(([name], index) => {
      // tf.variable keeps its own reference to the data: free the initial tensor.
      const initial = drawn[index]!
      values[name] = tf.variable(initial, this.specs[index]![1].trainable !== false, undefined, "float32")
      initial.dispose()
    })
    this.tensors = values as TensorValues<Names>
    const sharedSpecs = definition.shared
    this.ownShared = sharedSpecs !== undefined && context.shared === undefined ? new DefinedSharedTensors(sharedSpecs([layer], config), seed) : undefined
    this.shared = (context.shared ?? this.ownShared)?.tensors as TensorValues<Shared> ?? ({} as TensorValues<Shared>)
    // Only variants with shared tensors need the row map; LoRA-like variants allocate nothing more.
    this.peftRows = sharedSpecs !== undefined && context.peftRows !== undefined ? tf.tensor1d([...context.peftRows], "int32") : undefined
    this.params = this.specs.filter(([, spec]) => spec.trainable !== false).map(([name, spec]) => ({ name: `${layer.name}.${spec.key}`, variable: this.tensors[name] }))
    const initialDelta = definition.initialDelta
    if (initialDelta !== undefined) {
      this.keepInitial()
      this.initialDelta = () =>
        this.initial === undefined
          ? undefined
          : tf.tidy(() => {
            const delta = initialDelta(this.scope(layer))
            if (delta === undefined) return undefined
            return { a: this.owned(delta.a) as tf.Tensor2D, b: this.owned(delta.b) as tf.Tensor2D }
          })
    }
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
    return [...Object.values<tf.Variable>(this.tensors), ...Object.values<tf.Variable>(this.shared)].find((variable) => variable === tensor)
  }

  /** `tensor` itself when a hook made it, else a copy (a variable or an initial value the adapter keeps). */
  private owned(tensor: tf.Tensor): tf.Tensor {
    return this.tensorsOf(tensor) !== undefined || Object.values<tf.Tensor>(this.initial ?? {}).includes(tensor) ? tensor.clone() : tensor
  }

  private scope(layer: LinearTarget): AdapterScope<Config, Names, Shared> {
    return { tensors: this.tensors, initial: this.initial, shared: this.shared, peftRows: this.peftRows, config: this.config, layer }
  }

  /** Every tensor's initial value, in spec order: the definition's joint `initialize`, else each spec's `init`. */
  private draw(seed: number): Array<tf.Tensor> {
    const joint = this.definition.initialize
    if (joint === undefined) return this.specs.map(([, spec], index) => spec.init(spec.shape, tensorSeed(seed, index)))
    return tf.tidy(() => {
      const given = joint(this.layer, this.config, seed)
      return this.specs.map(([name, spec], index) => {
        const value = given[name] ?? spec.init(spec.shape, tensorSeed(seed, index))
        if (!tf.util.arraysEqual(value.shape, [...spec.shape])) throw new ShapeMismatch({ what: `${this.moduleName}.${spec.key} (initialisation)`, expected: spec.shape, actual: value.shape })
        return value
      })
    })
  }

  /** Snapshots the tensors as initialised when the variant's `initialDelta` is not zero under this config. */
  private keepInitial(): void {
    if (this.initial !== undefined) tf.dispose(Object.values<tf.Tensor>(this.initial))
    this.initial = undefined
    const initialDelta = this.definition.initialDelta
    if (initialDelta === undefined) return
    const probe = tf.tidy(() => initialDelta({ ...this.scope(this.layer), initial: this.tensors }) !== undefined)
    if (probe) this.initial = Object.fromEntries(this.specs.map(([name]) => [name, this.tensors[name].clone()])) as unknown as { readonly [K in Names]: tf.Tensor }
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
    if (this.definition.initialize === undefined) {
      tf.tidy(() => this.specs.forEach(([name, spec], index) => this.tensors[name].assign(spec.init(spec.shape, tensorSeed(seed, index)))))
    } else {
      tf.tidy(() => this.draw(seed).forEach((value, index) => this.tensors[this.specs[index]![0]].assign(value)))
    }
    if (this.definition.initialDelta !== undefined) this.keepInitial()
  }

  stateDict(): Record<string, tf.Tensor> {
    const fileTensors = this.definition.fileTensors
    if (fileTensors !== undefined) {
      const converted = tf.tidy(() => {
        const file = fileTensors(this.scope(this.layer))
        // A tensor returned as is must be copied: the caller owns and disposes it.
        return file === undefined ? undefined : Object.fromEntries(Object.entries(file).map(([key, t]) => [key, this.owned(t)]))
      })
      if (converted !== undefined) return converted
    }
    return Object.fromEntries(this.specs.map(([name, spec]) => [spec.key, this.tensors[name].clone()]))
  }

  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>): void {
    const aliases = aliasesOf(Object.fromEntries(this.specs))
    const given = Object.keys(aliases).length === 0 ? tensors : resolveKeyAliases(tensors, aliases, this.moduleName)
    const byKey = new Map(this.specs.map(([name, spec]) => [spec.key, this.tensors[name]]))
    const fromFile = this.definition.fromFile
    // All checked before anything is assigned, so a bad file leaves the adapter as it was.
    if (fromFile === undefined) loadChecked(byKey, given, this.moduleName, `a ${this.variant} adapter`)
    else tf.tidy(() => loadChecked(byKey, fromFile(given, this.scope(this.layer)) ?? given, this.moduleName, `a ${this.variant} adapter`))
  }

  /** Frees this layer's tensors; shared ones belong to the set (unless this adapter made its own). */
  dispose(): void {
    for (const [name] of this.specs) this.tensors[name].dispose()
    if (this.initial !== undefined) tf.dispose(Object.values<tf.Tensor>(this.initial))
    this.ownShared?.dispose()
    this.peftRows?.dispose()
  }
}

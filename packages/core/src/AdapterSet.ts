/**
 * Injection of one adapter variant into the selected linear layers of a model, and the handle to
 * what was injected: its parameters, PEFT-named state dict, merge/unmerge and enable/disable. The
 * set remembers its variant and config, so saving it needs nothing else. A variant's shared tensors
 * (VeRA's projections) are created here, once for the set, handed to every adapter, and disposed
 * with the set.
 */
import type * as tf from "@tensorflow/tfjs-core"
import type { AdaptableModel, PeftRowOrder } from "./AdaptableModel.js"
import type { Adapter, AdapterConfigBase, AdapterVariant, SharedTensors } from "./Adapter.js"
import { inverseOrder } from "./internal/inverseOrder.js"
import type { Linear } from "./Linear.js"
import type { Parameter, ParameterGroup } from "./Parameter.js"
import { mixSeed } from "./Seed.js"
import { selectTargets, type TargetModules } from "./TargetModules.js"

export interface InjectOptions {
  /** Run seed; each layer's initialisation gets its own seed derived from it. */
  readonly seed: number
  /**
   * Adapt exactly these module names (a loaded adapter file's), instead of those the config's
   * `targetModules` select; the config still says `targetModules` when saved.
   */
  readonly modules?: ReadonlyArray<string>
}

/** One adapted layer and the adapter it hosts. */
export interface AdaptedLayer {
  readonly layer: Linear
  readonly adapter: Adapter
}

export class AdapterSet<Config extends AdapterConfigBase = AdapterConfigBase> {
  private constructor(
    readonly variant: AdapterVariant<Config>,
    /** The config every adapter was created with (its `targetModules` is what a saved config says). */
    readonly config: Config,
    /** The adapted layers and their adapters, in module order. */
    readonly entries: ReadonlyArray<AdaptedLayer>,
    /** The model's output-row order in PEFT files (`AdaptableModel.peftRowOrder`), which saving and restoring use. */
    readonly rowOrder: PeftRowOrder | undefined,
    /** The tensors the variant shares across all layers of this set, if it declares any. */
    readonly shared: SharedTensors | undefined
  ) {}

  /** Creates an adapter on every layer the config's `targetModules` select (PEFT semantics). */
  static inject<Config extends AdapterConfigBase>(
    model: AdaptableModel,
    variant: AdapterVariant<Config>,
    config: Config,
    options: InjectOptions
  ): AdapterSet<Config> {
    const all = model.linears()
    const names = new Set(options.modules ?? selectTargets(all.map((layer) => layer.name), config.targetModules, model.outputHeads))
    const targets = all.filter((layer) => names.has(layer.name))
    const shared = targets.length > 0 ? variant.createShared?.(targets, config, options.seed) : undefined
    const entries = targets.map((layer, index) => {
      const seed = mixSeed(options.seed, index)
      // Only a variant with shared tensors needs the context; others are created exactly as before.
      const order = shared === undefined ? undefined : model.peftRowOrder?.(layer.name)
      const adapter = shared === undefined ? variant.create(layer, config, seed) : variant.create(layer, config, seed, { shared, ...(order === undefined ? {} : { peftRows: inverseOrder(order) }) })
      layer.attach(adapter)
      return { layer, adapter }
    })
    return new AdapterSet(variant, config, entries, model.peftRowOrder, shared)
  }

  /** The adapted layers, in module order. */
  get layers(): ReadonlyArray<Linear> {
    return this.entries.map(({ layer }) => layer)
  }

  get targetModules(): TargetModules {
    return this.config.targetModules
  }

  /** All trainable adapter parameters, in module order, then the trainable shared ones. */
  parameters(): ReadonlyArray<Parameter> {
    return [...this.entries.flatMap(({ adapter }) => adapter.parameters()), ...(this.shared?.parameters() ?? [])]
  }

  /** The parameters as optimizer groups, as the variant maps them under this config (LoRA+); one group by default. */
  parameterGroups(): ReadonlyArray<ParameterGroup> {
    const params = this.parameters()
    return this.variant.groups?.(params, this.config) ?? [{ params }]
  }

  /** PEFT-style state dict: `<module name>.<suffix>` -> tensor (copies the caller owns). */
  stateDict(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {}
    for (const { layer, adapter } of this.entries) {
      for (const [suffix, tensor] of Object.entries(adapter.stateDict())) out[`${layer.name}.${suffix}`] = tensor
    }
    return out
  }

  /** The shared tensors by their full key in PEFT's file (`base_model.vera_A`); empty for most variants. Copies the caller owns. */
  sharedStateDict(): Record<string, tf.Tensor> {
    return this.shared?.stateDict() ?? {}
  }

  /** W <- W + scale delta on every adapted layer (`scale` is a merge step size; 1 by default). */
  merge(scale = 1): void {
    for (const { layer } of this.entries) layer.merge(scale)
  }

  unmerge(): void {
    for (const { layer } of this.entries) layer.unmerge()
  }

  enable(): void {
    for (const { layer } of this.entries) layer.setAdapterEnabled(true)
  }

  disable(): void {
    for (const { layer } of this.entries) layer.setAdapterEnabled(false)
  }

  /** Each adapter's random-stream position (dropout), by module name; see `Adapter.randomState`. */
  randomState(): Record<string, ReadonlyArray<number>> {
    const out: Record<string, ReadonlyArray<number>> = {}
    for (const { layer, adapter } of this.entries) {
      const state = adapter.randomState?.()
      if (state !== undefined) out[layer.name] = state
    }
    return out
  }

  setRandomState(state: Readonly<Record<string, ReadonlyArray<number>>>): void {
    for (const { layer, adapter } of this.entries) {
      const entry = state[layer.name]
      if (entry !== undefined) adapter.setRandomState?.(entry)
    }
  }

  /** Removes the adapters and frees the shared tensors, leaving the base weights as they are now (merged adapters stay merged). */
  remove(): void {
    for (const { layer, adapter } of this.entries) if (layer.adapter === adapter) layer.detach()
    this.shared?.dispose()
  }
}

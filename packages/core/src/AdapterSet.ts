/**
 * Injection of one adapter variant into the selected linear layers of a model, and the handle to
 * what was injected: its parameters, PEFT-named state dict, merge/unmerge and enable/disable.
 */
import type * as tf from "@tensorflow/tfjs-core"
import type { AdaptableModel } from "./AdaptableModel.js"
import type { AdapterVariant } from "./Adapter.js"
import type { Linear } from "./Linear.js"
import type { Parameter } from "./Parameter.js"
import { mixSeed } from "./Seed.js"
import { selectTargets, type TargetModules } from "./TargetModules.js"

export interface InjectOptions {
  readonly targetModules: TargetModules
  /** Run seed; each layer's initialisation gets its own seed derived from it. */
  readonly seed: number
}

export class AdapterSet {
  private constructor(
    readonly variant: string,
    /** The adapted layers, in module order. */
    readonly layers: ReadonlyArray<Linear>,
    /** The `targetModules` the adapters were injected with (what a saved config must say). */
    readonly targetModules: TargetModules
  ) {}

  /** Creates an adapter on every layer selected by `targetModules` (PEFT semantics). */
  static inject<Config>(
    model: AdaptableModel,
    variant: AdapterVariant<Config>,
    config: Config,
    options: InjectOptions
  ): AdapterSet {
    const all = model.linears()
    const names = new Set(selectTargets(all.map((layer) => layer.name), options.targetModules, model.outputHeads))
    const layers = all.filter((layer) => names.has(layer.name))
    layers.forEach((layer, index) => {
      layer.adapter?.dispose()
      layer.adapter = variant.create(layer, config, mixSeed(options.seed, index))
      layer.adapterEnabled = true
      layer.merged = false
    })
    return new AdapterSet(variant.name, layers, options.targetModules)
  }

  /** All trainable adapter parameters, in module order. */
  parameters(): ReadonlyArray<Parameter> {
    return this.layers.flatMap((layer) => layer.adapter!.parameters())
  }

  /** PEFT-style state dict: `<module name>.<suffix>` -> tensor (copies the caller owns). */
  stateDict(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {}
    for (const layer of this.layers) {
      for (const [suffix, tensor] of Object.entries(layer.adapter!.stateDict())) out[`${layer.name}.${suffix}`] = tensor
    }
    return out
  }

  merge(): void {
    for (const layer of this.layers) layer.merge()
  }

  unmerge(): void {
    for (const layer of this.layers) layer.unmerge()
  }

  enable(): void {
    for (const layer of this.layers) layer.adapterEnabled = true
  }

  disable(): void {
    for (const layer of this.layers) layer.adapterEnabled = false
  }

  /** Each adapter's random-stream position (dropout), by module name; see `Adapter.randomState`. */
  randomState(): Record<string, ReadonlyArray<number>> {
    const out: Record<string, ReadonlyArray<number>> = {}
    for (const layer of this.layers) {
      const state = layer.adapter!.randomState?.()
      if (state !== undefined) out[layer.name] = state
    }
    return out
  }

  setRandomState(state: Readonly<Record<string, ReadonlyArray<number>>>): void {
    for (const layer of this.layers) {
      const entry = state[layer.name]
      if (entry !== undefined) layer.adapter!.setRandomState?.(entry)
    }
  }

  /** Removes the adapters, leaving the base weights as they are now (merged adapters stay merged). */
  remove(): void {
    for (const layer of this.layers) {
      layer.adapter?.dispose()
      layer.adapter = undefined
      layer.keepMerged()
    }
  }
}

/**
 * Chain of LoRA (Xia, Qin, Hazan 2024): train a link, merge it into the frozen weights (in float32),
 * start a fresh link, reset the optimizer, repeat. Generic over any adapter variant whose adapters
 * have `delta` (and whose config has a rank `r`, for per-link ranks).
 *
 * The chain plugs into the training loop as a hook: before each step it checks whether the step
 * is a knot. At a knot it records the finished link (on the host, not on the device, so device
 * memory matches plain LoRA), merges it, re-initialises or re-creates the adapters, and resets
 * (or prunes) the optimizer state.
 */
import type { AdaptableModel, AdapterConfigBase, AdapterVariant, Optimizer, Parameter, ParameterGroup, Schedule, TrainingHook } from "@peftkit/core"
import { AdapterSet, ConfigError, mixSeed, withWarmupRestarts } from "@peftkit/core"
import { Effect } from "effect"
import { type ChainConfig, type ChainConfigInput, chainConfig, knotSteps } from "./ChainConfig.js"
import { readHost } from "./internal/readHost.js"

/**
 * One finished link of one layer, kept on the host: factors when the variant has them (the merge was
 * W <- rowScale (W + b a), rowScale 1 when absent), else the dense delta.
 */
export type LinkUpdate =
  | { readonly kind: "factors"; readonly rank: number; readonly a: Float32Array; readonly b: Float32Array; readonly rowScale?: Float32Array }
  | { readonly kind: "dense"; readonly delta: Float32Array }

export interface LinkRecord {
  readonly link: number
  readonly startStep: number
  readonly endStep: number
  readonly rank: number
  /** Per adapted layer, by module name. */
  readonly updates: ReadonlyMap<string, LinkUpdate>
}

/** What a chain needs of a variant's config: a rank (per-link ranks change it) and target modules. */
export type ChainableConfig = AdapterConfigBase & { readonly r: number }

export interface ChainOptions<Config extends ChainableConfig> {
  readonly model: AdaptableModel
  readonly variant: AdapterVariant<Config>
  /** The adapter config of the first link (later links change only `r` when `ranks` is set). */
  readonly adapterConfig: Config
  readonly chain: ChainConfigInput
  /** How the chain's parameters map to optimizer groups; by default the variant's (LoRA+ from `loraConfig({ loraPlusRatio })`). */
  readonly groups?: (params: ReadonlyArray<Parameter>) => ReadonlyArray<ParameterGroup>
}


export class Chain<Config extends ChainableConfig> {
  readonly config: ChainConfig
  readonly knots: ReadonlyArray<number>
  /** Finished (merged) links, oldest first. */
  readonly history: Array<LinkRecord> = []
  private currentLink = 0
  private linkStart = 0
  private optimizer: Optimizer | undefined

  private constructor(
    private readonly options: ChainOptions<Config>,
    config: ChainConfig,
    public adapters: AdapterSet<Config>
  ) {
    this.config = config
    this.knots = knotSteps(config)
  }

  /** Validates the config and injects the first link's adapters. */
  static make<Config extends ChainableConfig>(options: ChainOptions<Config>): Chain<Config> {
    const config = chainConfig(options.chain)
    const adapterConfig = config.ranks === undefined ? options.adapterConfig : { ...options.adapterConfig, r: config.ranks[0]! }
    const adapters = AdapterSet.inject(options.model, options.variant, adapterConfig, { seed: mixSeed(config.seed, 0) })
    return new Chain(options, config, adapters)
  }

  /** The link now being trained (0-based). */
  get link(): number {
    return this.currentLink
  }

  get links(): number {
    return this.knots.length + 1
  }

  /** Rank of link `link`. */
  rankOf(link: number): number {
    return this.config.ranks?.[link] ?? this.options.adapterConfig.r
  }

  /** Optimizer groups for the current link's parameters. */
  parameterGroups(): ReadonlyArray<ParameterGroup> {
    const params = this.adapters.parameters()
    return this.options.groups?.(params) ?? this.adapters.parameterGroups()
  }

  /** Attaches the optimizer the chain resets at knots, and hands it the first link's parameters. */
  attach(optimizer: Optimizer): Optimizer {
    this.optimizer = optimizer
    optimizer.setParameters(this.parameterGroups())
    return optimizer
  }

  /** The training-loop hook that ties knots to steps. */
  hook(): TrainingHook<ConfigError> {
    return {
      beforeStep: (step) => (this.knots.includes(step) ? this.knot(step) : Effect.void)
    }
  }

  /** The base schedule with warm-up restarted at every knot (when `warmupSteps` > 0). */
  schedule(base: Schedule): Schedule {
    return withWarmupRestarts(base, this.knots, this.config.warmupSteps)
  }

  /**
   * Moves the chain to `link` (started at `linkStart`) with `history` already merged into the
   * weights, re-creating the adapters if that link's rank differs. For resuming; see `restoreChain`.
   */
  resumeAt(link: number, linkStart: number, history: ReadonlyArray<LinkRecord>): void {
    this.history.splice(0, this.history.length, ...history)
    if (this.rankOf(link) !== this.rankOf(this.currentLink)) {
      this.adapters.remove()
      this.adapters = AdapterSet.inject(this.options.model, this.options.variant, { ...this.options.adapterConfig, r: this.rankOf(link) }, { seed: mixSeed(this.config.seed, link) })
    }
    this.currentLink = link
    this.linkStart = linkStart
    this.optimizer?.setParameters(this.parameterGroups())
  }

  /** The step at which the current link started. */
  get currentLinkStart(): number {
    return this.linkStart
  }

  /** Ends the current link at `step`: record, merge in float32, start the next link, reset the optimizer. */
  knot(step: number): Effect.Effect<void, ConfigError> {
    const self = this
    return Effect.gen(function* () {
      // A knot that cannot reset the optimizer would silently keep stale moments (DESIGN's pitfall).
      const optimizer = self.optimizer
      if (optimizer === undefined) {
        return yield* new ConfigError({ field: "chain", reason: "no optimizer attached: call chain.attach(optimizer) before training" })
      }
      const finished = self.currentLink
      const updates = new Map<string, LinkUpdate>()
      for (const { layer, adapter } of self.adapters.entries) {
        if (adapter.factors !== undefined) {
          const { a, b, rowScale } = adapter.factors()
          const rank = a.shape[0]
          const scale = rowScale === undefined ? {} : { rowScale: yield* readHost(rowScale) }
          updates.set(layer.name, { kind: "factors", rank, a: yield* readHost(a), b: yield* readHost(b), ...scale })
        } else {
          updates.set(layer.name, { kind: "dense", delta: yield* readHost(adapter.delta(layer)) })
        }
      }
      self.history.push({ link: finished, startStep: self.linkStart, endStep: step, rank: self.rankOf(finished), updates })

      // W <- W + delta in float32; then the adapters start over from a fresh initialisation.
      self.adapters.merge()
      const next = finished + 1
      const nextRank = self.rankOf(next)
      if (nextRank === self.rankOf(finished)) {
        self.adapters.entries.forEach(({ layer, adapter }, index) => {
          layer.commitMerge()
          adapter.reinitialize(mixSeed(self.config.seed, next, index))
        })
      } else {
        // A new rank means new shapes: new adapters (and new optimizer slots for them).
        const config = { ...self.options.adapterConfig, r: nextRank }
        self.adapters.remove()
        self.adapters = AdapterSet.inject(self.options.model, self.options.variant, config, { seed: mixSeed(self.config.seed, next) })
      }
      self.currentLink = next
      self.linkStart = step

      optimizer.setParameters(self.parameterGroups())
      const policy = self.config.optimizerAtKnot
      if (policy === "reset") optimizer.reset()
      else if (policy !== "keep") optimizer.prune(policy.prune, policy.mode, mixSeed(self.config.seed, next, 0x5eed))
    })
  }
}


/**
 * Chain of LoRA (Xia, Qin, Hazan 2024): train a link, merge it into the frozen weights (in float32),
 * start a fresh link, reset the optimizer, repeat. Generic over any adapter variant whose adapters
 * have `delta` (and whose config has a rank `r`, for per-link ranks).
 *
 * The chain plugs into the training loop as a hook: before each step it checks whether the step
 * is a knot. At a knot it records the finished link (on the host, not on the device, so device
 * memory matches plain LoRA), merges it, re-initialises or re-creates the adapters, and resets
 * (or prunes) the optimizer state.
 *
 * A `LinkPolicy` decides what differs between links: the adapter config, the layers that train and
 * the merge step size (COLA: nothing; RAC-LoRA: the frozen factor; XGBLoRA: rank-1 links on a layer
 * subset, merged with a step size). Every link's plan is derived up front from the seed, so resuming
 * re-derives it and the checkpoint stores nothing about the policy.
 */
import type { AdaptableModel, Adapter, AdapterConfigBase, AdapterVariant, Linear, Optimizer, Parameter, ParameterGroup, Schedule, TrainingHook } from "@peftkit/core"
import { AdapterSet, ConfigError, mixSeed, selectTargets, withWarmupRestarts } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { type ChainConfig, type ChainConfigInput, chainConfig, knotSteps } from "./ChainConfig.js"
import { readHost } from "./internal/readHost.js"
import { addLink } from "./internal/replayLink.js"
import { type LinkPlan, planLinks, sameConfig } from "./internal/linkPlans.js"
import { colaPolicy, type LinkPolicy } from "./LinkPolicy.js"

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
  /** The adapter config of the first link (later links change only `r` when `ranks` is set, and what `policy` changes). */
  readonly adapterConfig: Config
  readonly chain: ChainConfigInput
  /** What differs between links (`racPolicy`, `xgbPolicy`, `chainPolicy(name)`); COLA's `colaPolicy` by default. */
  readonly policy?: LinkPolicy<NoInfer<Config>>
  /** How the chain's parameters map to optimizer groups; by default the variant's (LoRA+ from `loraConfig({ loraPlusRatio })`). */
  readonly groups?: (params: ReadonlyArray<Parameter>) => ReadonlyArray<ParameterGroup>
}


export class Chain<Config extends ChainableConfig> {
  readonly config: ChainConfig
  readonly knots: ReadonlyArray<number>
  /** What differs between links (COLA's `colaPolicy` unless given). */
  readonly policy: LinkPolicy<Config>
  /** Finished (merged) links, oldest first. */
  readonly history: Array<LinkRecord> = []
  private currentLink = 0
  private linkStart = 0
  private optimizer: Optimizer | undefined

  private constructor(
    private readonly options: ChainOptions<Config>,
    config: ChainConfig,
    private readonly plans: ReadonlyArray<LinkPlan<Config>>,
    public adapters: AdapterSet<Config>
  ) {
    this.config = config
    this.knots = knotSteps(config)
    this.policy = options.policy ?? colaPolicy
  }

  /** Validates the config, plans every link with the policy and injects the first link's adapters. */
  static make<Config extends ChainableConfig>(options: ChainOptions<Config>): Chain<Config> {
    const config = chainConfig(options.chain)
    const { model, adapterConfig } = options
    const targets = selectTargets(model.linears().map((layer) => layer.name), adapterConfig.targetModules, model.outputHeads)
    const plans = planLinks<Config>(options.policy ?? colaPolicy, config, adapterConfig, targets, knotSteps(config).length + 1)
    // Every targeted layer hosts an adapter on every link (so export and checkpoints see them all); the
    // layers a link does not train keep theirs disabled and untrained.
    const adapters = AdapterSet.inject(model, options.variant, plans[0]!.config, { seed: mixSeed(config.seed, 0) })
    const chain = new Chain(options, config, plans, adapters)
    chain.enableTrainedModules()
    return chain
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
    return this.configOf(link).r
  }

  /** Link `link`'s adapter config (`ranks` and the policy applied). */
  configOf(link: number): Config {
    return this.plans[link]?.config ?? this.options.adapterConfig
  }

  /** The modules link `link` trains (every targeted module unless the policy draws a subset). */
  modulesOf(link: number): ReadonlySet<string> {
    return this.plans[link]?.modules ?? new Set(this.adapters.layers.map((layer) => layer.name))
  }

  /** The step size link `link` is merged with (1 unless the policy says otherwise). */
  mergeScaleOf(link: number): number {
    return this.plans[link]?.mergeScale ?? 1
  }

  /**
   * Whether link `link`'s knot merges through the adapters themselves (every module, step size 1,
   * COLA's merge) rather than adding its recorded factors to W.
   */
  mergesWhole(link: number): boolean {
    const plan = this.plans[link]
    return plan === undefined || (plan.everyModule && plan.mergeScale === 1)
  }

  /** Optimizer groups for the current link's trained parameters. */
  parameterGroups(): ReadonlyArray<ParameterGroup> {
    const plan = this.plans[this.currentLink]!
    if (plan.everyModule) {
      const params = this.adapters.parameters()
      return this.options.groups?.(params) ?? this.adapters.parameterGroups()
    }
    const params = this.adapters.entries.filter(({ layer }) => plan.modules.has(layer.name)).flatMap(({ adapter }) => adapter.parameters())
    return this.options.groups?.(params) ?? this.adapters.variant.groups?.(params, this.adapters.config) ?? [{ params }]
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
   * weights, re-creating the adapters if that link's config differs. For resuming; see `restoreChain`.
   */
  resumeAt(link: number, linkStart: number, history: ReadonlyArray<LinkRecord>): void {
    this.history.splice(0, this.history.length, ...history)
    if (!sameConfig(this.configOf(link), this.configOf(this.currentLink))) this.injectFor(link)
    this.currentLink = link
    this.linkStart = linkStart
    this.enableTrainedModules()
    this.optimizer?.setParameters(this.parameterGroups())
  }

  /**
   * The seed layer `index`'s adapter of link `link` was initialised from: `AdapterSet.inject`'s
   * per-layer seed where the link re-injected (link 0, or a config unlike the previous link's; see
   * `injectFor`), else the knot's `reinitializeAdapter` seed. A resume re-derives a PiSSA link's init with it.
   */
  initSeedOf(link: number, index: number): number {
    const reinjected = link === 0 || !sameConfig(this.configOf(link), this.configOf(link - 1))
    return reinjected ? mixSeed(mixSeed(this.config.seed, link), index) : mixSeed(this.config.seed, link, index)
  }

  /** The step at which the current link started. */
  get currentLinkStart(): number {
    return this.linkStart
  }

  /**
   * Ends the current link at `step`: record, merge in float32 (with the policy's step size, on the
   * layers it trained), start the next link, reset the optimizer.
   */
  knot(step: number): Effect.Effect<void, ConfigError> {
    const self = this
    return Effect.gen(function* () {
      // A knot that cannot reset the optimizer would silently keep stale moments (DESIGN's pitfall).
      const optimizer = self.optimizer
      if (optimizer === undefined) {
        return yield* new ConfigError({ field: "chain", reason: "no optimizer attached: call chain.attach(optimizer) before training" })
      }
      const finished = self.currentLink
      const plan = self.plans[finished]!
      // COLA's merge (the adapters' own, scale 1, every layer) unless the policy steps or subsets; then
      // W gets exactly the recorded factors, as a resume replays them.
      const wholeMerge = self.mergesWhole(finished)
      const updates = new Map<string, LinkUpdate>()
      for (const { layer, adapter } of self.adapters.entries) {
        if (!plan.modules.has(layer.name)) {
          // Not trained this link: a zero update of the link's rank keeps every layer at the same total
          // rank, so the export (one PEFT r) stays a plain concatenation.
          updates.set(layer.name, zeroUpdate(layer, adapter))
        } else if (adapter.factors !== undefined) {
          const { a, b, rowScale } = adapter.factors()
          const rank = a.shape[0]
          if (rowScale !== undefined && !wholeMerge) {
            tf.dispose([a, b, rowScale])
            return yield* new ConfigError({ field: "policy", reason: `'${self.policy.name}' merges with a step size or on a layer subset, which a row-rescaling variant ('${adapter.variant}') does not support` })
          }
          const scale = rowScale === undefined ? {} : { rowScale: yield* readHost(rowScale) }
          const bHost = scaled(yield* readHost(b), plan.mergeScale)
          updates.set(layer.name, { kind: "factors", rank, a: yield* readHost(a), b: bHost, ...scale })
        } else {
          updates.set(layer.name, { kind: "dense", delta: scaled(yield* readHost(adapter.delta(layer)), plan.mergeScale) })
        }
      }
      self.history.push({ link: finished, startStep: self.linkStart, endStep: step, rank: self.rankOf(finished), updates })

      // W <- W + delta in float32; then the adapters start over from a fresh initialisation.
      if (wholeMerge) self.adapters.merge()
      else {
        for (const { layer } of self.adapters.entries) {
          if (plan.modules.has(layer.name)) addRecorded(layer, updates.get(layer.name)!)
        }
      }
      const next = finished + 1
      if (sameConfig(self.configOf(next), plan.config)) {
        self.adapters.entries.forEach(({ layer }, index) => {
          if (wholeMerge) layer.commitMerge()
          layer.reinitializeAdapter(self.initSeedOf(next, index)) // refolds a PiSSA link's init from the merged W
        })
      } else {
        // Another config (rank, frozen factor) means other shapes or trainable flags: new adapters (and new optimizer slots).
        self.injectFor(next)
      }
      self.currentLink = next
      self.linkStart = step
      self.enableTrainedModules()

      optimizer.setParameters(self.parameterGroups())
      const policy = self.config.optimizerAtKnot
      if (policy === "reset") optimizer.reset()
      else if (policy !== "keep") optimizer.prune(policy.prune, policy.mode, mixSeed(self.config.seed, next, 0x5eed))
    })
  }

  /** Replaces the adapters with link `link`'s (W keeps whatever was merged). */
  private injectFor(link: number): void {
    this.adapters.remove()
    this.adapters = AdapterSet.inject(this.options.model, this.options.variant, this.configOf(link), { seed: mixSeed(this.config.seed, link) })
  }

  /**
   * Only the current link's modules run their adapter; the rest stay at their (zero-update)
   * initialisation. Chains whose links all train every module leave the switches to the user.
   */
  private enableTrainedModules(): void {
    if (this.plans.every((plan) => plan.everyModule)) return
    const plan = this.plans[this.currentLink]!
    for (const { layer } of this.adapters.entries) layer.setAdapterEnabled(plan.modules.has(layer.name))
  }
}

/**
 * `values` times `scale` in float32 (the step size folded into the recorded factor), as a new array:
 * a backend may hand back the very buffer a variable shares with the tensor that was read.
 */
const scaled = (values: Float32Array, scale: number): Float32Array => (scale === 1 ? values : values.map((value) => value * scale))

/** A link's update of a layer it did not train: zero factors of the adapter's rank (or a zero delta). */
const zeroUpdate = (layer: { readonly inFeatures: number; readonly outFeatures: number }, adapter: Adapter): LinkUpdate => {
  if (adapter.factors === undefined) return { kind: "dense", delta: new Float32Array(layer.outFeatures * layer.inFeatures) }
  const factors = adapter.factors()
  const rank = factors.a.shape[0]
  tf.dispose([factors.a, factors.b, ...(factors.rowScale === undefined ? [] : [factors.rowScale])])
  return { kind: "factors", rank, a: new Float32Array(rank * layer.inFeatures), b: new Float32Array(layer.outFeatures * rank) }
}

/** W <- W + b a (or + delta) from the recorded host arrays: the very ops `restoreChain` replays. */
const addRecorded = (layer: Linear, update: LinkUpdate): void => {
  tf.tidy(() => {
    layer.weight.assign(addLink(layer.weight, layer, update))
  })
}

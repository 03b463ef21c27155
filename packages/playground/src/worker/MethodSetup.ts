/**
 * The chosen method on a loaded model, written as any user of the library would: one adapter set
 * (`AdapterSet.inject`) for LoRA and its variants, a `Chain` for COLA, RAC-LoRA and XGBLoRA. The
 * result knows what a checkpoint holds, how to restore one, and how to write the PEFT files.
 */
import { Chain, chainCheckpointFiles, chainPolicy, type ChainableConfig, exportChain, restoreChain, saveChainLora } from "@peftkit/cola"
import {
  AdapterSet,
  ConfigError,
  adapterSetFiles,
  type AdapterVariant,
  type CheckpointFiles,
  type Optimizer,
  restoreAdapterWeights,
  saveAdapter,
  type Schedule,
  type TrainingHook
} from "@peftkit/core"
import { dora, lora, loraConfig } from "@peftkit/lora"
import type { CausalLM } from "@peftkit/models"
import { vera, veraConfig } from "@peftkit/vera"
import type { FileSystem } from "@effect/platform"
import { Effect } from "effect"
import type { TrainSettings } from "../protocol.js"

export interface ActiveMethod {
  readonly describe: string
  readonly knots: ReadonlyArray<number>
  readonly hooks: ReadonlyArray<TrainingHook<any, any>>
  readonly schedule: (base: Schedule) => Schedule
  readonly checkpointFiles: () => Effect.Effect<CheckpointFiles>
  readonly restore: (dir: string) => Effect.Effect<void, unknown, FileSystem.FileSystem>
  /** Writes the adapter as PEFT files into `dir` (a chain: all its links as one adapter). */
  readonly save: (dir: string) => Effect.Effect<void, unknown, FileSystem.FileSystem>
}

const variantOf = (settings: TrainSettings): { readonly variant: AdapterVariant<any>; readonly config: ChainableConfig; readonly describe: string } => {
  const targetModules = settings.targetModules === "all-linear" ? "all-linear" : [...settings.targetModules]
  const lora_ = { r: settings.rank, alpha: settings.alpha, targetModules }
  switch (settings.variant) {
    case "dora":
      return { variant: dora, config: loraConfig(lora_), describe: `DoRA r=${settings.rank} alpha=${settings.alpha}` }
    case "pissa":
      return { variant: lora, config: loraConfig({ ...lora_, init: "pissa_niter_4" }), describe: `PiSSA r=${settings.rank} alpha=${settings.alpha}` }
    case "vera":
      return { variant: vera, config: veraConfig({ r: settings.rank, projectionPrngKey: settings.seed, targetModules }), describe: `VeRA r=${settings.rank}` }
    default:
      return { variant: lora, config: loraConfig(lora_), describe: `LoRA r=${settings.rank} alpha=${settings.alpha}` }
  }
}

const knotOptimizer = (settings: TrainSettings) =>
  settings.optimizerAtKnot === "prune" ? { prune: 0.99, mode: "magnitude" as const } : settings.optimizerAtKnot

/** Combinations a chain policy cannot train, refused before anything trains, in the page's words. */
const refuseCombination = (settings: TrainSettings) => {
  if (settings.method === "xgb" && settings.variant === "dora") {
    throw new ConfigError({ field: "method", reason: "XGBLoRA merges each link with a step size on some of the layers, which DoRA's per-row rescaling does not allow: use COLA or RAC-LoRA with DoRA" })
  }
  if (settings.method === "rac" && settings.variant === "vera") {
    throw new ConfigError({ field: "method", reason: "RAC-LoRA freezes one of LoRA's two factors in each link; VeRA has no such factors (its projections are always frozen): use COLA with VeRA" })
  }
}

export const setupMethod = (model: CausalLM, settings: TrainSettings, optimizer: Optimizer, baseModel: string): ActiveMethod => {
  refuseCombination(settings)
  const chosen = variantOf(settings)
  model.setTrainable(false)
  if (settings.method === "lora") {
    const adapters = AdapterSet.inject(model, chosen.variant, chosen.config, { seed: settings.seed })
    optimizer.setParameters(adapters.parameterGroups())
    return {
      describe: chosen.describe,
      knots: [],
      hooks: [],
      schedule: (base) => base,
      checkpointFiles: () => Effect.orDie(adapterSetFiles(adapters)),
      restore: (dir) => restoreAdapterWeights(dir, adapters),
      save: (dir) => saveAdapter(dir, adapters, { baseModel, taskType: "CAUSAL_LM" })
    }
  }
  const policy =
    settings.method === "rac" ? chainPolicy("rac", { freeze: "random" }) : settings.method === "xgb" ? chainPolicy("xgb", { rank: settings.rank, stepSize: 1 }) : chainPolicy("cola")
  const chain = Chain.make({
    model,
    variant: chosen.variant,
    adapterConfig: chosen.config,
    policy,
    chain: { totalSteps: settings.steps, links: settings.links, optimizerAtKnot: knotOptimizer(settings), warmupSteps: settings.linkWarmup, seed: settings.seed }
  })
  chain.attach(optimizer)
  const name = settings.method === "cola" ? "COLA" : settings.method === "rac" ? "RAC-LoRA" : "XGBLoRA"
  return {
    describe: `${name}: ${chain.links} links of ${chosen.describe}${settings.linkWarmup > 0 ? `, ${settings.linkWarmup} warm-up steps per link` : ""}, optimizer ${settings.optimizerAtKnot} at knots`,
    knots: chain.knots,
    hooks: [chain.hook()],
    schedule: (base) => chain.schedule(base),
    checkpointFiles: () => chainCheckpointFiles(chain),
    restore: (dir) => restoreChain(chain, dir),
    save: (dir) => Effect.flatMap(exportChain(chain), (exported) => saveChainLora(dir, exported, { baseModel, taskType: "CAUSAL_LM" }))
  }
}

/**
 * Chains of adapters (`--method cola|rac|xgb`): links merged into the frozen weights at knots, the
 * optimizer reset at each; COLA trains the same adapter every link, RAC-LoRA freezes a random factor
 * per link, XGBLoRA trains rank-1 links on a random subset of layers merged with a step size.
 * Checkpoints hold the chain (finished links and the current one); the result is the whole chain as
 * one PEFT adapter, exactly, with output rows in the order of the model's Hugging Face form
 * (`model.peftRowOrder`).
 */
import { attempt, ConfigError } from "@peftkit/core"
import { Chain, chainCheckpointFiles, chainPolicy, type ChainPolicyName, exportChain, isDora, restoreChain, saveChainLora } from "@peftkit/cola"
import { Effect } from "effect"
import type { TrainOptions } from "../TrainOptions.js"
import { trainableVariants } from "../Variants.js"
import type { TrainingMethod } from "./Method.js"

/** The policy's options from `train`'s (COLA takes none). */
const policyOf = (name: ChainPolicyName, options: TrainOptions) => {
  switch (name) {
    case "rac":
      return chainPolicy("rac", { freeze: options.racFreeze })
    case "xgb":
      return chainPolicy("xgb", { rank: options.xgbRank, stepSize: options.xgbStepSize, ...(options.xgbLayers === undefined ? {} : { layers: options.xgbLayers }) })
    default:
      return chainPolicy("cola")
  }
}

const describePolicy = (name: ChainPolicyName, options: TrainOptions): string => {
  switch (name) {
    case "rac":
      return `, RAC-LoRA (frozen factor: ${options.racFreeze})`
    case "xgb":
      return `, XGBLoRA (${options.xgbLayers ?? "11/32 of the"} blocks per link, step size ${options.xgbStepSize})`
    default:
      return ""
  }
}

export const chainMethod = (name: ChainPolicyName): TrainingMethod => ({
  name,
  setup: ({ model, options, optimizer, steps }) =>
    attempt(() => {
      const chosen = trainableVariants[options.variant]
      // Refused here, before anything trains or is written, not at the first knot.
      if (name === "xgb" && options.variant === "dora") {
        throw new ConfigError({ field: "train.method", reason: "xgb merges with a step size on a subset of layers, which DoRA's row rescaling does not support; use --method cola or rac with --variant dora" })
      }
      model.setTrainable(false)
      const chain = Chain.make({
        model,
        variant: chosen.variant,
        adapterConfig: chosen.config(options),
        policy: policyOf(name, options),
        chain: { totalSteps: steps, links: options.links, optimizerAtKnot: options.knotOptimizer, warmupSteps: options.linkWarmup, seed: options.seed }
      })
      chain.attach(optimizer)
      return {
        // XGBLoRA's links have their own rank, which the variant's line should show.
        describe: `${chosen.describe(name === "xgb" ? { ...options, rank: options.xgbRank } : options)}${describePolicy(name, options)}, ${chain.links} links (knots at ${chain.knots.join(", ") || "none"})`,
        hooks: [chain.hook()],
        schedule: (base) => chain.schedule(base),
        checkpointFiles: () => chainCheckpointFiles(chain),
        restore: (dir) => restoreChain(chain, dir),
        save: (out, baseModel) =>
          Effect.gen(function* () {
            const exported = yield* exportChain(chain)
            yield* saveChainLora(out, exported, { baseModel, taskType: "CAUSAL_LM" })
            return `saved the ${chain.links}-link chain as one PEFT ${isDora(exported) ? "DoRA" : "LoRA"} of rank ${exported.rank}: ${out}`
          })
      }
    })
})

/**
 * Chain of LoRA: LoRA links merged into the frozen weights at knots, the optimizer reset at each;
 * checkpoints hold the chain (finished links and the current one) and the result is the whole chain
 * as one PEFT LoRA of rank links x r, exactly, with lora_B rows in the order of the model's Hugging
 * Face form (`model.peftRowOrder`).
 */
import { attempt } from "@peftkit/core"
import { Chain, chainCheckpointFiles, exportChain, restoreChain, saveChainLora } from "@peftkit/cola"
import { Effect } from "effect"
import { trainableVariants } from "../Variants.js"
import type { TrainingMethod } from "./Method.js"

export const colaMethod: TrainingMethod = {
  name: "cola",
  setup: ({ model, options, optimizer, steps }) =>
    attempt(() => {
      const chosen = trainableVariants[options.variant]
      model.setTrainable(false)
      const chain = Chain.make({
        model,
        variant: chosen.variant,
        adapterConfig: chosen.config(options),
        chain: { totalSteps: steps, links: options.links, optimizerAtKnot: options.knotOptimizer, warmupSteps: options.linkWarmup, seed: options.seed }
      })
      chain.attach(optimizer)
      return {
        describe: `${chosen.describe(options)}, ${chain.links} links (knots at ${chain.knots.join(", ") || "none"})`,
        hooks: [chain.hook()],
        schedule: (base) => chain.schedule(base),
        checkpointFiles: () => chainCheckpointFiles(chain),
        restore: (dir) => restoreChain(chain, dir),
        save: (out, baseModel) =>
          Effect.gen(function* () {
            const exported = yield* exportChain(chain)
            yield* saveChainLora(out, exported, { baseModel, taskType: "CAUSAL_LM" })
            return `saved the ${chain.links}-link chain as one PEFT LoRA of rank ${exported.rank}: ${out}`
          })
      }
    })
}

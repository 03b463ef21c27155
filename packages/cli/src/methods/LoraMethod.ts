/**
 * One adapter (LoRA or another `--variant`): adapters on the target modules, the base frozen; checkpoints hold the adapter in PEFT layout
 * plus its dropout stream, and the result is a PEFT adapter directory. Both are written with the
 * model's `peftRowOrder`, so they hold the rows of the model's Hugging Face form (a llama2.c model's
 * q/k rows in HF order) and load in PEFT on that form.
 */
import { AdapterSet, adapterSetFiles, attempt, decodeConfig, InvalidCheckpoint, readCheckpointFile, restoreAdapterWeights, saveAdapter } from "@peftkit/core"
import { Effect, Schema } from "effect"
import { trainableVariants } from "../Variants.js"
import type { TrainingMethod } from "./Method.js"

const RANDOM_STATE_FILE = "random_state.json"
const RandomState = Schema.Record({ key: Schema.String, value: Schema.Array(Schema.Number) })

export const loraMethod: TrainingMethod = {
  name: "lora",
  setup: ({ model, options, optimizer }) =>
    attempt(() => {
      const chosen = trainableVariants[options.variant]
      const config = chosen.config(options)
      model.setTrainable(false)
      const adapters = AdapterSet.inject(model, chosen.variant, config, { seed: options.seed })
      optimizer.setParameters(adapters.parameterGroups())
      return {
        describe: chosen.describe(options),
        hooks: [],
        schedule: (base) => base,
        checkpointFiles: () =>
          // Every trainable variant has a PEFT format, so `NoPeftFormat` cannot happen here.
          Effect.map(Effect.orDie(adapterSetFiles(adapters)), (files) => ({
            ...files,
            [RANDOM_STATE_FILE]: `${JSON.stringify(adapters.randomState(), null, 2)}\n`
          })),
        restore: (dir) =>
          Effect.gen(function* () {
            // Read and decode everything before any weight changes.
            const bytes = yield* readCheckpointFile(dir, RANDOM_STATE_FILE)
            const json = yield* Effect.try({
              try: () => JSON.parse(new TextDecoder().decode(bytes)) as unknown,
              catch: () => new InvalidCheckpoint({ path: `${dir}/${RANDOM_STATE_FILE}`, reason: "not JSON" })
            })
            const random = yield* decodeConfig(RandomState, json, "random_state")
            yield* restoreAdapterWeights(dir, adapters)
            adapters.setRandomState(random)
          }),
        save: (out, baseModel) =>
          Effect.as(saveAdapter(out, adapters, { baseModel, taskType: "CAUSAL_LM" }), `saved the adapter (PEFT layout): ${out}`)
      }
    })
}

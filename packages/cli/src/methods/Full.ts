/**
 * Full fine-tuning: every weight trains; checkpoints hold the whole model and the result is a
 * Hugging Face model directory.
 */
import { attempt, InvalidCheckpoint, readCheckpointFile, Safetensors, ShapeMismatch } from "@peftkit/core"
import { saveHfModel } from "@peftkit/models"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { TrainingMethod } from "./Method.js"

const MODEL_STATE_FILE = "model.safetensors"

export const full: TrainingMethod = {
  name: "full",
  setup: ({ model, optimizer }) =>
    attempt(() => {
      model.setTrainable(true)
      optimizer.setParameters([{ params: model.parameters() }])
      return {
        describe: "all weights",
        hooks: [],
        schedule: (base) => base,
        checkpointFiles: () =>
          Effect.acquireUseRelease(
            Effect.sync(() => model.stateDict()),
            (tensors) => Effect.map(Effect.promise(() => Safetensors.encodeTensorsAsync(tensors)), (bytes) => ({ [MODEL_STATE_FILE]: bytes })),
            (tensors) => Effect.sync(() => Object.values(tensors).forEach((t) => t.dispose()))
          ),
        restore: (dir) =>
          Effect.gen(function* () {
            const path = `${dir}/${MODEL_STATE_FILE}`
            const file = yield* Safetensors.decode(yield* readCheckpointFile(dir, MODEL_STATE_FILE), path)
            const views = new Map(file.tensors.map((view) => [view.name, view]))
            const byName = new Map(model.parameters().map((param) => [param.name, param.variable]))
            // All or nothing: every parameter present with its shape before any is assigned.
            for (const [name, variable] of byName) {
              const view = views.get(name)
              if (view === undefined) return yield* new InvalidCheckpoint({ path, tensor: name, reason: "missing" })
              if (!tf.util.arraysEqual([...view.shape], variable.shape)) return yield* new ShapeMismatch({ what: name, expected: variable.shape, actual: view.shape })
            }
            for (const [name, variable] of byName) tf.tidy(() => variable.assign(Safetensors.toTensor(views.get(name)!)))
          }),
        save: (out) =>
          Effect.acquireUseRelease(
            Effect.sync(() => model.stateDict()),
            (tensors) => saveHfModel(out, model.config, tensors),
            (tensors) => Effect.sync(() => Object.values(tensors).forEach((t) => t.dispose()))
          ).pipe(Effect.as(`saved the fine-tuned model (HF layout): ${out}`))
      }
    })
}

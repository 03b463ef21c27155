/**
 * The Node half of the round trip: the adapter files the page downloaded, loaded with peftkit in Node
 * (the CPU backend) onto the same base model, give the logits the page reported for its trained model.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { providers as cpuBackends } from "@peftkit/backend-cpu"
import { Backend, loadAdapter } from "@peftkit/core"
import { dora, lora } from "@peftkit/lora"
import { loadCausalLM } from "@peftkit/models"
import { vera } from "@peftkit/vera"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"

export interface Probe {
  readonly inputIds: ReadonlyArray<number>
  readonly positions: ReadonlyArray<number>
  readonly logits: ReadonlyArray<ReadonlyArray<number>>
}

/** Largest |node - page| over the probe's logits, and the largest |page logit| (for scale). */
/** `adapterDir` undefined: the model alone (a merged download). */
export const compareWithNode = (modelPath: string, adapterDir: string | undefined, probe: Probe) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const { model } = yield* loadCausalLM(modelPath)
      if (adapterDir !== undefined) yield* loadAdapter(adapterDir, model, [dora, vera, lora])
      const logits = tf.tidy(() => tf.squeeze(model.forward(tf.tensor2d([probe.inputIds as Array<number>], [1, probe.inputIds.length], "int32")), [0]))
      const rows = (yield* Effect.promise(() => logits.array())) as Array<Array<number>>
      logits.dispose()
      model.dispose()
      let maxDiff = 0
      let maxAbs = 0
      probe.positions.forEach((position, i) => {
        probe.logits[i]!.forEach((value, j) => {
          maxDiff = Math.max(maxDiff, Math.abs(value - rows[position]![j]!))
          maxAbs = Math.max(maxAbs, Math.abs(value))
        })
      })
      return { maxDiff, maxAbs }
    }).pipe(Effect.provide(Layer.mergeAll(Backend.layer("cpu", cpuBackends), NodeFileSystem.layer)))
  )

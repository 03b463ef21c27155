/**
 * What the chain resume tests share: training a chain with core's loop (the chain's knot hook,
 * optionally a checkpoint after every step) and a checkpoint writer that saves the chain and the
 * optimizer state the way `peftkit train` does.
 */
import type { FileSystem } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { MetricsLog, type Optimizer, optimizerStateFile, ProgressReporter, type Schedule, train, writeCheckpoint } from "@peftkit/core"
import type * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { type Chain, chainCheckpointFiles, type ChainableConfig } from "../../src/index.js"

const services = Layer.merge(ProgressReporter.silent, MetricsLog.none)

export type StepCheckpoint = (step: number) => Effect.Effect<void, unknown, FileSystem.FileSystem>

/** Runs steps `from` to `to` of `chain`; with `checkpoint`, it is called after every step. */
export const chainTrainer =
  <C extends ChainableConfig>(options: { readonly chain: Chain<C>; readonly optimizer: Optimizer; readonly loss: () => tf.Scalar; readonly schedule: Schedule }) =>
  (from: number, to: number, checkpoint?: StepCheckpoint) =>
    Effect.runPromise(
      train({
        loss: options.loss,
        batch: () => undefined,
        optimizer: options.optimizer,
        steps: to,
        startStep: from,
        learningRate: options.schedule,
        hooks: [options.chain.hook()],
        profileEvery: 0,
        ...(checkpoint ? { checkpointEvery: 1, checkpoint } : {})
      }).pipe(Effect.provide(services), Effect.provide(NodeFileSystem.layer)) as Effect.Effect<unknown>
    )

/** Writes a checkpoint of `chain` and `optimizer` under `root` at `step` (step-NNNNNN). */
export const saveChainCheckpoint = <C extends ChainableConfig>(root: string, chain: Chain<C>, optimizer: Optimizer): StepCheckpoint => (step) =>
  Effect.asVoid(
    Effect.gen(function* () {
      const files = { ...(yield* chainCheckpointFiles(chain)), "optimizer.safetensors": yield* optimizerStateFile(optimizer) }
      return yield* writeCheckpoint(root, { step, link: chain.link }, files)
    })
  )

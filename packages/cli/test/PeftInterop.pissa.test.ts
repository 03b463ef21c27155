/**
 * Issue 11, item 3 (PiSSA) against Python's PEFT 0.21 on the tiny Llama and OPT of
 * `fixtures/peft-variants`:
 * - peftkit's exact-SVD PiSSA init (`init: "pissa"`) equals PEFT's `pissa_init` fixture (A and B up to
 *   the sign of each singular pair, 1e-4), and the adapted model at init gives the base logits;
 * - that unconverted PEFT file loads with `[lora]` on the original base (the residual recomputed, as
 *   PEFT's loader does) and gives the base logits (it is untrained);
 * - a PiSSA COLA chain (3 links, the last at another rank) trains, and its export, one plain LoRA,
 *   gives the chain model's logits on the ORIGINAL base model; restoring such a chain from a chain
 *   checkpoint after a knot onto a fresh original model gives the chain model, bit for bit.
 * (The converted `pissa` fixture, PEFT's rank-2r LoRA, is in `PeftInterop.lora.test.ts`.)
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Chain, chainCheckpointFiles, exportChain, restoreChain, saveChainLora } from "@peftkit/cola"
import { AdapterSet, loadAdapter, makeSchedule, MetricsLog, ProgressReporter, readAdapterConfigJson, Safetensors, train } from "@peftkit/core"
import { fromPeftConfig, lora, type LoraAdapter, loraConfig, readPeftLora } from "@peftkit/lora"
import { loadCausalLM } from "@peftkit/models"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { adapterDir, FIXTURE_MODELS, type FixtureModel, logitsOf, maxAbsDiff, modelDir, peftkitLogits, reference, runWith } from "./peftInterop.js"

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!)

describe.each(FIXTURE_MODELS)("PiSSA against PEFT, tiny %s", (model: FixtureModel) => {
  it("exact-SVD init: A and B equal PEFT's up to each pair's sign (1e-4); the adapted logits at init are the base logits", () =>
    runWith(
      Effect.gen(function* () {
        const dir = adapterDir(model, "pissa_init")
        const config = yield* fromPeftConfig(yield* readAdapterConfigJson(dir))
        expect(config.init).toBe("pissa")
        const peft = (yield* readPeftLora(dir)).tensors
        const loaded = (yield* loadCausalLM(modelDir(model))).model
        try {
          const base = logitsOf(loaded)
          const set = AdapterSet.inject(loaded, lora, config, { seed: 0 })
          expect(set.entries.map(({ layer }) => layer.name).sort()).toEqual([...peft.keys()].sort())
          let worst = 0
          for (const { layer, adapter } of set.entries) {
            const { loraA, loraB } = (adapter as LoraAdapter).tensors
            const theirs = peft.get(layer.name)!
            const peftA = Safetensors.toTensor(theirs["lora_A.weight"]!)
            const peftB = Safetensors.toTensor(theirs["lora_B.weight"]!)
            // A singular pair is defined up to a common sign: flip ours to PEFT's by A's rows.
            const signs = tf.tidy(() => tf.sign(tf.sum(tf.mul(loraA, peftA), 1)))
            const a = tf.mul(loraA, tf.reshape(signs, [-1, 1]))
            const b = tf.mul(loraB, signs)
            worst = Math.max(worst, maxDiff(a, peftA), maxDiff(b, peftB))
            tf.dispose([peftA, peftB, signs, a, b])
          }
          console.log(`${model} pissa_init: max |A, B (sign-matched) - PEFT's| = ${worst.toExponential(2)}`)
          expect(worst).toBeLessThan(1e-4)
          const adapted = logitsOf(loaded)
          expect(maxAbsDiff(adapted, base)).toBeLessThan(1e-5)
          expect(maxAbsDiff(adapted, reference().models[model].base)).toBeLessThan(1e-4)
          set.remove()
        } finally {
          loaded.dispose()
        }
      })
    ))

  it("PEFT's unconverted exact-SVD file loads with [lora] on the original base: the residual is recomputed, the logits are the base's (untrained)", async () => {
    const logits = await peftkitLogits(model, adapterDir(model, "pissa_init"), [lora])
    const diff = maxAbsDiff(logits, reference().models[model].base)
    console.log(`${model} pissa_init loaded: max |logits - PEFT's base logits| = ${diff.toExponential(2)}`)
    expect(diff).toBeLessThan(1e-4)
  })

  it("a PiSSA COLA chain (3 links, ranks 2, 2, 1) trains and exports as ONE plain LoRA that gives its logits on the original base (1e-5)", () =>
    runWith(
      Effect.gen(function* () {
        const trained = (yield* loadCausalLM(modelDir(model))).model
        const fresh = (yield* loadCausalLM(modelDir(model))).model
        try {
          const targets = model === "llama" ? ["q_proj", "v_proj", "o_proj"] : ["q_proj", "v_proj", "out_proj"]
          const steps = 9
          const chain = Chain.make({
            model: trained,
            variant: lora,
            adapterConfig: loraConfig({ r: 2, alpha: 4, init: "pissa_niter_2", targetModules: targets }),
            chain: { totalSteps: steps, links: 3, ranks: [2, 2, 1], seed: 3 }
          })
          const optimizer = chain.attach(adamw([], { weightDecay: 0 }))
          const sequences = reference().sequences
          const tokens = tf.tensor2d(sequences.map((row) => [...row]), undefined, "int32")
          const base = logitsOf(trained)
          expect(maxAbsDiff(base, reference().models[model].base)).toBeLessThan(1e-4)
          // Next-token cross-entropy on the reference sequences.
          const inputs = tf.slice(tokens, [0, 0], [-1, sequences[0]!.length - 1]) as tf.Tensor2D
          const labels = tf.oneHot(tf.slice(tokens, [0, 1], [-1, -1]), 64)
          const loss = (_: undefined, training: boolean) => tf.losses.softmaxCrossEntropy(labels, trained.forward(inputs, { training })) as tf.Scalar
          const before = tf.tidy(() => loss(undefined, false).dataSync()[0]!)
          yield* train({ loss, batch: () => undefined, optimizer, steps, learningRate: chain.schedule(makeSchedule({ kind: "constant", peak: 0.05, totalSteps: steps })), hooks: [chain.hook()], profileEvery: 0 }).pipe(
            Effect.provide(Layer.merge(ProgressReporter.silent, MetricsLog.none))
          )
          const after = tf.tidy(() => loss(undefined, false).dataSync()[0]!)
          expect(chain.history.length).toBe(2)
          expect(after).toBeLessThan(before)
          const chainLogits = logitsOf(trained)
          expect(maxAbsDiff(chainLogits, base)).toBeGreaterThan(0.05)

          const exported = yield* exportChain(chain)
          // Each link is its net update [sB, -sB0] [A; A0]: rank 2r per link.
          expect(exported.rank).toBe(2 * (2 + 2 + 1))
          const dir = mkdtempSync(join(tmpdir(), "peftkit-pissa-chain-"))
          yield* saveChainLora(dir, exported)
          yield* loadAdapter(dir, fresh, [lora])
          const diff = maxAbsDiff(logitsOf(fresh), chainLogits)
          console.log(`${model} PiSSA chain: loss ${before.toFixed(4)} -> ${after.toFixed(4)}; export on the original base: max |logits - chain's| = ${diff.toExponential(2)}`)
          expect(diff).toBeLessThan(1e-5)
          // A chain checkpoint after a knot: the restore re-runs the knots (each link's init is the merged
          // weight's), so the resumed chain on a fresh copy of the original model is the trained one, bit for bit.
          const checkpoint = mkdtempSync(join(tmpdir(), "peftkit-pissa-ckpt-"))
          for (const [name, content] of Object.entries(yield* chainCheckpointFiles(chain))) writeFileSync(join(checkpoint, name), content)
          const again = (yield* loadCausalLM(modelDir(model))).model
          const resumed = Chain.make({ model: again, variant: lora, adapterConfig: loraConfig({ r: 2, alpha: 4, init: "pissa_niter_2", targetModules: targets }), chain: { totalSteps: steps, links: 3, ranks: [2, 2, 1], seed: 3 } })
          resumed.attach(adamw([], { weightDecay: 0 }))
          yield* restoreChain(resumed, checkpoint)
          expect(resumed.link).toBe(2)
          expect(logitsOf(again)).toEqual(chainLogits)
          again.dispose()
          tf.dispose([tokens, inputs, labels])
          optimizer.dispose()
        } finally {
          trained.dispose()
          fresh.dispose()
        }
      }).pipe(Effect.provide(NodeFileSystem.layer))
    ))
})

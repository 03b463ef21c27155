/**
 * Issue 10, item 1: adapters trained on a llama2.c checkpoint (stories260K.bin, shared data; skipped
 * when absent) are right on the Hugging Face form of the same model. llama2.c keeps q_proj/k_proj
 * rows in its interleaved RoPE order; PEFT files hold them in HF's half order (the model's
 * `peftRowOrder`), on save and back on load.
 *
 * - fixtures/peft-rope/{lora,cola}: adapters peftkit trained on the .bin (make-adapters.mjs);
 *   logits.json: what Python's PEFT 0.21 + transformers 5.18 give with them on the HF form of the
 *   model, built there independently of peftkit (generate.py). peftkit on the .bin must agree.
 * - A fresh LoRA and COLA run: the saved adapter gives the same logits on the .bin and on the HF
 *   directory peftkit's own writer makes of it.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import { providers } from "@peftkit/backend-cpu"
import { Backend, loadAdapter, saveAdapter } from "@peftkit/core"
import { lora } from "@peftkit/lora"
import { type CausalLM, interleavedToHalf, loadCausalLM, saveHfModel } from "@peftkit/models"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { run } from "../src/index.js"

const repo = fileURLToPath(new URL("../../..", import.meta.url))
const stories = join(repo, "../shared/data/models/stories260K/stories260K.bin")
const data = fileURLToPath(new URL("./fixtures/apples", import.meta.url))
const fixtures = fileURLToPath(new URL("./fixtures/peft-rope", import.meta.url))
const haveShared = existsSync(stories)

interface Reference {
  readonly versions: Record<string, string>
  readonly sequences: Array<Array<number>>
  readonly vocab_ids: Array<number>
  readonly base: Array<Array<Array<number>>>
  readonly lora: { readonly logits: Array<Array<Array<number>>>; readonly max_abs_effect: number }
  readonly cola: { readonly logits: Array<Array<Array<number>>>; readonly max_abs_effect: number }
}
const reference = JSON.parse(readFileSync(join(fixtures, "logits.json"), "utf8")) as Reference

const cli = async (...argv: Array<string>) => {
  let stderr = ""
  const err = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => ((stderr += String(chunk)), true))
  const out = vi.spyOn(process.stdout, "write").mockImplementation(() => true)
  try {
    return { code: await run(argv, () => undefined), stderr }
  } finally {
    err.mockRestore()
    out.mockRestore()
  }
}

const runWith = <A, E>(effect: Effect.Effect<A, E, any>): Promise<A> =>
  Effect.runPromise(effect.pipe(Effect.provide(Backend.layer("wasm", providers)), Effect.provide(NodeFileSystem.layer)) as Effect.Effect<A, E>)

/** Logits [seq][pos][vocab_ids] of the reference sequences. */
const logitsOf = (model: CausalLM): Array<Array<Array<number>>> =>
  tf.tidy(() => {
    const ids = tf.tensor2d(reference.sequences, undefined, "int32")
    const picked = tf.gather(model.forward(ids), tf.tensor1d(reference.vocab_ids, "int32"), 2)
    return picked.arraySync() as Array<Array<Array<number>>>
  })

const maxDiff = (a: Array<Array<Array<number>>>, b: Array<Array<Array<number>>>): number =>
  Math.max(...a.flatMap((seq, i) => seq.flatMap((pos, j) => pos.map((v, k) => Math.abs(v - b[i]![j]![k]!)))))

/** Full logits of the reference sequences. */
const fullLogits = (model: CausalLM): tf.Tensor3D => tf.tidy(() => model.forward(tf.tensor2d(reference.sequences, undefined, "int32")))

let scratch: string
let hfDir: string

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "peftkit-peft-rope-"))
  hfDir = join(scratch, "hf")
  if (!haveShared) return
  // The HF form of the .bin, by peftkit's own writer (what `peftkit merge` writes).
  await runWith(
    Effect.gen(function* () {
      const model = (yield* loadCausalLM(stories)).model
      const state = model.stateDict()
      yield* saveHfModel(hfDir, model.config, state)
      Object.values(state).forEach((t) => t.dispose())
      model.dispose()
    })
  )
})

afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe.skipIf(!haveShared)("RoPE row order of PEFT files (shared data)", () => {
  it("the row order a llama2.c model exposes is the permutation its HF writer applies to q/k weights", () => {
    const order = (loaded: CausalLM) => [loaded.peftRowOrder?.("model.layers.0.self_attn.q_proj"), loaded.peftRowOrder?.("model.layers.3.self_attn.k_proj"), loaded.peftRowOrder?.("model.layers.0.self_attn.v_proj")]
    return runWith(
      Effect.gen(function* () {
        const bin = (yield* loadCausalLM(stories)).model
        const hf = (yield* loadCausalLM(hfDir)).model
        const [q, k, v] = order(bin)
        expect(v).toBeUndefined()
        expect(order(hf)).toEqual([undefined, undefined, undefined])
        const rows = tf.tidy(() => tf.reshape(tf.range(0, 64), [64, 1]))
        expect(tf.tidy(() => tf.gather(rows, tf.tensor1d([...q!], "int32")).dataSync())).toEqual(tf.tidy(() => interleavedToHalf(rows, 8).dataSync()))
        expect(tf.tidy(() => tf.gather(tf.slice(rows, [0, 0], [32, 1]), tf.tensor1d([...k!], "int32")).dataSync())).toEqual(tf.tidy(() => interleavedToHalf(tf.slice(rows, [0, 0], [32, 1]), 4).dataSync()))
        rows.dispose()
        bin.dispose()
        hf.dispose()
      })
    )
  })
})

describe.skipIf(!haveShared)("adapters trained on stories260K.bin, in Python PEFT on its HF form (shared data)", () => {
  it("the base models agree (the fixture's HF conversion is transformers')", async () => {
    const base = await runWith(Effect.map(loadCausalLM(stories), ({ model }) => {
      const logits = logitsOf(model)
      model.dispose()
      return logits
    }))
    expect(maxDiff(base, reference.base)).toBeLessThan(1e-4)
  })

  for (const name of ["lora", "cola"] as const) {
    it(`${name}: PEFT's logits on the HF model are peftkit's on the .bin and on peftkit's HF form, within 1e-4`, async () => {
      // The adapter must matter, or agreement would prove nothing.
      expect(reference[name].max_abs_effect).toBeGreaterThan(1)
      const dir = join(fixtures, name)
      const [onBin, onHf] = await runWith(
        Effect.gen(function* () {
          const results: Array<Array<Array<Array<number>>>> = []
          for (const path of [stories, hfDir]) {
            const model = (yield* loadCausalLM(path)).model
            yield* loadAdapter(dir, model, [lora])
            results.push(logitsOf(model))
            model.dispose()
          }
          return results
        })
      )
      const diffBin = maxDiff(onBin!, reference[name].logits)
      const diffHf = maxDiff(onHf!, reference[name].logits)
      console.log(`${name}: max |peftkit .bin - PEFT on HF| = ${diffBin.toExponential(2)}, peftkit HF form: ${diffHf.toExponential(2)}`)
      expect(diffBin).toBeLessThan(1e-4)
      expect(diffHf).toBeLessThan(1e-4)
    })

    it(`${name}: loaded onto the .bin and saved again, the fixture's tensors come back unchanged`, async () => {
      const out = join(scratch, `resaved-${name}`)
      await runWith(
        Effect.gen(function* () {
          const model = (yield* loadCausalLM(stories)).model
          const adapters = yield* loadAdapter(join(fixtures, name), model, [lora])
          yield* saveAdapter(out, adapters, { rowOrder: model.peftRowOrder })
          model.dispose()
        })
      )
      expect(readFileSync(join(out, "adapter_model.safetensors")).equals(readFileSync(join(fixtures, name, "adapter_model.safetensors")))).toBe(true)
    })
  }

  it("a LoRA and a COLA run on the .bin save adapters that give the same logits on the .bin and on its HF form", async () => {
    for (const [name, flags] of [["lora", ["--method", "lora", "--rank", "4"]], ["cola", ["--method", "cola", "--links", "2", "--rank", "2"]]] as const) {
      const adapter = join(scratch, `trained-${name}`)
      const trained = await cli("train", "--model", stories, "--data", data, ...flags, "--target-modules", "q_proj,k_proj,v_proj", "--iters", "4", "--batch-size", "4", "--learning-rate", "2e-2", "--adapter-path", adapter, "--backend", "wasm", "--seed", "3")
      expect(trained.code, trained.stderr).toBe(0)
      const diff = await runWith(
        Effect.gen(function* () {
          const logits: Array<tf.Tensor3D> = []
          for (const path of [stories, hfDir]) {
            const model = (yield* loadCausalLM(path)).model
            yield* loadAdapter(adapter, model, [lora])
            logits.push(fullLogits(model))
            model.dispose()
          }
          const base = (yield* loadCausalLM(stories)).model
          const plain = fullLogits(base)
          base.dispose()
          const result = tf.tidy(() => ({
            sides: tf.max(tf.abs(tf.sub(logits[0]!, logits[1]!))).dataSync()[0]!,
            effect: tf.max(tf.abs(tf.sub(logits[0]!, plain))).dataSync()[0]!
          }))
          tf.dispose([...logits, plain])
          return result
        })
      )
      expect(diff.effect, name).toBeGreaterThan(0.1)
      expect(diff.sides, name).toBeLessThan(1e-4)
    }
  })
})

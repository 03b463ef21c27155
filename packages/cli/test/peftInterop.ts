/**
 * Interop with Python's PEFT on the tiny fixture models of `fixtures/peft-variants` (see its README):
 * a test loads an adapter directory with core's `loadAdapter(dir, model, variants)` onto the fixture
 * Llama or OPT and compares peftkit's logits with those PEFT 0.21 computed (`logits.json` for the
 * adapters PEFT wrote, `peftkit-written-logits.json` for the ones peftkit trained and PEFT loaded).
 *
 *     const { maxDiff } = await expectPeftLogits({ model: "llama", adapter: "dora", variants: [dora, lora] })
 *
 * fails unless every logit (every sequence, position and vocabulary id) is within 1e-4 of PEFT's,
 * and unless the adapter really moves them (PEFT's max |adapted - base| above `minEffect`, 0.1 by
 * default, so agreement cannot come from an adapter that does nothing).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { expect } from "vitest"
import { providers } from "@peftkit/backend-cpu"
import { type AdapterVariant, Backend, loadAdapter } from "@peftkit/core"
import { type CausalLM, loadCausalLM } from "@peftkit/models"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"

/** The fixture folder: `llama/`, `opt/`, `peft-written/`, `peftkit-written/`, the logits files. */
export const fixtures = fileURLToPath(new URL("./fixtures/peft-variants", import.meta.url))

export const FIXTURE_MODELS = ["llama", "opt"] as const
export type FixtureModel = (typeof FIXTURE_MODELS)[number]

/** Who wrote the adapter: PEFT (`generate.py`) or peftkit (`make-adapters.mjs`, then PEFT computed the logits). */
export type AdapterSource = "peft-written" | "peftkit-written"

/** Logits [sequence][position][vocabulary id]. */
export type Logits = ReadonlyArray<ReadonlyArray<ReadonlyArray<number>>>

export interface ReferenceAdapter {
  readonly logits: Logits
  /** PEFT's max |adapted - base| over all logits. */
  readonly max_abs_effect: number
  /** PEFT-written only: per adapted module, the r (and LoRA's lora_alpha, scaling) PEFT resolved from the config. */
  readonly modules?: Readonly<Record<string, { readonly r: number; readonly lora_alpha?: number; readonly scaling?: number }>>
}

export interface Reference {
  readonly versions: Readonly<Record<string, string>>
  /** Token ids, each sequence the same length (no padding). */
  readonly sequences: ReadonlyArray<ReadonlyArray<number>>
  readonly models: Readonly<Record<FixtureModel, { readonly base: Logits; readonly adapters: Readonly<Record<string, ReferenceAdapter>> }>>
}

const referenceFiles: Record<AdapterSource, string> = { "peft-written": "logits.json", "peftkit-written": "peftkit-written-logits.json" }
const cache = new Map<AdapterSource, Reference>()

/** PEFT's logits for the adapters of `source` (parsed once). */
export const reference = (source: AdapterSource = "peft-written"): Reference => {
  let value = cache.get(source)
  if (value === undefined) {
    value = JSON.parse(readFileSync(join(fixtures, referenceFiles[source]), "utf8")) as Reference
    cache.set(source, value)
  }
  return value
}

/** The base model's directory (Hugging Face layout, with a character-level tokenizer.json). */
export const modelDir = (model: FixtureModel): string => join(fixtures, model)

/** An adapter's directory, e.g. `peft-written/llama/dora`. */
export const adapterDir = (model: FixtureModel, adapter: string, source: AdapterSource = "peft-written"): string => join(fixtures, source, model, adapter)

/** The adapter names `source` has a reference for on `model`. */
export const referenceAdapters = (model: FixtureModel, source: AdapterSource = "peft-written"): ReadonlyArray<string> =>
  existsSync(join(fixtures, referenceFiles[source])) ? Object.keys(reference(source).models[model]?.adapters ?? {}) : []

/** Runs an effect on the wasm CPU backend with the Node file system (what the other CLI tests do). */
export const runWith = <A, E>(effect: Effect.Effect<A, E, any>): Promise<A> =>
  Effect.runPromise(effect.pipe(Effect.provide(Backend.layer("wasm", providers)), Effect.provide(NodeFileSystem.layer)) as Effect.Effect<A, E>)

/** The model's logits for the reference sequences, as nested arrays. */
export const logitsOf = (model: CausalLM, sequences: ReadonlyArray<ReadonlyArray<number>> = reference().sequences): Array<Array<Array<number>>> =>
  tf.tidy(() => model.forward(tf.tensor2d(sequences.map((row) => [...row]), undefined, "int32")).arraySync())

/** max |a - b| over all entries; shapes must agree (a mismatch throws rather than passing). */
export const maxAbsDiff = (a: Logits, b: Logits): number => {
  if (a.length !== b.length) throw new Error(`sequence count ${a.length} vs ${b.length}`)
  let max = 0
  a.forEach((seq, i) => {
    if (seq.length !== b[i]!.length) throw new Error(`sequence ${i}: length ${seq.length} vs ${b[i]!.length}`)
    seq.forEach((pos, j) => {
      if (pos.length !== b[i]![j]!.length) throw new Error(`sequence ${i} position ${j}: ${pos.length} vs ${b[i]![j]!.length} logits`)
      pos.forEach((v, k) => {
        const d = Math.abs(v - b[i]![j]![k]!)
        // NaN never compares greater: count it as infinitely far.
        max = Number.isNaN(d) ? Infinity : Math.max(max, d)
      })
    })
  })
  return max
}

/** peftkit's logits of the fixture model, with the adapter in `dir` loaded by `variants` (none: the base model). */
export const peftkitLogits = (model: FixtureModel, dir: string | undefined, variants: ReadonlyArray<AdapterVariant<any>> = []): Promise<Array<Array<Array<number>>>> =>
  runWith(
    Effect.gen(function* () {
      const loaded = (yield* loadCausalLM(modelDir(model))).model
      try {
        if (dir !== undefined) yield* loadAdapter(dir, loaded, variants)
        return logitsOf(loaded)
      } finally {
        loaded.dispose()
      }
    })
  )

/**
 * Why peftkit refuses to load an adapter (the failure's message, with its tag), or undefined when it
 * loads. For the "not supported yet" cases a variant's tests replace.
 */
export const loadFailure = (model: FixtureModel, dir: string, variants: ReadonlyArray<AdapterVariant<any>>): Promise<string | undefined> =>
  runWith(
    Effect.gen(function* () {
      const loaded = (yield* loadCausalLM(modelDir(model))).model
      const result = yield* Effect.either(loadAdapter(dir, loaded, variants))
      loaded.dispose()
      if (result._tag === "Right") return undefined
      const error = result.left as { readonly _tag?: string; readonly message?: string }
      return `${error._tag ?? "Error"}: ${error.message ?? String(error)}`
    })
  )

export interface PeftLogitsCase {
  readonly model: FixtureModel
  /** The adapter's directory name under `peft-written/<model>/` (or `peftkit-written/<model>/`). */
  readonly adapter: string
  /** What `loadAdapter` dispatches on, e.g. `[lora]`, `[dora, lora]`, `[vera]`. */
  readonly variants: ReadonlyArray<AdapterVariant<any>>
  readonly source?: AdapterSource
  /** Largest allowed |peftkit - PEFT| (default 1e-4). */
  readonly tolerance?: number
  /** PEFT's max |adapted - base| must exceed this (default 0.1), or the comparison proves nothing. */
  readonly minEffect?: number
}

/**
 * Loads the fixture adapter in peftkit and expects PEFT's logits within `tolerance`; returns the
 * measured max |peftkit - PEFT| and PEFT's effect size (and logs both, for the record).
 */
export const expectPeftLogits = async (c: PeftLogitsCase): Promise<{ readonly maxDiff: number; readonly effect: number }> => {
  const source = c.source ?? "peft-written"
  const expected = reference(source).models[c.model]?.adapters[c.adapter]
  if (expected === undefined) throw new Error(`no PEFT reference for ${source}/${c.model}/${c.adapter}: rerun generate.py${source === "peftkit-written" ? " --peftkit-written" : ""}`)
  const minEffect = c.minEffect ?? 0.1
  const tolerance = c.tolerance ?? 1e-4
  expect(expected.max_abs_effect, `${c.adapter} must move PEFT's logits`).toBeGreaterThan(Math.max(minEffect, 100 * tolerance))
  const actual = await peftkitLogits(c.model, adapterDir(c.model, c.adapter, source), c.variants)
  const maxDiff = maxAbsDiff(actual, expected.logits)
  console.log(`${source} ${c.model}/${c.adapter}: max |peftkit - PEFT| = ${maxDiff.toExponential(2)} (PEFT's max |adapted - base| = ${expected.max_abs_effect.toFixed(3)})`)
  expect(maxDiff, `${c.model}/${c.adapter}: max |peftkit - PEFT|`).toBeLessThan(tolerance)
  return { maxDiff, effect: expected.max_abs_effect }
}

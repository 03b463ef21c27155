/**
 * `defineAdapter` derives a full adapter from a declaration: parameters (trainable tensors only),
 * state dicts with key and shape checks, all-or-nothing loads, re-initialisation, the dropout stream
 * and its state, disposal; and save/load dispatch on a variant's PEFT format.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  AdapterSet,
  ConfigError,
  decodeConfig,
  defineAdapter,
  type DefinedAdapter,
  init,
  InvalidCheckpoint,
  Linear,
  loadAdapter,
  NoPeftFormat,
  type PeftFormat,
  saveAdapter,
  ShapeMismatch,
  TargetModulesSchema
} from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})
const dir = mkdtempSync(join(tmpdir(), "peftkit-define-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A toy "scale" variant: y = base + (x * d) W^T-free update, delta = W diag(d)... kept simple: y = base + x U^T with U = u v^T. */
const OuterConfig = Schema.Struct({ targetModules: TargetModulesSchema, rate: Schema.Number })
type OuterConfig = typeof OuterConfig.Type

const outerFormat: PeftFormat<OuterConfig> = {
  peftType: "OUTER",
  accepts: (json) => json.peft_type === "OUTER",
  encodeConfig: (config) => ({ peft_type: "OUTER", target_modules: config.targetModules, dropout: config.rate }),
  decodeConfig: (json) =>
    decodeConfig(OuterConfig, { targetModules: (json as { target_modules?: unknown }).target_modules, rate: (json as { dropout?: unknown }).dropout }, "adapter_config")
}

const tensors = (layer: { readonly inFeatures: number; readonly outFeatures: number }) => ({
  u: { shape: [layer.outFeatures, 1], init: init.normal(0.5), key: "outer_u.weight" },
  v: { shape: [1, layer.inFeatures], init: init.kaimingUniform, trainable: false, key: "outer_v.weight" }
})

const outer = defineAdapter({
  name: "outer",
  format: outerFormat,
  tensors: (layer, _config: OuterConfig) => tensors(layer),
  forward: ({ x, base, tensors: { u, v }, config, dropout }) => tf.add(base, tf.matMul(tf.matMul(dropout(x, config.rate), v, false, true), u, false, true)),
  delta: ({ tensors: { u, v } }) => tf.matMul(u, v),
  factors: ({ tensors: { u, v } }) => ({ a: v, b: u })
})

const unsaveable = defineAdapter({
  name: "unsaveable",
  tensors: (layer, _config: OuterConfig) => tensors(layer),
  forward: ({ base }) => base,
  delta: ({ layer }) => tf.zeros([layer.outFeatures, layer.inFeatures])
})

const makeLayer = () => new Linear("blocks.0.fc", tf.randomNormal([5, 4], 0, 1, "float32", 1))
const config: OuterConfig = { targetModules: ["fc"], rate: 0 }

describe("defineAdapter", () => {
  it("derives parameters (trainable tensors only, PEFT-named), a state dict of every tensor, and factors whose product is delta", () => {
    const layer = makeLayer()
    const set = AdapterSet.inject({ linears: () => [layer] }, outer, config, { seed: 3 })
    const adapter = set.entries[0]!.adapter as DefinedAdapter<OuterConfig, "u" | "v">
    expect(set.parameters().map((p) => p.name)).toEqual(["blocks.0.fc.outer_u.weight"])
    expect(adapter.tensors.v.trainable).toBe(false)
    const state = adapter.stateDict()
    expect(Object.keys(state)).toEqual(["outer_u.weight", "outer_v.weight"])
    const { a, b } = adapter.factors!()
    const delta = adapter.delta(layer)
    expect(tf.max(tf.abs(tf.sub(tf.matMul(b, a), delta))).dataSync()[0]).toBe(0)
    // The factors are copies the caller owns: disposing them leaves the adapter intact.
    tf.dispose([a, b, delta, ...Object.values(state)])
    expect(adapter.tensors.v.isDisposed).toBe(false)
    set.remove()
    layer.dispose()
  })

  it("gradients of the derived parameters match central finite differences (rel. err < 1e-3)", () => {
    const layer = makeLayer()
    const set = AdapterSet.inject({ linears: () => [layer] }, outer, config, { seed: 4 })
    const u = set.parameters()[0]!.variable
    const x = tf.randomNormal([3, 4], 0, 1, "float32", 5)
    const loss = () => tf.sum(tf.square(layer.apply(x, true))) as tf.Scalar
    const { grads } = tf.variableGrads(loss, [u])
    const analytic = grads[u.name]!.dataSync()
    const base = u.dataSync().slice()
    const eps = 1e-2
    for (let i = 0; i < base.length; i++) {
      const at = (delta: number) => {
        const values = base.slice()
        values[i]! += delta
        u.assign(tf.tensor(values, u.shape))
        return tf.tidy(() => loss().dataSync()[0]!)
      }
      const numeric = (at(eps) - at(-eps)) / (2 * eps)
      expect(Math.abs(numeric - analytic[i]!) / Math.max(1, Math.abs(numeric))).toBeLessThan(1e-3)
    }
    set.remove()
    layer.dispose()
  })

  it("loadStateDict checks keys and shapes before assigning anything; reinitialize redraws every tensor from the seed", () => {
    const layer = makeLayer()
    const set = AdapterSet.inject({ linears: () => [layer] }, outer, config, { seed: 6 })
    const adapter = set.entries[0]!.adapter as DefinedAdapter<OuterConfig, "u" | "v">
    const before = Array.from(adapter.tensors.u.dataSync())
    const goodU = tf.ones([5, 1])
    expect(() => adapter.loadStateDict({ "outer_u.weight": goodU, "outer_v.weight": tf.ones([1, 3]) })).toThrow(ShapeMismatch)
    expect(() => adapter.loadStateDict({ "outer_u.weight": goodU })).toThrow(InvalidCheckpoint)
    expect(() => adapter.loadStateDict({ "outer_u.weight": goodU, "outer_v.weight": tf.ones([1, 4]), "extra.weight": goodU })).toThrow(InvalidCheckpoint)
    expect(Array.from(adapter.tensors.u.dataSync())).toEqual(before)
    const tensorsBefore = tf.memory().numTensors
    adapter.reinitialize(99)
    expect(tf.memory().numTensors).toBe(tensorsBefore)
    const again = outer.create(layer, config, 99) as DefinedAdapter<OuterConfig, "u" | "v">
    expect(Array.from(adapter.tensors.u.dataSync())).toEqual(Array.from(again.tensors.u.dataSync()))
    expect(Array.from(adapter.tensors.v.dataSync())).toEqual(Array.from(again.tensors.v.dataSync()))
    again.dispose()
    set.remove()
    layer.dispose()
  })

  it("the dropout stream is resumable: restoring the random state reproduces the next masks", () => {
    const layer = makeLayer()
    const set = AdapterSet.inject({ linears: () => [layer] }, outer, { ...config, rate: 0.5 }, { seed: 7 })
    const x = tf.ones([6, 4])
    tf.tidy(() => layer.apply(x, true))
    const state = set.randomState()
    const next = tf.tidy(() => Array.from(layer.apply(x, true).dataSync()))
    set.setRandomState(state)
    expect(tf.tidy(() => Array.from(layer.apply(x, true).dataSync()))).toEqual(next)
    expect(Array.from(layer.apply(x, false).dataSync())).not.toEqual(next)
    set.remove()
    layer.dispose()
  })
})

describe("PEFT save/load dispatch on the variant's format", () => {
  it("saves with the variant's own peft_type and loads with whichever installed variant accepts it", async () => {
    const layer = makeLayer()
    const set = AdapterSet.inject({ linears: () => [layer] }, outer, config, { seed: 8 })
    const x = tf.randomNormal([2, 4], 0, 1, "float32", 9)
    const expected = Array.from(layer.apply(x).dataSync())
    await Effect.runPromise(Effect.provide(saveAdapter(`${dir}/outer`, set), NodeFileSystem.layer))
    expect(JSON.parse(readFileSync(`${dir}/outer/adapter_config.json`, "utf8"))).toMatchObject({ peft_type: "OUTER", target_modules: ["fc"], task_type: null })

    const fresh = makeLayer()
    const loaded = await Effect.runPromise(Effect.provide(loadAdapter(`${dir}/outer`, { linears: () => [fresh] }, [unsaveable, outer]), NodeFileSystem.layer))
    expect(loaded.variant.name).toBe("outer")
    expect(loaded.config).toEqual(config)
    const actual = Array.from(fresh.apply(x).dataSync())
    actual.forEach((value, i) => expect(value).toBeCloseTo(expected[i]!, 6))

    const none = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(`${dir}/outer`, { linears: () => [makeLayer()] }, [unsaveable])), NodeFileSystem.layer))
    expect(none).toBeInstanceOf(ConfigError)
    expect((none as ConfigError).field).toBe("adapter_config.peft_type")
    const empty = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(`${dir}/outer`, { linears: () => [makeLayer()] }, [])), NodeFileSystem.layer))
    expect(empty.message).toBe("invalid config: 'variants': no adapter variants given to read the adapter with; pass the installed ones, e.g. [lora]")
  })

  it("saving a variant without a PEFT format is a typed NoPeftFormat and writes nothing", async () => {
    const layer = makeLayer()
    const set = AdapterSet.inject({ linears: () => [layer] }, unsaveable, config, { seed: 1 })
    const error = await Effect.runPromise(Effect.provide(Effect.flip(saveAdapter(`${dir}/unsaveable`, set)), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(NoPeftFormat)
    expect(error.message).toContain("'unsaveable' has no PEFT format")
    expect(() => readFileSync(`${dir}/unsaveable/adapter_config.json`)).toThrow()
  })
})

describe("loadAdapter checks a file before allocating", () => {
  it("an absurd rank in adapter_config.json is a typed error before any adapter is created; invalid UTF-8 names its byte", async () => {
    const layer = makeLayer()
    const set = AdapterSet.inject({ linears: () => [layer] }, outer, config, { seed: 8 })
    await Effect.runPromise(Effect.provide(saveAdapter(`${dir}/shapes`, set), NodeFileSystem.layer))
    set.remove()
    // A variant whose config asks for a million-row u: the file's [5, 1] must be refused before that is allocated.
    const wide = defineAdapter({
      name: "outer",
      format: outerFormat,
      tensors: (l, _c: OuterConfig) => ({ u: { shape: [l.outFeatures, 1_000_000], init: init.zeros, key: "outer_u.weight" }, v: { shape: [1_000_000, l.inFeatures], init: init.zeros, key: "outer_v.weight" } }),
      forward: ({ base }) => base,
      delta: ({ layer: l }) => tf.zeros([l.outFeatures, l.inFeatures])
    })
    let created = 0
    const counted = { ...wide, create: (...args: Parameters<typeof wide.create>) => (created++, wide.create(...args)) }
    const error = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(`${dir}/shapes`, { linears: () => [layer] }, [counted])), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(ShapeMismatch)
    expect(error.message).toBe("shape mismatch for blocks.0.fc.outer_u.weight: expected [5, 1000000], got [5, 1]")
    expect(created).toBe(0)
    expect(layer.adapter).toBeUndefined()

    writeFileSync(`${dir}/shapes/adapter_config.json`, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))
    const utf8 = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(`${dir}/shapes`, { linears: () => [layer] }, [outer])), NodeFileSystem.layer))
    expect(utf8).toBeInstanceOf(InvalidCheckpoint)
    expect(utf8.message).toBe(`invalid checkpoint ${dir}/shapes/adapter_config.json: not valid UTF-8 at byte 2`)
    layer.dispose()
  })
})

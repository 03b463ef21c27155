import "@tensorflow/tfjs-backend-cpu"
import { readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { ConfigError, FileError, InvalidCheckpoint, Safetensors, ShapeMismatch } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadHfModel } from "../src/loaders/HfCheckpoint.js"
import { toHfConfig } from "../src/loaders/HfConfig.js"
import { saveHfModel } from "../src/loaders/HfWriter.js"
import { disposeWeights, type LoadedCheckpoint } from "../src/loaders/LoadedCheckpoint.js"
import { halfToInterleaved, interleavedToHalf } from "../src/loaders/RopePermutation.js"
import { hfWeightShapes } from "../src/loaders/WeightSpec.js"
import type { ModelConfig } from "../src/ModelConfig.js"
import { disposeAll, failure, maxAbsDiff, randomWeights, removeTempDirs, run, tempDir, tinyLlama, tinyOpt } from "./fixtures/loaders.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})
afterAll(removeTempDirs)


/** Saves random weights for `config` and returns them (caller disposes). */
const saveRandom = async (dir: string, config: ModelConfig, seed = 7, options: Parameters<typeof saveHfModel>[3] = {}) => {
  const weights = randomWeights(config, seed)
  await run(saveHfModel(dir, config, weights, options))
  return weights
}

const expectSameWeights = (loaded: LoadedCheckpoint, original: ReadonlyMap<string, tf.Tensor>) => {
  expect([...loaded.weights.keys()]).toStrictEqual([...original.keys()])
  for (const [name, tensor] of original) {
    const got = loaded.weights.get(name)!
    expect(got.dtype).toBe("float32")
    expect(got.shape).toStrictEqual(tensor.shape)
    expect(maxAbsDiff(got, tensor), name).toBe(0)
  }
}

const writeJson = (path: string, value: unknown) => writeFileSync(path, JSON.stringify(value))

describe("HfWriter + HfCheckpoint: save and load back", () => {
  it("an untied Llama round-trips bit for bit through config.json + model.safetensors ({format: pt})", async () => {
    const dir = tempDir()
    const config = tinyLlama()
    const weights = await saveRandom(dir, config)
    expect(readdirSync(dir).sort()).toStrictEqual(["config.json", "model.safetensors"])
    const file = Safetensors.decodeSync(new Uint8Array(readFileSync(join(dir, "model.safetensors"))))
    expect(file.metadata).toStrictEqual({ format: "pt" })
    expect(file.tensors.map((t) => t.dtype)).toStrictEqual(Array(2 + 2 * 9 + 1).fill("F32"))
    expect(JSON.parse(readFileSync(join(dir, "config.json"), "utf8"))).toStrictEqual(JSON.parse(JSON.stringify(toHfConfig(config))))

    const before = tf.memory().numTensors
    const loaded = await run(loadHfModel(dir))
    expect(tf.memory().numTensors - before).toBe(weights.size) // the weights and nothing else
    expect(loaded.config).toStrictEqual(config)
    expectSameWeights(loaded, weights)
    expect([loaded.ignoredTensors, loaded.warnings, loaded.sourceDtypes]).toStrictEqual([[], [], ["F32"]])
    disposeWeights(loaded.weights)
    disposeAll(weights.values())
  })

  it("a tied Llama does not store lm_head.weight twice, even when the state dict has it", async () => {
    const dir = tempDir()
    const config = tinyLlama({ tieWordEmbeddings: true })
    const weights = randomWeights(config)
    const withHead = new Map([...weights, ["lm_head.weight", weights.get("model.embed_tokens.weight")!]])
    await run(saveHfModel(dir, config, withHead))
    const names = Safetensors.decodeSync(new Uint8Array(readFileSync(join(dir, "model.safetensors")))).tensors.map((t) => t.name)
    expect(names).not.toContain("lm_head.weight")
    expect(names).toHaveLength(2 + 2 * 9)
    const loaded = await run(loadHfModel(dir))
    expect(loaded.config).toStrictEqual(config)
    expectSameWeights(loaded, weights)
    disposeWeights(loaded.weights)
    disposeAll(weights.values())
  })

  it("Qwen2 (q/k/v biases) and Llama with attention_bias (o_proj bias too) round-trip", async () => {
    for (const config of [tinyLlama({ modelType: "qwen2", attentionBias: true, tieWordEmbeddings: true }), tinyLlama({ attentionBias: true })]) {
      const dir = tempDir()
      const weights = await saveRandom(dir, config)
      expect(weights.has("model.layers.1.self_attn.k_proj.bias")).toBe(true)
      expect(weights.has("model.layers.1.self_attn.o_proj.bias")).toBe(config.modelType === "llama")
      const loaded = await run(loadHfModel(dir))
      expect(loaded.config).toStrictEqual(config)
      expectSameWeights(loaded, weights)
      disposeWeights(loaded.weights)
      disposeAll(weights.values())
    }
  })

  for (const [dtype, toBits, fromBits, relative] of [
    ["F16", Safetensors.f32ToF16, Safetensors.f16ToF32, 2 ** -11],
    ["BF16", Safetensors.f32ToBf16, Safetensors.bf16ToF32, 2 ** -8]
  ] as const) {
    for (const tied of [false, true]) {
      it(`a ${tied ? "tied" : "untied"} Llama stored as ${dtype} loads widened to float32, equal to the ${dtype}-rounded values`, async () => {
        const dir = tempDir()
        const config = tinyLlama({ tieWordEmbeddings: tied })
        const weights = randomWeights(config, tied ? 11 : 12)
        // The file written by hand with core's encoder, as PyTorch would store a half-precision model.
        const bytes = Safetensors.encode(
          [...weights].map(([name, tensor]) => ({ name, dtype, shape: tensor.shape, data: toBits(tensor.dataSync() as Float32Array) })),
          { format: "pt" }
        )
        writeFileSync(join(dir, "model.safetensors"), bytes)
        writeJson(join(dir, "config.json"), toHfConfig(config, { torchDtype: dtype === "F16" ? "float16" : "bfloat16" }))
        const loaded = await run(loadHfModel(dir))
        expect(loaded.sourceDtypes).toStrictEqual([dtype])
        expect(loaded.weights.size).toBe(weights.size)
        for (const [name, tensor] of weights) {
          const values = tensor.dataSync() as Float32Array
          const got = loaded.weights.get(name)!.dataSync() as Float32Array
          expect(Array.from(got), name).toStrictEqual(Array.from(fromBits(toBits(values))))
          for (let i = 0; i < values.length; i++) expect(Math.abs(got[i]! - values[i]!)).toBeLessThanOrEqual(Math.abs(values[i]!) * relative + 1e-7)
        }
        // The writer's dtype option produces the same file.
        const viaWriter = tempDir()
        await run(saveHfModel(viaWriter, config, weights, { dtype }))
        expect(Buffer.compare(readFileSync(join(viaWriter, "model.safetensors")), Buffer.from(bytes))).toBe(0)
        expect(JSON.parse(readFileSync(join(viaWriter, "config.json"), "utf8")).torch_dtype).toBe(dtype === "F16" ? "float16" : "bfloat16")
        disposeWeights(loaded.weights)
        disposeAll(weights.values())
      })
    }
  }

  it("OPT round-trips, including OPT-350m's shape (project_in/out, post-LN, no final LN, untied)", async () => {
    for (const config of [tinyOpt(), tinyOpt({ wordEmbedProjDim: 8, doLayerNormBefore: false, tieWordEmbeddings: false })]) {
      const dir = tempDir()
      const weights = await saveRandom(dir, config)
      expect(weights.has("model.decoder.project_in.weight")).toBe(config.wordEmbedProjDim !== config.hiddenSize)
      expect(weights.has("model.decoder.final_layer_norm.weight")).toBe(config.doLayerNormBefore)
      expect(weights.get("model.decoder.embed_positions.weight")!.shape).toStrictEqual([34, 16])
      const loaded = await run(loadHfModel(dir))
      expect(loaded.config).toStrictEqual(config)
      expectSameWeights(loaded, weights)
      disposeWeights(loaded.weights)
      disposeAll(weights.values())
    }
  })

  it("OPT keys saved without the model. prefix (decoder.layers...) are normalised", async () => {
    const dir = tempDir()
    const config = tinyOpt()
    const weights = randomWeights(config)
    const bytes = Safetensors.encodeTensors(Object.fromEntries([...weights].map(([name, t]) => [name.replace(/^model\./, ""), t])), { format: "pt" })
    writeFileSync(join(dir, "model.safetensors"), bytes)
    writeJson(join(dir, "config.json"), toHfConfig(config))
    const loaded = await run(loadHfModel(dir))
    expectSameWeights(loaded, weights)
    disposeWeights(loaded.weights)
    disposeAll(weights.values())
  })

  it("a sharded save (tiny shardBytes) writes shards + index and loads identically to the single file", async () => {
    const config = tinyLlama()
    const single = tempDir()
    const sharded = tempDir()
    const weights = await saveRandom(single, config)
    const saved = await run(saveHfModel(sharded, config, weights, { shardBytes: 4000 }))
    const shards = readdirSync(sharded).filter((f) => f.startsWith("model-")).sort()
    expect(shards.length).toBeGreaterThan(2)
    expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, "0")}.safetensors`)
    expect(saved.files).toStrictEqual([...shards, "model.safetensors.index.json", "config.json"])
    const index = JSON.parse(readFileSync(join(sharded, "model.safetensors.index.json"), "utf8"))
    const totalBytes = [...weights.values()].reduce((sum, t) => sum + 4 * t.size, 0)
    expect(index.metadata).toStrictEqual({ total_size: totalBytes })
    expect(saved.totalBytes).toBe(totalBytes)
    expect(Object.keys(index.weight_map).sort()).toStrictEqual([...weights.keys()].sort())
    for (const shard of shards) {
      const file = Safetensors.decodeSync(new Uint8Array(readFileSync(join(sharded, shard))))
      expect(file.metadata).toStrictEqual({ format: "pt" })
      // Every shard but a lone oversized tensor stays within the limit.
      const bytes = file.tensors.reduce((sum, t) => sum + t.data.byteLength, 0)
      expect(bytes <= 4000 || file.tensors.length === 1).toBe(true)
      for (const t of file.tensors) expect(index.weight_map[t.name]).toBe(shard)
    }
    const a = await run(loadHfModel(single))
    const b = await run(loadHfModel(sharded))
    expect(b.config).toStrictEqual(a.config)
    expectSameWeights(b, a.weights)
    expectSameWeights(b, weights)
    disposeWeights(a.weights)
    disposeWeights(b.weights)

    // Re-saving over each other removes the stale layout (an old model.safetensors would shadow new shards).
    await run(saveHfModel(single, config, weights, { shardBytes: 4000 }))
    expect(readdirSync(single)).not.toContain("model.safetensors")
    await run(saveHfModel(sharded, config, weights))
    expect(readdirSync(sharded).sort()).toStrictEqual(["config.json", "model.safetensors"])
    disposeAll(weights.values())
  })

  it("drops rotary inv_freq buffers silently, skips and reports other extra tensors and a stored tied head", async () => {
    const dir = tempDir()
    const config = tinyLlama({ tieWordEmbeddings: true })
    const weights = randomWeights(config)
    const extra = {
      "model.layers.0.self_attn.rotary_emb.inv_freq": tf.ones([2]),
      "lm_head.weight": weights.get("model.embed_tokens.weight")!,
      "vision_tower.patch.weight": tf.ones([3, 3]),
      "model.layers.0.mlp.extra_scale": tf.ones([4])
    }
    writeFileSync(join(dir, "model.safetensors"), Safetensors.encodeTensors({ ...Object.fromEntries(weights), ...extra }))
    writeJson(join(dir, "config.json"), toHfConfig(config))
    const before = tf.memory().numTensors
    const loaded = await run(loadHfModel(dir))
    expect(tf.memory().numTensors - before).toBe(weights.size) // extras are never turned into tensors
    expectSameWeights(loaded, weights)
    expect(loaded.ignoredTensors).toStrictEqual(["vision_tower.patch.weight", "model.layers.0.mlp.extra_scale"])
    expect(loaded.warnings).toStrictEqual([
      "lm_head.weight ignored: tie_word_embeddings is true, so the output head is the token embedding",
      "2 tensor(s) not used by llama were ignored: vision_tower.patch.weight, model.layers.0.mlp.extra_scale"
    ])
    disposeWeights(loaded.weights)
    disposeAll([...weights.values(), extra["model.layers.0.self_attn.rotary_emb.inv_freq"], extra["vision_tower.patch.weight"], extra["model.layers.0.mlp.extra_scale"]])
  })
})

describe("HfCheckpoint: errors", () => {
  const savedModel = async (config: ModelConfig = tinyLlama(), options: Parameters<typeof saveHfModel>[3] = {}) => {
    const dir = tempDir()
    disposeAll((await saveRandom(dir, config, 3, options)).values())
    return dir
  }

  it("unknown model_type: ConfigError on config.model_type", async () => {
    const dir = await savedModel()
    const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"))
    writeJson(join(dir, "config.json"), { ...json, model_type: "gpt_neox" })
    const error = await failure(loadHfModel(dir))
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).field).toBe("config.model_type")
    expect((error as ConfigError).reason).toContain("supported: llama, qwen2, mistral, opt")
  })

  it("missing config.json: FileError naming it; config.json that is not JSON: InvalidCheckpoint", async () => {
    const dir = await savedModel()
    rmSync(join(dir, "config.json"))
    const error = await failure(loadHfModel(dir))
    expect(error).toBeInstanceOf(FileError)
    expect((error as FileError).path).toBe(join(dir, "config.json"))
    writeFileSync(join(dir, "config.json"), "{ not json")
    const bad = await failure(loadHfModel(dir))
    expect(bad).toBeInstanceOf(InvalidCheckpoint)
    expect((bad as InvalidCheckpoint).reason).toMatch(/^not valid JSON/)
  })

  it("no weights file: InvalidCheckpoint on the directory (with a hint when only pytorch_model.bin exists)", async () => {
    const dir = await savedModel()
    rmSync(join(dir, "model.safetensors"))
    const error = (await failure(loadHfModel(dir))) as InvalidCheckpoint
    expect(error).toBeInstanceOf(InvalidCheckpoint)
    expect([error.path, error.reason]).toStrictEqual([dir, "no model.safetensors or model.safetensors.index.json"])
    writeFileSync(join(dir, "pytorch_model.bin"), "pickle")
    expect(((await failure(loadHfModel(dir))) as InvalidCheckpoint).reason).toContain("pytorch_model.bin")
  })

  it("missing shard: InvalidCheckpoint with the shard's path, before any data is read", async () => {
    const dir = await savedModel(tinyLlama(), { shardBytes: 4000 })
    const shard = readdirSync(dir).filter((f) => f.startsWith("model-")).sort()[1]!
    rmSync(join(dir, shard))
    const before = tf.memory().numTensors
    const error = (await failure(loadHfModel(dir))) as InvalidCheckpoint
    expect(error).toBeInstanceOf(InvalidCheckpoint)
    expect(error.path).toBe(join(dir, shard))
    expect(error.reason).toBe("shard listed in model.safetensors.index.json is missing")
    expect(tf.memory().numTensors).toBe(before)
  })

  it("a shard whose data is corrupt fails with InvalidSafetensors and frees the tensors already loaded", async () => {
    const dir = await savedModel(tinyLlama(), { shardBytes: 4000 })
    const shards = readdirSync(dir).filter((f) => f.startsWith("model-")).sort()
    const last = join(dir, shards.at(-1)!)
    truncateSync(last, readFileSync(last).length - 4) // header intact, data short
    const before = tf.memory().numTensors
    const error = await failure(loadHfModel(dir))
    expect(error).toBeInstanceOf(Safetensors.InvalidSafetensors)
    expect((error as Safetensors.InvalidSafetensors).path).toBe(last)
    expect(tf.memory().numTensors).toBe(before)
  })

  it("a weights file whose header is cut or not JSON: InvalidSafetensors with its path, from the header pass", async () => {
    const dir = await savedModel()
    const path = join(dir, "model.safetensors")
    const bytes = readFileSync(path)
    writeFileSync(path, bytes.subarray(0, 20))
    const cut = (await failure(loadHfModel(dir))) as Safetensors.InvalidSafetensors
    expect([cut._tag, cut.reason, cut.path]).toStrictEqual(["InvalidSafetensors", "truncated", path])
    const garbage = Buffer.from(bytes)
    garbage.write("[", 8)
    writeFileSync(path, garbage)
    expect(((await failure(loadHfModel(dir))) as Safetensors.InvalidSafetensors).reason).toBe("header-not-json")
  })

  it("a tensor the architecture needs is absent: InvalidCheckpoint naming it", async () => {
    const dir = tempDir()
    const config = tinyLlama()
    const weights = randomWeights(config)
    weights.get("model.layers.1.mlp.up_proj.weight")!.dispose()
    weights.delete("model.layers.1.mlp.up_proj.weight")
    writeFileSync(join(dir, "model.safetensors"), Safetensors.encodeTensors(Object.fromEntries(weights)))
    writeJson(join(dir, "config.json"), toHfConfig(config))
    const error = (await failure(loadHfModel(dir))) as InvalidCheckpoint
    expect(error).toBeInstanceOf(InvalidCheckpoint)
    expect([error.tensor, error.path]).toStrictEqual(["model.layers.1.mlp.up_proj.weight", join(dir, "model.safetensors")])
    // An untied config whose checkpoint has no head (tie_word_embeddings wrongly false).
    const head = weights.get("lm_head.weight")!
    weights.delete("lm_head.weight")
    const upProj = tf.zeros([24, 16])
    writeFileSync(join(dir, "model.safetensors"), Safetensors.encodeTensors({ ...Object.fromEntries(weights), "model.layers.1.mlp.up_proj.weight": upProj }))
    const noHead = (await failure(loadHfModel(dir))) as InvalidCheckpoint
    expect([noHead.tensor, noHead.reason]).toStrictEqual(["lm_head.weight", "missing; llama with this config.json needs it"])
    disposeAll([...weights.values(), head, upProj])
  })

  it("a wrong shape (config and weights disagree): ShapeMismatch naming the tensor, before any tensor is made", async () => {
    const dir = await savedModel(tinyLlama())
    const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"))
    writeJson(join(dir, "config.json"), { ...json, intermediate_size: 20 })
    const before = tf.memory().numTensors
    const error = (await failure(loadHfModel(dir))) as ShapeMismatch
    expect(error).toBeInstanceOf(ShapeMismatch)
    expect([error.what, error.expected, error.actual]).toStrictEqual(["model.layers.0.mlp.gate_proj.weight", [20, 16], [24, 16]])
    expect(tf.memory().numTensors).toBe(before)
  })

  it("an integer weight, a shard name outside the directory, an index that disagrees with its shards: InvalidCheckpoint", async () => {
    const config = tinyLlama({ numHiddenLayers: 1 })
    const weights = randomWeights(config)
    const named = Object.fromEntries(weights)
    const dir = tempDir()
    writeJson(join(dir, "config.json"), toHfConfig(config))
    const asInt = tf.cast(named["model.norm.weight"]!, "int32")
    writeFileSync(join(dir, "model.safetensors"), Safetensors.encodeTensors({ ...named, "model.norm.weight": asInt }))
    const error = (await failure(loadHfModel(dir))) as InvalidCheckpoint
    expect([error.tensor, error.reason]).toStrictEqual(["model.norm.weight", "dtype I32 is not a float dtype (F32, F16, BF16)"])
    asInt.dispose()

    rmSync(join(dir, "model.safetensors"))
    writeFileSync(join(dir, "a.safetensors"), Safetensors.encodeTensors(named))
    const index = (map: Record<string, string>) => writeJson(join(dir, "model.safetensors.index.json"), { metadata: {}, weight_map: map })
    index(Object.fromEntries(Object.keys(named).map((name) => [name, "../a.safetensors"])))
    expect(((await failure(loadHfModel(dir))) as InvalidCheckpoint).reason).toContain("is not a file name in this directory")
    index({ ...Object.fromEntries(Object.keys(named).map((name) => [name, "a.safetensors"])), "model.norm.weight": "b.safetensors" })
    writeFileSync(join(dir, "b.safetensors"), Safetensors.encodeTensors({ other: named["model.norm.weight"]! }))
    const misplaced = (await failure(loadHfModel(dir))) as InvalidCheckpoint
    expect([misplaced.tensor, misplaced.reason]).toStrictEqual(["model.norm.weight", "model.safetensors.index.json places it in b.safetensors, which does not hold it"])
    index(Object.fromEntries(Object.keys(named).map((name) => [name, "a.safetensors"])))
    const loaded = await run(loadHfModel(dir))
    expectSameWeights(loaded, weights)
    disposeWeights(loaded.weights)
    disposeAll(weights.values())
  })
})

describe("HfWriter: errors (checked before anything is written)", () => {
  it("missing, misshapen and unknown tensors, and configs transformers cannot express", async () => {
    const config = tinyLlama()
    const weights = randomWeights(config)
    const dir = tempDir()
    const missing = new Map(weights)
    missing.delete("model.norm.weight")
    const e1 = (await failure(saveHfModel(dir, config, missing))) as InvalidCheckpoint
    expect([e1._tag, e1.tensor, e1.reason]).toStrictEqual(["InvalidCheckpoint", "model.norm.weight", "missing from the state dict"])
    const wrong = tf.zeros([3])
    const e2 = (await failure(saveHfModel(dir, config, new Map([...weights, ["model.norm.weight", wrong]])))) as ShapeMismatch
    expect([e2._tag, e2.what, e2.expected, e2.actual]).toStrictEqual(["ShapeMismatch", "model.norm.weight", [16], [3]])
    const lora = tf.zeros([2, 16])
    const e3 = (await failure(saveHfModel(dir, config, new Map([...weights, ["model.layers.0.self_attn.q_proj.lora_A.weight", lora]])))) as InvalidCheckpoint
    expect([e3._tag, e3.tensor]).toStrictEqual(["InvalidCheckpoint", "model.layers.0.self_attn.q_proj.lora_A.weight"])
    const e4 = (await failure(saveHfModel(dir, tinyLlama({ modelType: "qwen2" }), weights))) as ConfigError
    expect([e4._tag, e4.field]).toStrictEqual(["ConfigError", "config.attentionBias"])
    const e5 = (await failure(saveHfModel(dir, config, weights, { shardBytes: 0 }))) as ConfigError
    expect(e5.field).toBe("saveHfModel.shardBytes")
    expect(readdirSync(dir)).toStrictEqual([])
    disposeAll([...weights.values(), wrong, lora])
  })
})

describe("RoPE layouts", () => {
  // Reference RoPE on one head vector, position p: interleaved pairs (2i, 2i+1) or halves (i, i+d/2).
  const rotate = (x: ReadonlyArray<number>, p: number, layout: "interleaved" | "half"): Array<number> => {
    const d = x.length
    const out = [...x]
    for (let i = 0; i < d / 2; i++) {
      const angle = p * 10000 ** (-(2 * i) / d)
      const [a, b] = layout === "interleaved" ? [2 * i, 2 * i + 1] : [i, i + d / 2]
      out[a] = x[a]! * Math.cos(angle) - x[b]! * Math.sin(angle)
      out[b] = x[a]! * Math.sin(angle) + x[b]! * Math.cos(angle)
    }
    return out
  }
  const dot = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => a.reduce((s, v, i) => s + v * b[i]!, 0)

  it("permuting q/k rows to the half layout preserves every attention score; the inverse restores the weights", () => {
    const heads = 2
    const headDim = 8
    const wq = tf.randomNormal([heads * headDim, 5], 0, 1, "float32", 1)
    const wk = tf.randomNormal([heads * headDim, 5], 0, 1, "float32", 2)
    const x = tf.randomNormal([5, 1], 0, 1, "float32", 3)
    const project = (w: tf.Tensor) => Array.from(tf.tidy(() => tf.matMul(w as tf.Tensor2D, x as tf.Tensor2D)).dataSync())
    const [q, k] = [project(wq), project(wk)]
    const [wqHalf, wkHalf] = [interleavedToHalf(wq, heads), interleavedToHalf(wk, heads)]
    const [qHalf, kHalf] = [project(wqHalf), project(wkHalf)]
    for (let h = 0; h < heads; h++) {
      const slice = (v: Array<number>) => v.slice(h * headDim, (h + 1) * headDim)
      for (const [pq, pk] of [[0, 0], [3, 1], [17, 5]] as const) {
        const interleaved = dot(rotate(slice(q), pq, "interleaved"), rotate(slice(k), pk, "interleaved"))
        const half = dot(rotate(slice(qHalf), pq, "half"), rotate(slice(kHalf), pk, "half"))
        expect(Math.abs(half - interleaved)).toBeLessThan(1e-4)
      }
    }
    // HF row j * d/2 + i is interleaved row 2i + j.
    expect(Array.from(tf.tidy(() => tf.slice(wqHalf, [1, 0], [1, 5])).dataSync())).toStrictEqual(Array.from(tf.tidy(() => tf.slice(wq, [2, 0], [1, 5])).dataSync()))
    expect(Array.from(tf.tidy(() => tf.slice(wqHalf, [4, 0], [1, 5])).dataSync())).toStrictEqual(Array.from(tf.tidy(() => tf.slice(wq, [1, 0], [1, 5])).dataSync()))
    const back = halfToInterleaved(wqHalf, heads)
    expect(maxAbsDiff(back, wq)).toBe(0)
    tf.dispose([wq, wk, x, wqHalf, wkHalf, back])
  })

  it("saving an interleaved (llama2.c-style) model writes q/k (and their biases) in the half layout", async () => {
    const config = tinyLlama({ ropeLayout: "interleaved", attentionBias: true })
    const weights = randomWeights(config)
    const dir = tempDir()
    await run(saveHfModel(dir, config, weights))
    const loaded = await run(loadHfModel(dir))
    expect(loaded.config).toStrictEqual({ ...config, ropeLayout: "half" })
    for (const [name, tensor] of weights) {
      const match = /self_attn\.(q|k)_proj/.exec(name)
      const expected = match === null ? tensor.clone() : interleavedToHalf(tensor, match[1] === "q" ? 4 : 2)
      expect(maxAbsDiff(loaded.weights.get(name)!, expected), name).toBe(0)
      expected.dispose()
    }
    expect(hfWeightShapes(config).size).toBe(weights.size)
    disposeWeights(loaded.weights)
    disposeAll(weights.values())
  })
})

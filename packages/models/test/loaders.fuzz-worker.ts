// Fuzz targets for the model loaders (llama2.c headers, config.json against safetensors files),
// run in a worker by loaders.fuzz.test.ts.
import "@tensorflow/tfjs-backend-cpu"
import { makeMemoryFileSystem, MemoryFileSystem, Safetensors } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Cause, Effect, Exit, Option } from "effect"
import fc from "fast-check"
import { runFuzzTargets, type Outcome } from "../../core/test/fuzz/worker.js"
import { loadHfModel } from "../src/loaders/HfCheckpoint.js"
import { toHfConfig } from "../src/loaders/HfConfig.js"
import { decodeLlama2c } from "../src/loaders/Llama2c.js"
import { disposeWeights, type LoadedCheckpoint } from "../src/loaders/LoadedCheckpoint.js"
import { hfWeightShapes } from "../src/loaders/WeightSpec.js"
import type { LlamaConfig, ModelConfig } from "../src/ModelConfig.js"

const outcome = (exit: Exit.Exit<LoadedCheckpoint, { readonly _tag: string }>): Outcome => {
  if (Exit.isSuccess(exit)) {
    disposeWeights(exit.value.weights)
    return { ok: true }
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) return { ok: false, tag: failure.value._tag }
  throw new Error(`defect: ${Cause.pretty(exit.cause).split("\n")[0]}`)
}

const tiny: LlamaConfig = {
  modelType: "llama", vocabSize: 12, hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 2, numAttentionHeads: 2, numKeyValueHeads: 1,
  headDim: 4, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 16, tieWordEmbeddings: false, attentionBias: false,
  ropeLayout: "half", bosTokenId: 1, eosTokenId: [2]
}
const weightsFile = (config: ModelConfig): Uint8Array =>
  Safetensors.encode([...hfWeightShapes(config)].map(([name, shape]) => ({ name, dtype: "F32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) })), { format: "pt" })
const tinyWeights = weightsFile(tiny)
const tinyConfig = toHfConfig(tiny)

/** dim 8, hidden 12, 2 layers, 2 heads, 1 kv head, vocab 10 (shared), seq_len 6; RoPE tables as llama2.c writes them. */
const llama2cFile = (): Uint8Array => {
  const [dim, hidden, layers, heads, kv, vocab, seqLen] = [8, 12, 2, 2, 1, 10, 6]
  const headDim = dim / heads
  const half = headDim / 2
  const before = vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv * headDim * dim + 3 * hidden * dim) + dim
  const floats = before + 2 * seqLen * half
  const bytes = new Uint8Array(28 + 4 * floats)
  const view = new DataView(bytes.buffer)
  ;[dim, hidden, layers, heads, kv, vocab, seqLen].forEach((v, i) => view.setInt32(4 * i, v, true))
  for (let k = 0; k < before; k++) view.setFloat32(28 + 4 * k, Math.sin(k) * 0.1, true)
  for (let p = 0; p < seqLen; p++) {
    for (let j = 0; j < half; j++) {
      const angle = p * Math.pow(10000, (-2 * j) / headDim)
      view.setFloat32(28 + 4 * (before + p * half + j), Math.cos(angle), true)
      view.setFloat32(28 + 4 * (before + seqLen * half + p * half + j), Math.sin(angle), true)
    }
  }
  return bytes
}

const int32 = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 16 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, -12, 2 ** 31 - 1, -(2 ** 31), 0x616b3432) },
  { weight: 1, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }
)
const configValue = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.constantFrom(1e9, 2 ** 31, 2 ** 31 - 1, 2 ** 53, 1e300, -1, 0.5, null, "8", true, [], {}),
  fc.double()
)
const configKey = fc.constantFrom(
  "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
  "max_position_embeddings", "tie_word_embeddings", "model_type", "rope_scaling", "attention_bias", "eos_token_id", "ffn_dim", "word_embed_proj_dim"
)

void runFuzzTargets({
  // A valid small llama2.c file (real RoPE tables) with fuzzed header fields and a fuzzed size.
  llama2c: {
    arbitrary: fc.tuple(fc.array(fc.tuple(fc.nat(6), int32), { maxLength: 3 }), fc.oneof(fc.constant(0), fc.integer({ min: -64, max: 64 }))),
    run: async ([edits, delta]) => {
      const valid = llama2cFile()
      const bytes = new Uint8Array(Math.max(0, valid.length + 4 * delta))
      bytes.set(valid.subarray(0, Math.min(valid.length, bytes.length)))
      const view = new DataView(bytes.buffer)
      for (const [field, value] of edits) if (4 * field + 4 <= bytes.length) view.setInt32(4 * field, value, true)
      const before = tf.memory().numTensors
      const result = outcome(await Effect.runPromiseExit(decodeLlama2c(bytes, "fuzz.bin")))
      if (tf.memory().numTensors !== before) throw new Error("tensors leaked")
      return result
    },
    typed: ["InvalidCheckpoint"]
  },
  // config.json with fuzzed fields next to the weights of the unfuzzed config.
  hfConfig: {
    arbitrary: fc.array(fc.tuple(configKey, configValue), { maxLength: 4 }),
    run: async (edits) => {
      const handle = makeMemoryFileSystem()
      const config: Record<string, unknown> = { ...tinyConfig }
      for (const [key, value] of edits) config[key] = value
      const program = Effect.gen(function* () {
        yield* handle.fileSystem.makeDirectory("/m", { recursive: true })
        yield* handle.fileSystem.writeFile("/m/config.json", new TextEncoder().encode(JSON.stringify(config)))
        yield* handle.fileSystem.writeFile("/m/model.safetensors", tinyWeights)
        return yield* loadHfModel("/m")
      })
      const before = tf.memory().numTensors
      const exit = await Effect.runPromiseExit(Effect.provide(program, MemoryFileSystem.layerOf(handle)) as Effect.Effect<LoadedCheckpoint, { readonly _tag: string }>)
      const result = outcome(exit)
      if (tf.memory().numTensors !== before) throw new Error("tensors leaked")
      return result
    },
    typed: ["ConfigError", "InvalidCheckpoint", "ShapeMismatch", "InvalidSafetensors", "FileError"]
  }
})

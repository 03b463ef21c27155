/**
 * A real pretrained model (stories260K, llama2.c format, from ../shared/data; skipped when absent):
 * its greedy continuation of "Once upon a time" is the documented one, with interleaved RoPE on
 * the weights as stored and with rotate_half RoPE on HF-permuted q/k weights. The checkpoint and
 * tokenizer are read here with a few lines of independent code, so this tests the model, not the
 * loaders.
 */
import { existsSync, readFileSync } from "node:fs"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { generate } from "../src/Generate.js"
import { Llama } from "../src/Llama.js"
import type { LlamaConfig } from "../src/ModelConfig.js"
import { maxAbsDiff, permuteForHalfRope } from "./helpers.js"

const dir = new URL("../../../../shared/data/models/stories260K/", import.meta.url)
const available = existsSync(new URL("stories260K.bin", dir)) && existsSync(new URL("tok512.bin", dir))

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** The llama2.c checkpoint as HF-named tensors (llama2.c's w1/w2/w3 are gate/down/up). */
const readCheckpoint = (): { config: LlamaConfig; weights: Map<string, tf.Tensor> } => {
  const bytes = readFileSync(new URL("stories260K.bin", dir))
  const header = new Int32Array(bytes.buffer, bytes.byteOffset, 7)
  const [dim, hidden, layers, heads, kvHeads, vocab, seqLen] = Array.from(header) as [number, number, number, number, number, number, number]
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 28, bytes.byteOffset + bytes.length))
  let offset = 0
  const take = (shape: Array<number>) => {
    const size = shape.reduce((a, b) => a * b, 1)
    const t = tf.tensor(floats.subarray(offset, offset + size), shape)
    offset += size
    return t
  }
  const headDim = dim / heads
  const weights = new Map<string, tf.Tensor>()
  weights.set("model.embed_tokens.weight", take([Math.abs(vocab), dim]))
  const perLayer = (name: string, shape: Array<number>) => {
    const all = take([layers, ...shape])
    tf.unstack(all).forEach((t, i) => weights.set(`model.layers.${i}.${name}`, t))
    all.dispose()
  }
  perLayer("input_layernorm.weight", [dim])
  perLayer("self_attn.q_proj.weight", [dim, dim])
  perLayer("self_attn.k_proj.weight", [kvHeads * headDim, dim])
  perLayer("self_attn.v_proj.weight", [kvHeads * headDim, dim])
  perLayer("self_attn.o_proj.weight", [dim, dim])
  perLayer("post_attention_layernorm.weight", [dim])
  perLayer("mlp.gate_proj.weight", [hidden, dim])
  perLayer("mlp.down_proj.weight", [dim, hidden])
  perLayer("mlp.up_proj.weight", [hidden, dim])
  weights.set("model.norm.weight", take([dim]))
  const config: LlamaConfig = {
    modelType: "llama",
    vocabSize: Math.abs(vocab),
    hiddenSize: dim,
    intermediateSize: hidden,
    numHiddenLayers: layers,
    numAttentionHeads: heads,
    numKeyValueHeads: kvHeads,
    headDim,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: seqLen,
    tieWordEmbeddings: vocab > 0,
    attentionBias: false,
    ropeLayout: "interleaved",
    bosTokenId: 1,
    eosTokenId: [2]
  }
  return { config, weights }
}

/** llama2.c's tokenizer, as the data README describes it. */
const readTokenizer = () => {
  const bytes = readFileSync(new URL("tok512.bin", dir))
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  const pieces: Array<string> = []
  const scores: Array<number> = []
  let offset = 4
  while (offset < bytes.length) {
    scores.push(view.getFloat32(offset, true))
    const length = view.getInt32(offset + 4, true)
    pieces.push(new TextDecoder().decode(bytes.subarray(offset + 8, offset + 8 + length)))
    offset += 8 + length
  }
  const ids = new Map(pieces.map((p, i) => [p, i]))
  const encode = (text: string): Array<number> => {
    const tokens = [ids.get(" ")!]
    for (const ch of text) {
      const id = ids.get(ch)
      if (id !== undefined) tokens.push(id)
      else for (const byte of new TextEncoder().encode(ch)) tokens.push(byte + 3)
    }
    for (;;) {
      let best = -1
      let bestScore = -Infinity
      let bestId = -1
      for (let i = 0; i + 1 < tokens.length; i++) {
        const id = ids.get(pieces[tokens[i]!]! + pieces[tokens[i + 1]!]!)
        if (id !== undefined && scores[id]! > bestScore) [best, bestScore, bestId] = [i, scores[id]!, id]
      }
      if (best < 0) break
      tokens.splice(best, 2, bestId)
    }
    return [1, ...tokens]
  }
  const decode = (tokens: ReadonlyArray<number>): string =>
    tokens.map((t) => (/^<0x[0-9A-F]{2}>$/.test(pieces[t]!) ? String.fromCharCode(parseInt(pieces[t]!.slice(3, 5), 16)) : pieces[t]!)).join("")
  return { encode, decode }
}

describe.skipIf(!available)("stories260K (real pretrained weights, shared data)", () => {
  it("greedily continues 'Once upon a time' as documented; the HF layout with permuted q/k gives the same", async () => {
    const { config, weights } = readCheckpoint()
    const tokenizer = readTokenizer()
    const prompt = tokenizer.encode("Once upon a time")
    const model = Llama.fromWeights(config, weights)
    const before = tf.memory().numTensors
    const ids = await generate(model, prompt, { maxNewTokens: 32 })
    expect(tf.memory().numTensors).toBe(before)
    const text = tokenizer.decode(ids)
    expect(text).toMatch(/^, there was a little girl named Lily\. She loved to play outside in the park\./)

    // The same model converted to HF's rotate_half layout (convert_llama_weights_to_hf.py's permute).
    const converted = new Map<string, tf.Tensor>()
    for (const [name, tensor] of weights) {
      const heads = name.endsWith("q_proj.weight") ? config.numAttentionHeads : name.endsWith("k_proj.weight") ? config.numKeyValueHeads : 0
      converted.set(name, heads === 0 ? tf.clone(tensor) : permuteForHalfRope(tensor as tf.Tensor2D, heads))
    }
    const hf = Llama.fromWeights({ ...config, ropeLayout: "half" }, converted)
    const input = tf.tensor2d([[...prompt, ...ids]], undefined, "int32")
    expect(maxAbsDiff(model.forward(input), hf.forward(input))).toBeLessThan(1e-4)
    expect(await generate(hf, prompt, { maxNewTokens: 32 })).toEqual(ids)
    model.dispose()
    hf.dispose()
    for (const t of [...weights.values(), ...converted.values()]) t.dispose()
  })
})

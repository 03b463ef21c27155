/**
 * Karpathy's llama2.c checkpoint (the legacy "version 0" export, e.g. the tinyllamas stories15M /
 * stories260K files): a header of 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len; a negative vocab_size means the output head is stored separately),
 * then float32 arrays, matrices [out, in] row-major: token_embedding [V, D], rms_att [L, D],
 * wq [L, D, D], wk [L, KV, D], wv [L, KV, D], wo [L, D, D], rms_ffn [L, D], w1 [L, H, D],
 * w2 [L, D, H], w3 [L, H, D], rms_final [D], two legacy RoPE tables [seq_len, head_dim / 2] each
 * (skipped), and the output head wcls [V, D] when untied.
 *
 * The weights come back under Hugging Face Llama names, as stored: llama2.c rotates consecutive
 * pairs, so the config says `ropeLayout: "interleaved"` (write with `saveHfModel` to get HF layout).
 * The file size must match the header exactly; anything else is `InvalidCheckpoint` with both sizes.
 */
import type { FileSystem } from "@effect/platform"
import { InvalidCheckpoint, readFileBytes, type FileError } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { LlamaConfig } from "../ModelConfig.js"
import { disposeWeights, type LoadedCheckpoint } from "./LoadedCheckpoint.js"
import { hfWeightShapes } from "./WeightSpec.js"

export const LLAMA2C_HEADER_BYTES = 28

/** The header, with the sign of vocab_size turned into `sharedClassifier`. */
export interface Llama2cHeader {
  readonly dim: number
  readonly hiddenDim: number
  readonly nLayers: number
  readonly nHeads: number
  readonly nKvHeads: number
  readonly vocabSize: number
  readonly seqLen: number
  /** vocab_size > 0 in the file: the output head is the token embedding. */
  readonly sharedClassifier: boolean
}

// llama2.c's newer exports (version 1/2) start with this magic ("ak42") and a 256-byte header.
const MAGIC = 0x616b3432

/** Parses and sanity-checks the 28-byte header. */
export const parseLlama2cHeader = (bytes: Uint8Array, path: string): Effect.Effect<Llama2cHeader, InvalidCheckpoint> =>
  Effect.suspend(() => {
    const bad = (reason: string) => Effect.fail(new InvalidCheckpoint({ path, reason }))
    if (bytes.byteLength < LLAMA2C_HEADER_BYTES) return bad(`truncated: ${bytes.byteLength} bytes, shorter than the ${LLAMA2C_HEADER_BYTES}-byte header`)
    const view = new DataView(bytes.buffer, bytes.byteOffset, LLAMA2C_HEADER_BYTES)
    if (view.getUint32(0, true) === MAGIC) {
      return bad(`llama2.c export version ${view.getInt32(4, true)} (magic 'ak42') is not supported; only the legacy version 0 format (legacy_export) is read`)
    }
    const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = Array.from({ length: 7 }, (_, i) => view.getInt32(4 * i, true)) as [number, number, number, number, number, number, number]
    const header = `header (dim ${dim}, hidden_dim ${hiddenDim}, n_layers ${nLayers}, n_heads ${nHeads}, n_kv_heads ${nKvHeads}, vocab_size ${vocab}, seq_len ${seqLen})`
    if ([dim, hiddenDim, nLayers, nHeads, nKvHeads, seqLen].some((v) => v <= 0) || vocab === 0) return bad(`${header}: sizes must be positive`)
    if (dim % nHeads !== 0 || (dim / nHeads) % 2 !== 0) return bad(`${header}: dim must split into n_heads heads of even size`)
    if (nHeads % nKvHeads !== 0) return bad(`${header}: n_heads must be a multiple of n_kv_heads`)
    return Effect.succeed({ dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocab), seqLen, sharedClassifier: vocab > 0 })
  })

/** The float32 arrays of the file body, in order: [HF name or undefined (skipped), shape]. */
const layout = (h: Llama2cHeader): ReadonlyArray<readonly [ReadonlyArray<string> | undefined, ReadonlyArray<number>]> => {
  const headDim = h.dim / h.nHeads
  const kvDim = h.nKvHeads * headDim
  const perLayer = (suffix: string, shape: ReadonlyArray<number>) =>
    [Array.from({ length: h.nLayers }, (_, i) => `model.layers.${i}.${suffix}`), shape] as const
  return [
    [["model.embed_tokens.weight"], [h.vocabSize, h.dim]],
    perLayer("input_layernorm.weight", [h.dim]),
    perLayer("self_attn.q_proj.weight", [h.dim, h.dim]),
    perLayer("self_attn.k_proj.weight", [kvDim, h.dim]),
    perLayer("self_attn.v_proj.weight", [kvDim, h.dim]),
    perLayer("self_attn.o_proj.weight", [h.dim, h.dim]),
    perLayer("post_attention_layernorm.weight", [h.dim]),
    perLayer("mlp.gate_proj.weight", [h.hiddenDim, h.dim]),
    perLayer("mlp.down_proj.weight", [h.dim, h.hiddenDim]),
    perLayer("mlp.up_proj.weight", [h.hiddenDim, h.dim]),
    [["model.norm.weight"], [h.dim]],
    // Legacy freq_cis_real and freq_cis_imag, [seq_len, head_dim / 2] each: recomputed from theta.
    [undefined, [2, h.seqLen, headDim / 2]],
    ...(h.sharedClassifier ? [] : [[["lm_head.weight"], [h.vocabSize, h.dim]] as const])
  ]
}

const count = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

/** The exact file size the header implies. */
export const llama2cFileBytes = (header: Llama2cHeader): number =>
  LLAMA2C_HEADER_BYTES + 4 * layout(header).reduce((sum, [names, shape]) => sum + (names?.length ?? 1) * count(shape), 0)

/** The LlamaConfig of a llama2.c model (RMSNorm eps 1e-5 and RoPE theta 10000, as run.c hard-codes; BOS 1, EOS 2). */
export const llama2cConfig = (h: Llama2cHeader): LlamaConfig => ({
  modelType: "llama",
  vocabSize: h.vocabSize,
  hiddenSize: h.dim,
  intermediateSize: h.hiddenDim,
  numHiddenLayers: h.nLayers,
  numAttentionHeads: h.nHeads,
  numKeyValueHeads: h.nKvHeads,
  headDim: h.dim / h.nHeads,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxPositionEmbeddings: h.seqLen,
  tieWordEmbeddings: h.sharedClassifier,
  attentionBias: false,
  ropeLayout: "interleaved",
  bosTokenId: 1,
  eosTokenId: [2]
})

const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** `n` little-endian float32 values starting at byte `offset`, as a fresh array (never aliasing `bytes`). */
const floatsAt = (bytes: Uint8Array, offset: number, n: number): Float32Array => {
  const out = new Float32Array(n)
  if (hostIsLittleEndian) {
    new Uint8Array(out.buffer).set(bytes.subarray(offset, offset + 4 * n))
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset + offset, 4 * n)
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true)
  }
  return out
}

/** Decodes a llama2.c checkpoint held in memory. `path` only labels errors. */
export const decodeLlama2c = (bytes: Uint8Array, path = "llama2.c checkpoint"): Effect.Effect<LoadedCheckpoint<LlamaConfig>, InvalidCheckpoint> =>
  Effect.gen(function* () {
    const header = yield* parseLlama2cHeader(bytes, path)
    const expected = llama2cFileBytes(header)
    if (bytes.byteLength !== expected) {
      const what = bytes.byteLength < expected ? "truncated" : "oversized"
      return yield* new InvalidCheckpoint({
        path,
        reason: `${what}: the header implies ${expected} bytes (${header.sharedClassifier ? "shared" : "separate"} classifier), the file has ${bytes.byteLength}`
      })
    }
    const weights = new Map<string, tf.Tensor>()
    let offset = LLAMA2C_HEADER_BYTES
    try {
      for (const [names, shape] of layout(header)) {
        const n = count(shape)
        if (names === undefined) {
          offset += 4 * n
          continue
        }
        for (const name of names) {
          weights.set(name, tf.tensor(floatsAt(bytes, offset, n), [...shape], "float32"))
          offset += 4 * n
        }
      }
    } catch (error) {
      disposeWeights(weights)
      throw error
    }
    const config = llama2cConfig(header)
    // Module order (the file groups by kind: every layer's wq, then every layer's wk, ...).
    const ordered = new Map([...hfWeightShapes(config).keys()].map((name) => [name, weights.get(name)!]))
    return { config, weights: ordered, ignoredTensors: [], warnings: [], sourceDtypes: ["F32"] }
  })

/** Reads a llama2.c checkpoint file (see `decodeLlama2c`). */
export const loadLlama2c = (path: string): Effect.Effect<LoadedCheckpoint<LlamaConfig>, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.flatMap(readFileBytes(path), (bytes) => decodeLlama2c(bytes, path))

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
 * The file size must match the header exactly (computed from the header alone, before anything is
 * allocated); anything else is `InvalidCheckpoint` with both sizes. The legacy RoPE tables must hold
 * cos/sin where the header puts them, so a header with other sizes but the same byte count is
 * refused. Weights with NaN or Inf load with a warning naming the tensor.
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

/**
 * Floats before the RoPE tables, and in the tables, computed exactly (BigInt) from the header alone:
 * no per-layer arrays, so a header claiming 2^31-1 layers costs nothing to check.
 */
const bodyFloats = (h: Llama2cHeader): { readonly beforeTables: bigint; readonly tables: bigint; readonly head: bigint } => {
  const [d, hidden, layers, v, seq] = [h.dim, h.hiddenDim, h.nLayers, h.vocabSize, h.seqLen].map(BigInt) as [bigint, bigint, bigint, bigint, bigint]
  const headDim = d / BigInt(h.nHeads)
  const kv = BigInt(h.nKvHeads) * headDim
  const perLayer = d + d * d + 2n * kv * d + d * d + d + 3n * hidden * d
  return { beforeTables: v * d + layers * perLayer + d, tables: seq * headDim, head: h.sharedClassifier ? 0n : v * d }
}

const fileBytes = (h: Llama2cHeader): bigint => {
  const { beforeTables, tables, head } = bodyFloats(h)
  return BigInt(LLAMA2C_HEADER_BYTES) + 4n * (beforeTables + tables + head)
}

/** The exact file size the header implies. */
export const llama2cFileBytes = (header: Llama2cHeader): number => Number(fileBytes(header))

// llama2.c's legacy export writes freqs_cos / freqs_sin [seq_len, head_dim / 2] of pos * theta^(-2j/head_dim),
// theta 10000, in float32. Rows 0, 1 and the last of both tables are compared (1e-2 covers float32
// angles up to seq_len 32k): they pin the tables' offset, so vocab_size, the layer sizes and seq_len.
const ropeTablesMatch = (bytes: Uint8Array, h: Llama2cHeader, offset: number): boolean => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const headDim = h.dim / h.nHeads
  const half = headDim / 2
  for (const p of new Set([0, 1, h.seqLen - 1])) {
    if (p >= h.seqLen) continue
    for (let j = 0; j < half; j++) {
      const angle = p * Math.pow(10000, (-2 * j) / headDim)
      const cos = view.getFloat32(offset + 4 * (p * half + j), true)
      const sin = view.getFloat32(offset + 4 * (h.seqLen * half + p * half + j), true)
      if (!(Math.abs(cos - Math.cos(angle)) <= 1e-2 && Math.abs(sin - Math.sin(angle)) <= 1e-2)) return false
    }
  }
  return true
}

/**
 * Checks a header against the file before anything is allocated: the exact size equation (naming
 * the other classifier layout when that one fits), then the legacy RoPE tables at the offset the
 * header implies, which a header with other sizes but the same byte count cannot match.
 */
const checkAgainstFile = (bytes: Uint8Array, header: Llama2cHeader, path: string): Effect.Effect<void, InvalidCheckpoint> =>
  Effect.suspend(() => {
    const actual = BigInt(bytes.byteLength)
    const expected = fileBytes(header)
    if (actual !== expected) {
      const what = actual < expected ? "truncated" : "oversized"
      const flipped = fileBytes({ ...header, sharedClassifier: !header.sharedClassifier })
      const hint = flipped === actual
        ? `; that is the size with a ${header.sharedClassifier ? "separate" : "shared"} classifier: is the sign of vocab_size (negative = separate) wrong?`
        : ""
      return Effect.fail(new InvalidCheckpoint({
        path,
        reason: `${what}: the header implies ${expected} bytes (${header.sharedClassifier ? "shared" : "separate"} classifier), the file has ${bytes.byteLength}${hint}`
      }))
    }
    const offset = LLAMA2C_HEADER_BYTES + 4 * Number(bodyFloats(header).beforeTables)
    if (!ropeTablesMatch(bytes, header, offset)) {
      return Effect.fail(new InvalidCheckpoint({
        path,
        reason: `${describeHeader(header)} does not describe this file: its size fits, but the RoPE tables are not at byte ${offset} where the header puts them (is vocab_size or seq_len wrong?)`
      }))
    }
    return Effect.void
  })

const describeHeader = (h: Llama2cHeader): string =>
  `header (dim ${h.dim}, hidden_dim ${h.hiddenDim}, n_layers ${h.nLayers}, n_heads ${h.nHeads}, n_kv_heads ${h.nKvHeads}, vocab_size ${h.sharedClassifier ? h.vocabSize : -h.vocabSize}, seq_len ${h.seqLen})`

/** One warning per tensor holding NaN or Inf (a diverged or corrupted export still loads, named). */
const nonFiniteWarning = (name: string, values: Float32Array): string | undefined => {
  let bad = 0
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) bad++
  return bad === 0 ? undefined : `${name} holds ${bad} non-finite value(s) (NaN or Inf)`
}

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
    yield* checkAgainstFile(bytes, header, path)
    const weights = new Map<string, tf.Tensor>()
    const warnings: Array<string> = []
    let offset = LLAMA2C_HEADER_BYTES
    try {
      for (const [names, shape] of layout(header)) {
        const n = count(shape)
        if (names === undefined) {
          offset += 4 * n
          continue
        }
        for (const name of names) {
          const values = floatsAt(bytes, offset, n)
          const warning = nonFiniteWarning(name, values)
          if (warning !== undefined) warnings.push(warning)
          weights.set(name, tf.tensor(values, [...shape], "float32"))
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
    return { config, weights: ordered, ignoredTensors: [], warnings, sourceDtypes: ["F32"] }
  })

/** Reads a llama2.c checkpoint file (see `decodeLlama2c`). */
export const loadLlama2c = (path: string): Effect.Effect<LoadedCheckpoint<LlamaConfig>, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.flatMap(readFileBytes(path), (bytes) => decodeLlama2c(bytes, path))

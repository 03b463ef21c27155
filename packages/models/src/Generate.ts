/**
 * Text generation with the KV cache: the prompt is run once (prefill, logits of its last position
 * only), then one token per step, each step attending over the cached keys/values.
 *
 * Sampling runs on the device (temperature, top-k, top-p, then inverse-CDF sampling with a seeded
 * uniform draw), so per step only the chosen id comes back to JavaScript. That one read is
 * inherent: the caller needs the id, and EOS decides whether to go on. It is overlapped with the
 * next step: the next forward is queued with the id still on the device, then the id is read, so
 * on GPU backends the read's latency hides behind that forward (after an EOS the queued step is
 * discarded).
 *
 * Reproducible: step i draws from seed mixSeed(seed, i); tfjs makes uniform draws in JavaScript,
 * so the same seed gives the same tokens on every backend up to float differences in the logits.
 */
import { ConfigError, mixSeed } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import type { CausalLM } from "./CausalLM.js"

export interface SamplingOptions {
  /** 0 (the default) is greedy (argmax); otherwise logits are divided by it before sampling. */
  readonly temperature?: number
  /** Keep only the k most likely tokens (0, the default: all). */
  readonly topK?: number
  /** Keep the smallest set of most likely tokens whose probability reaches p (1, the default: all). */
  readonly topP?: number
}

export interface GenerateOptions extends SamplingOptions {
  /** Upper bound on the number of new tokens. */
  readonly maxNewTokens: number
  /** Seed of the sampling draws (default 0); unused when greedy. */
  readonly seed?: number
  /** Generation stops after emitting one of these (it is included in the result); default: the config's. [] never stops early. */
  readonly eosTokenIds?: ReadonlyArray<number>
  /** Called with each new id as soon as it is known (streaming); returning false stops generation. */
  readonly onToken?: (id: number, index: number) => boolean | void
}

const check = (ok: boolean, field: string, reason: string): void => {
  if (!ok) throw new ConfigError({ field: `generate.${field}`, reason })
}

const validate = (options: GenerateOptions): void => {
  const { maxNewTokens, temperature = 0, topK = 0, topP = 1, seed = 0 } = options
  check(Number.isInteger(maxNewTokens) && maxNewTokens >= 0, "maxNewTokens", `must be a non-negative integer, got ${maxNewTokens}`)
  check(Number.isFinite(temperature) && temperature >= 0, "temperature", `must be a finite number >= 0, got ${temperature}`)
  check(Number.isInteger(topK) && topK >= 0, "topK", `must be a non-negative integer, got ${topK}`)
  check(Number.isFinite(topP) && topP > 0 && topP <= 1, "topP", `must be in (0, 1], got ${topP}`)
  check(Number.isInteger(seed), "seed", `must be an integer, got ${seed}`)
}

/**
 * The next token id (int32 scalar, on the device) from one position's logits [V], following HF's
 * order: temperature, then top-k, then top-p over the renormalised top-k probabilities.
 */
export const sampleNextToken = (logits: tf.Tensor1D, options: SamplingOptions, seed: number): tf.Scalar =>
  tf.tidy(() => {
    const { temperature = 0, topK = 0, topP = 1 } = options
    if (temperature === 0) return tf.argMax(logits) as tf.Scalar
    const vocab = logits.shape[0]
    const scaled = tf.div(logits, temperature) as tf.Tensor1D
    const filtered = (topK > 0 && topK < vocab) || topP < 1
    // Sorted (descending) candidates only when filtering needs them.
    const { values, indices } = filtered
      ? tf.topk(scaled, topK > 0 ? Math.min(topK, vocab) : vocab)
      : { values: scaled, indices: undefined }
    let probs: tf.Tensor1D = tf.softmax(values)
    if (topP < 1) {
      // Keep a token while the mass of the more likely ones is below p (the first is always kept).
      const before = tf.sub(tf.cumsum(probs), probs)
      probs = tf.mul(probs, tf.cast(tf.less(before, topP), "float32"))
    }
    const n = probs.shape[0]
    const cdf = tf.cumsum(probs)
    const u = tf.mul(tf.randomUniform([1], 0, 1, "float32", seed), tf.slice(cdf, [n - 1], [1]))
    // The first index whose cdf exceeds u; removed tokens have cdf steps of zero and are never hit.
    const index = tf.minimum(tf.sum(tf.cast(tf.lessEqual(cdf, u), "int32")), tf.scalar(n - 1, "int32"))
    return (indices === undefined ? index : tf.gather(indices, index)) as tf.Scalar
  })

/**
 * Generates up to `maxNewTokens` ids after `promptIds` (one sequence) and returns the new ids,
 * including a final EOS as HF does. Every tensor it makes is freed before it returns.
 */
export const generate = async (model: CausalLM, promptIds: ReadonlyArray<number>, options: GenerateOptions): Promise<Array<number>> => {
  validate(options)
  check(promptIds.length > 0, "promptIds", "the prompt must hold at least one token")
  const { maxNewTokens, seed = 0, onToken } = options
  const eos = new Set(options.eosTokenIds ?? model.config.eosTokenId)
  const out: Array<number> = []
  if (maxNewTokens === 0) return out
  const cache = model.createCache(1, promptIds.length + maxNewTokens)
  /** The next id, on the device, from a forward's last-position logits. */
  const step = (input: tf.Tensor2D, index: number): tf.Scalar =>
    tf.tidy(() => {
      const logits = model.forward(input, { cache, lastPositionOnly: true })
      return sampleNextToken(tf.reshape(logits, [-1]) as tf.Tensor1D, options, mixSeed(seed, index))
    })
  let next: tf.Scalar | undefined
  let queued: tf.Scalar | undefined
  try {
    next = tf.tidy(() => step(tf.tensor2d([...promptIds], [1, promptIds.length], "int32"), 0))
    for (let index = 0; index < maxNewTokens; index++) {
      const current: tf.Scalar = next!
      const pending = current.data()
      // Queue the following step with the id still on the device, then wait for the id.
      queued = index + 1 < maxNewTokens ? tf.tidy((): tf.Scalar => step(tf.reshape(current, [1, 1]), index + 1)) : undefined
      const id = (await pending)[0]!
      current.dispose()
      next = queued
      queued = undefined
      out.push(id)
      if (onToken?.(id, index) === false || eos.has(id)) break
    }
  } finally {
    next?.dispose()
    queued?.dispose()
    cache.dispose()
  }
  return out
}

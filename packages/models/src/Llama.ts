/**
 * The Llama family as a `CausalLM`: Llama 2/3, TinyLlama, SmolLM, Mistral (without sliding
 * window), Qwen2 (q/k/v bias) and llama2.c checkpoints (interleaved RoPE). Pre-norm decoder
 * layers: x += o_proj(attention(rope(q), rope(k), v)) on RMSNorm(x), then
 * x += down_proj(silu(gate_proj(x')) * up_proj(x')) on RMSNorm(x); a final RMSNorm and the head
 * (its own `lm_head` or the token embedding, tied).
 *
 * Every projection is a core `Linear` under its HF module name, so adapters inject by PEFT's
 * `target_modules` and save under PEFT's keys.
 */
import { ConfigError, type Linear, type Parameter, type PeftRowOrder } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { attend, mergeHeads, splitHeads } from "./Attention.js"
import { attentionBias, CausalMask, fullAttentionMask, positionsFromMask } from "./AttentionMask.js"
import type { CausalLM, ForwardOptions, FromWeightsOptions } from "./CausalLM.js"
import { Embedding } from "./Embedding.js"
import { swiGlu } from "./SwiGlu.js"
import { checkpointSource, randomSource, type WeightSource } from "./internal/WeightSource.js"
import { makeLinear } from "./internal/makeLinear.js"
import { requirePositiveInt } from "./internal/validate.js"
import { KvCache } from "./KvCache.js"
import { ropePeftRowOrder } from "./loaders/RopePermutation.js"
import type { LlamaConfig } from "./ModelConfig.js"
import { RmsNorm } from "./RmsNorm.js"
import { Rope } from "./Rope.js"

/** One decoder layer's modules. */
interface LlamaLayer {
  readonly inputLayernorm: RmsNorm
  readonly qProj: Linear
  readonly kProj: Linear
  readonly vProj: Linear
  readonly oProj: Linear
  readonly postAttentionLayernorm: RmsNorm
  readonly gateProj: Linear
  readonly upProj: Linear
  readonly downProj: Linear
}

/** What a forward computes once and every layer shares. */
interface ForwardContext {
  readonly b: number
  readonly t: number
  readonly angles: { readonly cos: tf.Tensor; readonly sin: tf.Tensor }
  readonly bias: tf.Tensor4D | undefined
  readonly cache: KvCache | undefined
  readonly training: boolean
}

const validate = (config: LlamaConfig): void => {
  requirePositiveInt("llama", config, [
    "vocabSize", "hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "numKeyValueHeads", "headDim", "maxPositionEmbeddings"
  ])
  if (config.numAttentionHeads % config.numKeyValueHeads !== 0) {
    throw new ConfigError({ field: "llama.numKeyValueHeads", reason: `must divide numAttentionHeads (${config.numAttentionHeads}), got ${config.numKeyValueHeads}` })
  }
  if (config.headDim % 2 !== 0) throw new ConfigError({ field: "llama.headDim", reason: `RoPE needs an even head dimension, got ${config.headDim}` })
}

export class Llama implements CausalLM {
  /** PEFT leaves the head out of "all-linear". */
  readonly outputHeads: ReadonlyArray<string> = ["lm_head"]
  /**
   * A llama2.c model (`ropeLayout: "interleaved"`) keeps q_proj/k_proj rows in llama2.c's order; PEFT
   * files hold them in the HF (half) order of the model `saveHfModel` writes, and core's PEFT
   * writer/reader permutes adapter rows through this. Undefined for HF-layout models.
   */
  readonly peftRowOrder: PeftRowOrder | undefined
  readonly embedTokens: Embedding
  readonly layers: ReadonlyArray<LlamaLayer>
  readonly norm: RmsNorm
  /** The output head; undefined when tied to `embedTokens`. */
  readonly lmHead: Linear | undefined
  private readonly rope: Rope
  private readonly causal: CausalMask
  private readonly scale: number

  /**
   * A model holding a checkpoint's tensors, keyed by HF names (see `CausalLM.ts`). The caller keeps
   * ownership of `weights`: each becomes a variable sharing its buffer (tfjs reference counting),
   * so the map may be disposed right after without doubling memory. A missing tensor is an
   * `InvalidCheckpoint` naming it, a wrong shape a `ShapeMismatch` naming it, an unknown one an
   * `InvalidCheckpoint` unless `strict: false`. A tied model ignores a stored `lm_head.weight`.
   */
  static fromWeights(config: LlamaConfig, weights: ReadonlyMap<string, tf.Tensor>, options: FromWeightsOptions = {}): Llama {
    const source = checkpointSource(weights, options)
    if (config.tieWordEmbeddings) source.ignore("lm_head.weight")
    return new Llama(config, source)
  }

  /** A randomly initialised model as HF initialises one: normal(0, 0.02) matrices, zero biases, unit norms. */
  static init(config: LlamaConfig, seed: number): Llama {
    return new Llama(config, randomSource(seed))
  }

  private constructor(readonly config: LlamaConfig, source: WeightSource) {
    validate(config)
    this.peftRowOrder = ropePeftRowOrder(config)
    const { hiddenSize: d, headDim, numAttentionHeads: heads, numKeyValueHeads: kvHeads, intermediateSize: ffn } = config
    const built: Array<{ dispose(): void }> = []
    const keep = <T extends { dispose(): void }>(module: T): T => {
      built.push(module)
      return module
    }
    try {
      this.embedTokens = keep(new Embedding("model.embed_tokens", config.vocabSize, d, source))
      const qkvBias = config.attentionBias
      const oBias = config.attentionBias && config.modelType === "llama"
      this.layers = Array.from({ length: config.numHiddenLayers }, (_, i) => {
        const p = `model.layers.${i}`
        return {
          inputLayernorm: keep(new RmsNorm(`${p}.input_layernorm`, d, config.rmsNormEps, source)),
          qProj: keep(makeLinear(source, `${p}.self_attn.q_proj`, heads * headDim, d, qkvBias)),
          kProj: keep(makeLinear(source, `${p}.self_attn.k_proj`, kvHeads * headDim, d, qkvBias)),
          vProj: keep(makeLinear(source, `${p}.self_attn.v_proj`, kvHeads * headDim, d, qkvBias)),
          oProj: keep(makeLinear(source, `${p}.self_attn.o_proj`, d, heads * headDim, oBias)),
          postAttentionLayernorm: keep(new RmsNorm(`${p}.post_attention_layernorm`, d, config.rmsNormEps, source)),
          gateProj: keep(makeLinear(source, `${p}.mlp.gate_proj`, ffn, d, false)),
          upProj: keep(makeLinear(source, `${p}.mlp.up_proj`, ffn, d, false)),
          downProj: keep(makeLinear(source, `${p}.mlp.down_proj`, d, ffn, false))
        }
      })
      this.norm = keep(new RmsNorm("model.norm", d, config.rmsNormEps, source))
      this.lmHead = config.tieWordEmbeddings ? undefined : keep(makeLinear(source, "lm_head", config.vocabSize, d, false))
      source.finish()
    } catch (error) {
      // A bad checkpoint must not leak the variables built before the bad tensor.
      for (const module of built) module.dispose()
      throw error
    }
    const capacity = Math.min(config.maxPositionEmbeddings, 512)
    this.rope = new Rope(headDim, config.ropeTheta, config.ropeLayout, config.ropeScaling, capacity)
    this.causal = new CausalMask(capacity)
    this.scale = 1 / Math.sqrt(headDim)
  }

  forward(inputIds: tf.Tensor2D, options: ForwardOptions = {}): tf.Tensor3D {
    const [b, t] = inputIds.shape
    const cache = options.cache
    cache?.check(b, t)
    const past = cache?.length ?? 0
    return tf.tidy(() => {
      const fullMask = fullAttentionMask(b, past, t, options.attentionMask, cache?.mask)
      const context: ForwardContext = {
        b,
        t,
        // Without padding every row has positions past .. past + t - 1: a slice of the cached table.
        angles: fullMask === undefined ? this.rope.range(past, t) : this.rope.gather(positionsFromMask(fullMask, t), past + t - 1),
        bias: attentionBias(this.causal, past, t, fullMask),
        cache,
        training: options.training ?? false
      }
      let h = tf.reshape(this.embedTokens.lookup(inputIds), [b * t, this.config.hiddenSize]) as tf.Tensor2D
      this.layers.forEach((layer, index) => {
        const input = h
        // A tidy per layer frees its intermediates early (inference); the gradient tape keeps what backprop needs.
        h = tf.tidy(() => {
          const attended = tf.add(input, this.attention(layer, index, layer.inputLayernorm.apply(input), context))
          return tf.add(attended, this.mlp(layer, layer.postAttentionLayernorm.apply(attended), context.training))
        })
      })
      let rows = t
      if (options.lastPositionOnly === true) {
        h = tf.reshape(tf.slice(tf.reshape(h, [b, t, -1]), [0, t - 1, 0], [b, 1, -1]), [b, -1])
        rows = 1
      }
      h = this.norm.apply(h) as tf.Tensor2D
      const logits = this.lmHead === undefined ? tf.matMul(h as tf.Tensor2D, this.embedTokens.weight, false, true) : this.lmHead.apply(h, context.training)
      cache?.advance(t, fullMask)
      return tf.reshape(logits, [b, rows, this.config.vocabSize])
    })
  }

  createCache(batch: number, maxLength: number): KvCache {
    return new KvCache(this.config.numHiddenLayers, batch, maxLength)
  }

  linears(): ReadonlyArray<Linear> {
    const all = this.layers.flatMap((l) => [l.qProj, l.kProj, l.vProj, l.oProj, l.gateProj, l.upProj, l.downProj])
    return this.lmHead === undefined ? all : [...all, this.lmHead]
  }

  parameters(): ReadonlyArray<Parameter> {
    return [
      ...this.embedTokens.parameters(),
      ...this.layers.flatMap((l) => [
        ...l.inputLayernorm.parameters(),
        ...[l.qProj, l.kProj, l.vProj, l.oProj].flatMap((linear) => linear.baseParameters()),
        ...l.postAttentionLayernorm.parameters(),
        ...[l.gateProj, l.upProj, l.downProj].flatMap((linear) => linear.baseParameters())
      ]),
      ...this.norm.parameters(),
      ...(this.lmHead?.baseParameters() ?? [])
    ]
  }

  setTrainable(trainable: boolean): void {
    for (const { variable } of this.parameters()) variable.trainable = trainable
  }

  /** Copies of every weight under its HF name (no `lm_head.weight` when tied, as HF saves). */
  stateDict(): Record<string, tf.Tensor> {
    return Object.fromEntries(this.parameters().map(({ name, variable }) => [name, tf.clone(variable)]))
  }

  dispose(): void {
    this.embedTokens.dispose()
    for (const layer of this.layers) for (const module of Object.values(layer)) module.dispose()
    this.norm.dispose()
    this.lmHead?.dispose()
    this.rope.dispose()
    this.causal.dispose()
  }

  private attention(layer: LlamaLayer, index: number, x: tf.Tensor, context: ForwardContext): tf.Tensor2D {
    const { b, t, training } = context
    const { numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim } = this.config
    const q = this.rope.apply(splitHeads(layer.qProj.apply(x, training), b, t, heads, headDim), context.angles)
    let k = this.rope.apply(splitHeads(layer.kProj.apply(x, training), b, t, kvHeads, headDim), context.angles)
    let v = splitHeads(layer.vProj.apply(x, training), b, t, kvHeads, headDim)
    if (context.cache !== undefined) ({ keys: k, values: v } = context.cache.append(index, k, v))
    // Scaling q ([t, d] per head) is cheaper than scaling the scores ([t, L]).
    const out = attend(tf.mul(q, this.scale), k, v, context.bias)
    return layer.oProj.apply(mergeHeads(out), training) as tf.Tensor2D
  }

  private mlp(layer: LlamaLayer, x: tf.Tensor, training: boolean): tf.Tensor {
    return layer.downProj.apply(swiGlu(layer.gateProj.apply(x, training), layer.upProj.apply(x, training)), training)
  }
}

/**
 * OPT (the COLA paper's base model) as a `CausalLM`, following HF's `OPTForCausalLM`: token
 * embeddings (optionally projected in from `wordEmbedProjDim`), plus learned position embeddings
 * at offset 2; decoder layers with LayerNorm before (pre-LN, every size but 350m) or after
 * (post-LN) each block, full multi-head attention, a ReLU (or GELU) MLP fc2(act(fc1 x)); a final
 * LayerNorm only in pre-LN models; projection out; the head tied to the token embedding unless
 * `tieWordEmbeddings` is false.
 *
 * Positions come from the attention mask as in HF: cumsum(mask) * mask - 1, plus the offset 2, so a
 * left-padded row's first real token sits at position 0 (row 2 of the table) and pads at row 1.
 */
import { ConfigError, type Linear, type Parameter, ShapeMismatch } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { attend, mergeHeads, splitHeads } from "./Attention.js"
import { attentionBias, CausalMask, fullAttentionMask } from "./AttentionMask.js"
import type { CausalLM, ForwardOptions, FromWeightsOptions } from "./CausalLM.js"
import { Embedding } from "./Embedding.js"
import { checkpointSource, randomSource, type WeightSource } from "./internal/WeightSource.js"
import { makeLinear } from "./internal/makeLinear.js"
import { requirePositiveInt } from "./internal/validate.js"
import { KvCache } from "./KvCache.js"
import { LayerNorm } from "./LayerNorm.js"
import type { OptConfig } from "./ModelConfig.js"

/** HF's `OPTLearnedPositionalEmbedding` offset: the table has two extra rows in front. */
export const OPT_POSITION_OFFSET = 2

/** PyTorch's LayerNorm default; OPT configs do not override it. */
const LAYER_NORM_EPS = 1e-5

interface OptLayer {
  readonly qProj: Linear
  readonly kProj: Linear
  readonly vProj: Linear
  readonly outProj: Linear
  readonly selfAttnLayerNorm: LayerNorm
  readonly fc1: Linear
  readonly fc2: Linear
  readonly finalLayerNorm: LayerNorm
}

interface ForwardContext {
  readonly b: number
  readonly t: number
  readonly bias: tf.Tensor4D | undefined
  readonly cache: KvCache | undefined
  readonly training: boolean
}

/**
 * OPT's position ids for the last `t` columns of `fullMask` [b, L]: (cumsum(mask) * mask - 1) + 2,
 * int32 [b, t]. Pads get row 1 (HF's value; they are masked anyway).
 */
export const optPositionsFromMask = (fullMask: tf.Tensor2D, t: number): tf.Tensor2D =>
  tf.tidy(() => {
    const [b, length] = fullMask.shape
    const positions = tf.add(tf.sub(tf.mul(tf.cumsum(fullMask, 1), fullMask), 1), OPT_POSITION_OFFSET)
    return tf.cast(tf.slice(positions, [0, length - t], [b, t]), "int32") as tf.Tensor2D
  })

const validate = (config: OptConfig): void => {
  requirePositiveInt("opt", config, ["vocabSize", "hiddenSize", "ffnDim", "numHiddenLayers", "numAttentionHeads", "maxPositionEmbeddings", "wordEmbedProjDim"])
  if (config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new ConfigError({ field: "opt.numAttentionHeads", reason: `must divide hiddenSize (${config.hiddenSize}), got ${config.numAttentionHeads}` })
  }
}

export class Opt implements CausalLM {
  readonly outputHeads: ReadonlyArray<string> = ["lm_head"]
  readonly embedTokens: Embedding
  readonly embedPositions: Embedding
  /** wordEmbedProjDim -> hiddenSize, when they differ (OPT-350m). */
  readonly projectIn: Linear | undefined
  readonly projectOut: Linear | undefined
  readonly layers: ReadonlyArray<OptLayer>
  /** Present only in pre-LN models (HF: do_layer_norm_before). */
  readonly finalLayerNorm: LayerNorm | undefined
  /** The output head; undefined when tied to `embedTokens`. */
  readonly lmHead: Linear | undefined
  private readonly causal: CausalMask
  private readonly headDim: number

  /**
   * A model holding a checkpoint's tensors, keyed by HF names (`model.decoder.*`, see
   * `CausalLM.ts`). Ownership and errors as `Llama.fromWeights`: the caller keeps `weights` (the
   * variables share their buffers), a missing tensor is an `InvalidCheckpoint` naming it, a wrong
   * shape a `ShapeMismatch` naming it. A tied model ignores a stored `lm_head.weight`.
   */
  static fromWeights(config: OptConfig, weights: ReadonlyMap<string, tf.Tensor>, options: FromWeightsOptions = {}): Opt {
    const source = checkpointSource(weights, options)
    if (config.tieWordEmbeddings) source.ignore("lm_head.weight")
    return new Opt(config, source)
  }

  /** A randomly initialised model as HF initialises one (init_std 0.02, zero biases, unit LayerNorms). */
  static init(config: OptConfig, seed: number): Opt {
    return new Opt(config, randomSource(seed))
  }

  private constructor(readonly config: OptConfig, source: WeightSource) {
    validate(config)
    const { hiddenSize: d, wordEmbedProjDim: e, ffnDim: ffn, enableBias: bias } = config
    const affine = config.layerNormElementwiseAffine
    const built: Array<{ dispose(): void }> = []
    const keep = <T extends { dispose(): void }>(module: T): T => {
      built.push(module)
      return module
    }
    try {
      this.embedTokens = keep(new Embedding("model.decoder.embed_tokens", config.vocabSize, e, source))
      this.embedPositions = keep(new Embedding("model.decoder.embed_positions", config.maxPositionEmbeddings + OPT_POSITION_OFFSET, d, source))
      this.projectIn = e === d ? undefined : keep(makeLinear(source, "model.decoder.project_in", d, e, false))
      this.layers = Array.from({ length: config.numHiddenLayers }, (_, i) => {
        const p = `model.decoder.layers.${i}`
        return {
          qProj: keep(makeLinear(source, `${p}.self_attn.q_proj`, d, d, bias)),
          kProj: keep(makeLinear(source, `${p}.self_attn.k_proj`, d, d, bias)),
          vProj: keep(makeLinear(source, `${p}.self_attn.v_proj`, d, d, bias)),
          outProj: keep(makeLinear(source, `${p}.self_attn.out_proj`, d, d, bias)),
          selfAttnLayerNorm: keep(new LayerNorm(`${p}.self_attn_layer_norm`, d, LAYER_NORM_EPS, affine, source)),
          fc1: keep(makeLinear(source, `${p}.fc1`, ffn, d, bias)),
          fc2: keep(makeLinear(source, `${p}.fc2`, d, ffn, bias)),
          finalLayerNorm: keep(new LayerNorm(`${p}.final_layer_norm`, d, LAYER_NORM_EPS, affine, source))
        }
      })
      this.finalLayerNorm = config.doLayerNormBefore ? keep(new LayerNorm("model.decoder.final_layer_norm", d, LAYER_NORM_EPS, affine, source)) : undefined
      this.projectOut = e === d ? undefined : keep(makeLinear(source, "model.decoder.project_out", e, d, false))
      this.lmHead = config.tieWordEmbeddings ? undefined : keep(makeLinear(source, "lm_head", config.vocabSize, e, false))
      source.finish()
    } catch (error) {
      for (const module of built) module.dispose()
      throw error
    }
    this.causal = new CausalMask(Math.min(config.maxPositionEmbeddings, 512))
    this.headDim = d / config.numAttentionHeads
  }

  forward(inputIds: tf.Tensor2D, options: ForwardOptions = {}): tf.Tensor3D {
    const [b, t] = inputIds.shape
    const cache = options.cache
    cache?.check(b, t)
    const past = cache?.length ?? 0
    const { hiddenSize: d, maxPositionEmbeddings } = this.config
    if (past + t > maxPositionEmbeddings) {
      // Learned positions end there; a gather past the table would fail obscurely or read garbage.
      throw new ShapeMismatch({ what: "sequence length (OPT learned positions)", expected: [maxPositionEmbeddings], actual: [past + t] })
    }
    return tf.tidy(() => {
      const training = options.training ?? false
      const fullMask = fullAttentionMask(b, past, t, options.attentionMask, cache?.mask)
      const context: ForwardContext = { b, t, bias: attentionBias(this.causal, past, t, fullMask), cache, training }
      let tokens = tf.reshape(this.embedTokens.lookup(inputIds), [b * t, this.config.wordEmbedProjDim])
      if (this.projectIn !== undefined) tokens = this.projectIn.apply(tokens, training)
      // Without padding every row uses table rows past + 2 .. past + t + 1: a slice, broadcast over the batch.
      const positions = fullMask === undefined
        ? this.embedPositions.rows(past + OPT_POSITION_OFFSET, t)
        : this.embedPositions.lookup(optPositionsFromMask(fullMask, t))
      let h = tf.reshape(tf.add(tf.reshape(tokens, [b, t, d]), positions), [b * t, d]) as tf.Tensor2D
      this.layers.forEach((layer, index) => {
        const input = h
        h = tf.tidy(() => this.layer(layer, index, input, context))
      })
      let rows = t
      if (options.lastPositionOnly === true) {
        h = tf.reshape(tf.slice(tf.reshape(h, [b, t, d]), [0, t - 1, 0], [b, 1, d]), [b, d])
        rows = 1
      }
      if (this.finalLayerNorm !== undefined) h = this.finalLayerNorm.apply(h) as tf.Tensor2D
      if (this.projectOut !== undefined) h = this.projectOut.apply(h, training) as tf.Tensor2D
      const logits = this.lmHead === undefined ? tf.matMul(h as tf.Tensor2D, this.embedTokens.weight, false, true) : this.lmHead.apply(h, training)
      cache?.advance(t, fullMask)
      return tf.reshape(logits, [b, rows, this.config.vocabSize])
    })
  }

  createCache(batch: number, maxLength: number): KvCache {
    return new KvCache(this.config.numHiddenLayers, batch, maxLength)
  }

  linears(): ReadonlyArray<Linear> {
    return [
      ...(this.projectIn === undefined ? [] : [this.projectIn]),
      ...this.layers.flatMap((l) => [l.qProj, l.kProj, l.vProj, l.outProj, l.fc1, l.fc2]),
      ...(this.projectOut === undefined ? [] : [this.projectOut]),
      ...(this.lmHead === undefined ? [] : [this.lmHead])
    ]
  }

  parameters(): ReadonlyArray<Parameter> {
    return [
      ...this.embedTokens.parameters(),
      ...this.embedPositions.parameters(),
      ...(this.projectIn?.baseParameters() ?? []),
      ...this.layers.flatMap((l) => [
        ...[l.qProj, l.kProj, l.vProj, l.outProj].flatMap((linear) => linear.baseParameters()),
        ...l.selfAttnLayerNorm.parameters(),
        ...[l.fc1, l.fc2].flatMap((linear) => linear.baseParameters()),
        ...l.finalLayerNorm.parameters()
      ]),
      ...(this.finalLayerNorm?.parameters() ?? []),
      ...(this.projectOut?.baseParameters() ?? []),
      ...(this.lmHead?.baseParameters() ?? [])
    ]
  }

  setTrainable(trainable: boolean): void {
    for (const { variable } of this.parameters()) variable.trainable = trainable
  }

  /** Copies of every weight under its HF name (no `lm_head.weight` when tied). */
  stateDict(): Record<string, tf.Tensor> {
    return Object.fromEntries(this.parameters().map(({ name, variable }) => [name, tf.clone(variable)]))
  }

  dispose(): void {
    this.embedTokens.dispose()
    this.embedPositions.dispose()
    this.projectIn?.dispose()
    for (const layer of this.layers) for (const module of Object.values(layer)) module.dispose()
    this.finalLayerNorm?.dispose()
    this.projectOut?.dispose()
    this.lmHead?.dispose()
    this.causal.dispose()
  }

  /** One decoder layer, HF's OPTDecoderLayer: LayerNorm before each block (pre-LN) or after the residual add (post-LN). */
  private layer(layer: OptLayer, index: number, input: tf.Tensor2D, context: ForwardContext): tf.Tensor2D {
    const before = this.config.doLayerNormBefore
    const { training } = context
    let x: tf.Tensor = before ? layer.selfAttnLayerNorm.apply(input) : input
    let h: tf.Tensor = tf.add(input, this.attention(layer, index, x, context))
    if (!before) h = layer.selfAttnLayerNorm.apply(h)
    x = before ? layer.finalLayerNorm.apply(h) : h
    h = tf.add(h, layer.fc2.apply(this.activation(layer.fc1.apply(x, training)), training))
    if (!before) h = layer.finalLayerNorm.apply(h)
    return h as tf.Tensor2D
  }

  private attention(layer: OptLayer, index: number, x: tf.Tensor, context: ForwardContext): tf.Tensor2D {
    const { b, t, training } = context
    const heads = this.config.numAttentionHeads
    // HF scales the projected queries (bias included) by head_dim^-0.5.
    const q = splitHeads(tf.mul(layer.qProj.apply(x, training), 1 / Math.sqrt(this.headDim)), b, t, heads, this.headDim)
    let k = splitHeads(layer.kProj.apply(x, training), b, t, heads, this.headDim)
    let v = splitHeads(layer.vProj.apply(x, training), b, t, heads, this.headDim)
    if (context.cache !== undefined) ({ keys: k, values: v } = context.cache.append(index, k, v))
    return layer.outProj.apply(mergeHeads(attend(q, k, v, context.bias)), training) as tf.Tensor2D
  }

  private activation(x: tf.Tensor): tf.Tensor {
    if (this.config.activationFunction === "relu") return tf.relu(x)
    // Exact GELU (HF "gelu"): 0.5 x (1 + erf(x / sqrt 2)).
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))))
  }
}

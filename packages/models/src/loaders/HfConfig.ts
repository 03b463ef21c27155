/**
 * Hugging Face `config.json` <-> `LlamaConfig` | `OptConfig`. Decoding applies the defaults the
 * transformers config classes apply (so a config that loads there means the same here), ignores the
 * many keys that do not change the math (dropout, `torch_dtype`, `use_cache`, ...), and rejects what
 * would silently compute something else: an unknown `model_type`, a RoPE scaling other than "linear"
 * and "llama3", quantized weights, another activation, MLP biases. Failures are `ConfigError`s naming the field (`config.hidden_size`).
 */
import { ConfigError, decodeConfig, NonNegativeInt, PositiveInt } from "@peftkit/core"
import { Effect, Schema } from "effect"
import type { LlamaConfig, ModelConfig, OptConfig, RopeScaling } from "../ModelConfig.js"

/** The `model_type` values we load. */
export const HF_MODEL_TYPES = ["llama", "qwen2", "mistral", "opt"] as const
export type HfModelType = (typeof HF_MODEL_TYPES)[number]

/** The dtype recorded in `config.json` (`torch_dtype`), i.e. the dtype of the weights files. */
export type HfTorchDtype = "float32" | "float16" | "bfloat16"

/** The largest size a config may declare: int32, what tfjs shapes and typed-array lengths hold. */
export const MAX_CONFIG_SIZE = 2147483647
// Every size of config.json: a positive int32 (the loaders then check it against the weights files).
const Size = PositiveInt.pipe(Schema.lessThanOrEqualTo(MAX_CONFIG_SIZE, { message: () => `must be at most ${MAX_CONFIG_SIZE}` }))

const PositiveNumber = Schema.Number.pipe(Schema.finite(), Schema.positive({ message: () => "must be a positive number" }))
const TokenId = NonNegativeInt
const TokenIds = Schema.Union(TokenId, Schema.Array(TokenId))

const LlamaJson = Schema.Struct({
  model_type: Schema.Literal("llama", "qwen2", "mistral"),
  vocab_size: Size,
  hidden_size: Size,
  intermediate_size: Size,
  num_hidden_layers: Size,
  num_attention_heads: Size,
  num_key_value_heads: Schema.optional(Size),
  head_dim: Schema.optional(Size),
  hidden_act: Schema.optional(Schema.Literal("silu", "swish")),
  rms_norm_eps: Schema.optional(PositiveNumber),
  rope_theta: Schema.optional(PositiveNumber),
  rope_scaling: Schema.optional(Schema.Unknown),
  rope_parameters: Schema.optional(Schema.Unknown),
  max_position_embeddings: Schema.optional(Size),
  tie_word_embeddings: Schema.optional(Schema.Boolean),
  attention_bias: Schema.optional(Schema.Boolean),
  mlp_bias: Schema.optional(Schema.Boolean),
  bos_token_id: Schema.optional(Schema.NullOr(TokenId)),
  eos_token_id: Schema.optional(Schema.NullOr(TokenIds)),
  quantization_config: Schema.optional(Schema.Unknown)
})

const OptJson = Schema.Struct({
  model_type: Schema.Literal("opt"),
  vocab_size: Size,
  hidden_size: Size,
  ffn_dim: Size,
  num_hidden_layers: Size,
  num_attention_heads: Size,
  max_position_embeddings: Schema.optional(Size),
  do_layer_norm_before: Schema.optional(Schema.Boolean),
  _remove_final_layer_norm: Schema.optional(Schema.Boolean),
  word_embed_proj_dim: Schema.optional(Size),
  enable_bias: Schema.optional(Schema.Boolean),
  layer_norm_elementwise_affine: Schema.optional(Schema.Boolean),
  activation_function: Schema.optional(Schema.Literal("relu", "gelu")),
  pad_token_id: Schema.optional(TokenId),
  bos_token_id: Schema.optional(Schema.NullOr(TokenId)),
  eos_token_id: Schema.optional(Schema.NullOr(TokenIds)),
  tie_word_embeddings: Schema.optional(Schema.Boolean),
  quantization_config: Schema.optional(Schema.Unknown)
})

// transformers' defaults where config.json leaves a key out (LlamaConfig, Qwen2Config, MistralConfig, OPTConfig).
const llamaDefaults = {
  llama: { maxPositionEmbeddings: 2048, bosTokenId: 1, eosTokenId: [2] },
  qwen2: { maxPositionEmbeddings: 32768, bosTokenId: undefined, eosTokenId: [] },
  mistral: { maxPositionEmbeddings: 4096 * 32, bosTokenId: 1, eosTokenId: [2] }
} as const

// Unknown keys are dropped before the strict decode, so only fields we read can fail (and are
// named). `null` means "use the default" for every field but the token ids, where it means "none".
const pickKnown = (json: Record<string, unknown>, fields: ReadonlyArray<string>): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(json).filter(([key, value]) => fields.includes(key) && (value !== null || key === "bos_token_id" || key === "eos_token_id"))
  )

const tokenIds = (value: number | ReadonlyArray<number> | null | undefined, fallback: ReadonlyArray<number>): ReadonlyArray<number> =>
  value === undefined ? fallback : value === null ? [] : typeof value === "number" ? [value] : [...value]

const fail = (field: string, reason: string) => Effect.fail(new ConfigError({ field: `config.${field}`, reason }))

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

const positiveNumber = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value) && value > 0

/**
 * `rope_scaling` (or transformers v5's `rope_parameters`): the default RoPE, "linear" and "llama3"
 * are implemented; the others (dynamic NTK, YaRN, LongRoPE) change the math and are refused.
 */
const ropeScaling = (json: typeof LlamaJson.Type): Effect.Effect<RopeScaling | undefined, ConfigError> =>
  Effect.gen(function* () {
    let scaling: RopeScaling | undefined
    for (const field of ["rope_scaling", "rope_parameters"] as const) {
      const value = json[field]
      if (value === undefined) continue
      if (!isObject(value)) return yield* fail(field, "must be an object or null")
      const kind = value["rope_type"] ?? value["type"] ?? "default"
      if (kind === "default") continue
      const number = (key: string): Effect.Effect<number, ConfigError> => {
        const item = value[key]
        return positiveNumber(item) ? Effect.succeed(item) : fail(`${field}.${key}`, "must be a positive number")
      }
      if (kind === "linear") {
        scaling = { type: "linear", factor: yield* number("factor") }
      } else if (kind === "llama3") {
        const original = yield* number("original_max_position_embeddings")
        if (!Number.isInteger(original)) return yield* fail(`${field}.original_max_position_embeddings`, "must be an integer")
        scaling = {
          type: "llama3",
          factor: yield* number("factor"),
          lowFreqFactor: yield* number("low_freq_factor"),
          highFreqFactor: yield* number("high_freq_factor"),
          originalMaxPositionEmbeddings: original
        }
      } else {
        return yield* fail(field, `RoPE type '${String(kind)}' is not supported (supported: default, linear, llama3)`)
      }
    }
    return scaling
  })

const ropeTheta = (json: typeof LlamaJson.Type): Effect.Effect<number, ConfigError> => {
  // transformers v5 moved rope_theta into rope_parameters.
  const nested = isObject(json.rope_parameters) ? json.rope_parameters["rope_theta"] : undefined
  if (nested !== undefined && !positiveNumber(nested)) return fail("rope_parameters.rope_theta", "must be a positive number")
  return Effect.succeed(nested ?? json.rope_theta ?? 10000)
}

const decodeLlama = (input: Record<string, unknown>): Effect.Effect<LlamaConfig, ConfigError> =>
  Effect.gen(function* () {
    const json = yield* decodeConfig(LlamaJson, pickKnown(input, Object.keys(LlamaJson.fields)), "config")
    if (json.quantization_config !== undefined) return yield* fail("quantization_config", "quantized checkpoints are not supported (the weights must be F32, F16 or BF16)")
    if (json.mlp_bias === true) return yield* fail("mlp_bias", "MLP biases are not supported")
    const heads = json.num_attention_heads
    const kvHeads = json.num_key_value_heads ?? heads
    if (json.head_dim === undefined && json.hidden_size % heads !== 0) {
      return yield* fail("num_attention_heads", `hidden_size ${json.hidden_size} is not divisible by num_attention_heads ${heads} (and no head_dim is given)`)
    }
    if (heads % kvHeads !== 0) return yield* fail("num_key_value_heads", `num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`)
    const headDim = json.head_dim ?? json.hidden_size / heads
    if (headDim % 2 !== 0) return yield* fail("head_dim", `RoPE needs an even head dimension, got ${headDim}`)
    const defaults = llamaDefaults[json.model_type]
    const scaling = yield* ropeScaling(json)
    return {
      modelType: json.model_type,
      vocabSize: json.vocab_size,
      hiddenSize: json.hidden_size,
      intermediateSize: json.intermediate_size,
      numHiddenLayers: json.num_hidden_layers,
      numAttentionHeads: heads,
      numKeyValueHeads: kvHeads,
      headDim,
      rmsNormEps: json.rms_norm_eps ?? 1e-6,
      ropeTheta: yield* ropeTheta(json),
      ...(scaling === undefined ? {} : { ropeScaling: scaling }),
      maxPositionEmbeddings: json.max_position_embeddings ?? defaults.maxPositionEmbeddings,
      tieWordEmbeddings: json.tie_word_embeddings ?? false,
      // transformers' Qwen2 always has q/k/v biases (its config has no switch); Mistral never has.
      attentionBias: json.model_type === "qwen2" ? true : json.model_type === "mistral" ? false : (json.attention_bias ?? false),
      ropeLayout: "half",
      bosTokenId: json.bos_token_id === undefined ? defaults.bosTokenId : (json.bos_token_id ?? undefined),
      eosTokenId: tokenIds(json.eos_token_id, defaults.eosTokenId)
    } satisfies LlamaConfig
  })

const decodeOpt = (input: Record<string, unknown>): Effect.Effect<OptConfig, ConfigError> =>
  Effect.gen(function* () {
    const json = yield* decodeConfig(OptJson, pickKnown(input, Object.keys(OptJson.fields)), "config")
    if (json.quantization_config !== undefined) return yield* fail("quantization_config", "quantized checkpoints are not supported (the weights must be F32, F16 or BF16)")
    if (json.hidden_size % json.num_attention_heads !== 0) {
      return yield* fail("num_attention_heads", `hidden_size ${json.hidden_size} is not divisible by num_attention_heads ${json.num_attention_heads}`)
    }
    const doLayerNormBefore = json.do_layer_norm_before ?? true
    if (doLayerNormBefore && json._remove_final_layer_norm === true) {
      return yield* fail("_remove_final_layer_norm", "a pre-LN OPT without its final layer norm is not supported")
    }
    return {
      modelType: "opt",
      vocabSize: json.vocab_size,
      hiddenSize: json.hidden_size,
      ffnDim: json.ffn_dim,
      numHiddenLayers: json.num_hidden_layers,
      numAttentionHeads: json.num_attention_heads,
      maxPositionEmbeddings: json.max_position_embeddings ?? 2048,
      doLayerNormBefore,
      wordEmbedProjDim: json.word_embed_proj_dim ?? json.hidden_size,
      enableBias: json.enable_bias ?? true,
      layerNormElementwiseAffine: json.layer_norm_elementwise_affine ?? true,
      activationFunction: json.activation_function ?? "relu",
      padTokenId: json.pad_token_id ?? 1,
      bosTokenId: json.bos_token_id === undefined ? 2 : (json.bos_token_id ?? undefined),
      eosTokenId: tokenIds(json.eos_token_id, [2]),
      // PretrainedConfig's default; OPT checkpoints rely on it (they carry no lm_head.weight).
      tieWordEmbeddings: json.tie_word_embeddings ?? true
    } satisfies OptConfig
  })

/**
 * Decodes a parsed `config.json`. `model_type` picks the architecture; an unknown one is a
 * `ConfigError` on `config.model_type` listing the supported types. HF checkpoints rotate RoPE
 * halves, so Llama-family configs come back with `ropeLayout: "half"`.
 */
export const decodeHfConfig = (json: unknown): Effect.Effect<ModelConfig, ConfigError> =>
  Effect.suspend((): Effect.Effect<ModelConfig, ConfigError> => {
    if (!isObject(json)) return Effect.fail(new ConfigError({ field: "config", reason: "config.json must hold a JSON object" }))
    const modelType = json["model_type"]
    if (typeof modelType !== "string" || !(HF_MODEL_TYPES as ReadonlyArray<string>).includes(modelType)) {
      const got = modelType === undefined ? "is missing" : `'${String(modelType)}' is not supported`
      return fail("model_type", `${got}; supported: ${HF_MODEL_TYPES.join(", ")}`)
    }
    return modelType === "opt" ? decodeOpt(json) : decodeLlama(json)
  })

const single = (ids: ReadonlyArray<number>): number | ReadonlyArray<number> | null => (ids.length === 0 ? null : ids.length === 1 ? ids[0]! : [...ids])

const hfRopeScaling = (scaling: RopeScaling | undefined): Record<string, unknown> | null => {
  if (scaling === undefined) return null
  if (scaling.type === "linear") return { rope_type: "linear", factor: scaling.factor }
  return {
    rope_type: "llama3",
    factor: scaling.factor,
    low_freq_factor: scaling.lowFreqFactor,
    high_freq_factor: scaling.highFreqFactor,
    original_max_position_embeddings: scaling.originalMaxPositionEmbeddings
  }
}

const architectures: Record<ModelConfig["modelType"], string> = {
  llama: "LlamaForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  mistral: "MistralForCausalLM",
  opt: "OPTForCausalLM"
}

/**
 * The `config.json` transformers needs to rebuild the model (`AutoModelForCausalLM.from_pretrained`).
 * It describes HF-layout weights: a config with `ropeLayout: "interleaved"` (llama2.c) is written
 * like any other, and the q/k weights saved next to it must be permuted to the half layout, which
 * `saveHfModel` does.
 */
export const toHfConfig = (config: ModelConfig, options: { readonly torchDtype?: HfTorchDtype } = {}): Record<string, unknown> => {
  const common = {
    architectures: [architectures[config.modelType]],
    model_type: config.modelType,
    torch_dtype: options.torchDtype ?? "float32",
    bos_token_id: config.bosTokenId ?? null,
    eos_token_id: single(config.eosTokenId),
    tie_word_embeddings: config.tieWordEmbeddings,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    num_hidden_layers: config.numHiddenLayers,
    num_attention_heads: config.numAttentionHeads,
    max_position_embeddings: config.maxPositionEmbeddings
  }
  if (config.modelType === "opt") {
    return {
      ...common,
      ffn_dim: config.ffnDim,
      do_layer_norm_before: config.doLayerNormBefore,
      _remove_final_layer_norm: false,
      word_embed_proj_dim: config.wordEmbedProjDim,
      enable_bias: config.enableBias,
      layer_norm_elementwise_affine: config.layerNormElementwiseAffine,
      activation_function: config.activationFunction,
      pad_token_id: config.padTokenId
    }
  }
  return {
    ...common,
    intermediate_size: config.intermediateSize,
    num_key_value_heads: config.numKeyValueHeads,
    head_dim: config.headDim,
    hidden_act: "silu",
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling: hfRopeScaling(config.ropeScaling),
    // Qwen2 and Mistral have no such switch (fixed biases / none); Llama does.
    ...(config.modelType === "llama" ? { attention_bias: config.attentionBias, mlp_bias: false } : {}),
    ...(config.modelType === "qwen2" ? { use_sliding_window: false } : {}),
    ...(config.modelType === "mistral" ? { sliding_window: null } : {})
  }
}

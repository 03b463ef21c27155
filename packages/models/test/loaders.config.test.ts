import { ConfigError } from "@peftkit/core"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { decodeHfConfig, toHfConfig } from "../src/loaders/HfConfig.js"
import type { LlamaConfig, ModelConfig, OptConfig } from "../src/ModelConfig.js"
import { tinyLlama, tinyOpt } from "./fixtures/loaders.js"

const decode = (json: unknown): ModelConfig => Effect.runSync(decodeHfConfig(json))
const decodeError = (json: unknown): ConfigError => {
  const exit = Effect.runSyncExit(Effect.flip(decodeHfConfig(json)))
  if (Exit.isFailure(exit)) throw new Error("expected a ConfigError")
  expect(exit.value).toBeInstanceOf(ConfigError)
  return exit.value
}

// Shaped like the Hub's config.json files of these models (values as published).
const qwen25_05b = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: "silu",
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.40.1",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936
}

const tinyLlamaChat = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 5632,
  max_position_embeddings: 2048,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 22,
  num_key_value_heads: 4,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 10000.0,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.35.0",
  use_cache: true,
  vocab_size: 32000
}

const opt125m = {
  _name_or_path: "facebook/opt-125m",
  activation_dropout: 0.0,
  activation_function: "relu",
  architectures: ["OPTForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 2,
  do_layer_norm_before: true,
  dropout: 0.1,
  eos_token_id: 2,
  ffn_dim: 3072,
  hidden_size: 768,
  init_std: 0.02,
  layerdrop: 0.0,
  max_position_embeddings: 2048,
  model_type: "opt",
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  prefix: "</s>",
  torch_dtype: "float16",
  transformers_version: "4.21.0.dev0",
  use_cache: true,
  vocab_size: 50272,
  word_embed_proj_dim: 768
}

describe("HfConfig: decoding config.json", () => {
  it("decodes a Qwen2.5-0.5B config (tied head from the file, q/k/v bias implied by qwen2)", () => {
    expect(decode(qwen25_05b)).toStrictEqual({
      modelType: "qwen2",
      vocabSize: 151936,
      hiddenSize: 896,
      intermediateSize: 4864,
      numHiddenLayers: 24,
      numAttentionHeads: 14,
      numKeyValueHeads: 2,
      headDim: 64,
      rmsNormEps: 1e-6,
      ropeTheta: 1000000,
      maxPositionEmbeddings: 32768,
      tieWordEmbeddings: true,
      attentionBias: true,
      ropeLayout: "half",
      bosTokenId: 151643,
      eosTokenId: [151643]
    } satisfies LlamaConfig)
  })

  it("decodes a TinyLlama-1.1B config", () => {
    expect(decode(tinyLlamaChat)).toStrictEqual({
      modelType: "llama",
      vocabSize: 32000,
      hiddenSize: 2048,
      intermediateSize: 5632,
      numHiddenLayers: 22,
      numAttentionHeads: 32,
      numKeyValueHeads: 4,
      headDim: 64,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      maxPositionEmbeddings: 2048,
      tieWordEmbeddings: false,
      attentionBias: false,
      ropeLayout: "half",
      bosTokenId: 1,
      eosTokenId: [2]
    } satisfies LlamaConfig)
  })

  it("applies transformers' defaults to a minimal llama config", () => {
    const config = decode({ model_type: "llama", vocab_size: 100, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 3, num_attention_heads: 6 })
    expect(config).toStrictEqual({
      modelType: "llama",
      vocabSize: 100,
      hiddenSize: 48,
      intermediateSize: 96,
      numHiddenLayers: 3,
      numAttentionHeads: 6,
      numKeyValueHeads: 6,
      headDim: 8,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      maxPositionEmbeddings: 2048,
      tieWordEmbeddings: false,
      attentionBias: false,
      ropeLayout: "half",
      bosTokenId: 1,
      eosTokenId: [2]
    } satisfies LlamaConfig)
  })

  it("defaults per model_type: qwen2 has no BOS/EOS and 32768 positions, mistral 131072 positions and no bias", () => {
    const base = { vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 }
    const qwen = decode({ ...base, model_type: "qwen2" }) as LlamaConfig
    expect([qwen.bosTokenId, qwen.eosTokenId, qwen.maxPositionEmbeddings, qwen.attentionBias, qwen.tieWordEmbeddings]).toStrictEqual([undefined, [], 32768, true, false])
    const mistral = decode({ ...base, model_type: "mistral", attention_bias: true, sliding_window: 4096 }) as LlamaConfig
    expect([mistral.bosTokenId, mistral.eosTokenId, mistral.maxPositionEmbeddings, mistral.attentionBias]).toStrictEqual([1, [2], 131072, false])
  })

  it("reads head_dim, EOS lists, null BOS and a llama3 rope_scaling", () => {
    const config = decode({
      model_type: "llama",
      vocab_size: 128256,
      hidden_size: 2048,
      intermediate_size: 8192,
      num_hidden_layers: 16,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      head_dim: 64,
      rope_theta: 500000.0,
      rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
      max_position_embeddings: 131072,
      tie_word_embeddings: true,
      bos_token_id: null,
      eos_token_id: [128001, 128008, 128009],
      mlp_bias: false
    }) as LlamaConfig
    expect(config.ropeScaling).toStrictEqual({ type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 })
    expect([config.headDim, config.ropeTheta, config.bosTokenId, config.eosTokenId, config.tieWordEmbeddings]).toStrictEqual([64, 500000, undefined, [128001, 128008, 128009], true])
    const linear = decode({ ...tinyLlamaChat, rope_scaling: { type: "linear", factor: 2 } }) as LlamaConfig
    expect(linear.ropeScaling).toStrictEqual({ type: "linear", factor: 2 })
    const v5 = decode({ ...tinyLlamaChat, rope_theta: undefined, rope_parameters: { rope_type: "default", rope_theta: 250000 } }) as LlamaConfig
    expect([v5.ropeTheta, v5.ropeScaling]).toStrictEqual([250000, undefined])
  })

  it("decodes an OPT-125m config", () => {
    expect(decode(opt125m)).toStrictEqual({
      modelType: "opt",
      vocabSize: 50272,
      hiddenSize: 768,
      ffnDim: 3072,
      numHiddenLayers: 12,
      numAttentionHeads: 12,
      maxPositionEmbeddings: 2048,
      doLayerNormBefore: true,
      wordEmbedProjDim: 768,
      enableBias: true,
      layerNormElementwiseAffine: true,
      activationFunction: "relu",
      padTokenId: 1,
      bosTokenId: 2,
      eosTokenId: [2],
      tieWordEmbeddings: true
    } satisfies OptConfig)
  })

  it("applies OPT defaults (word_embed_proj_dim = hidden, pre-LN, biases, affine LN, tied) and reads OPT-350m's projection", () => {
    const minimal = decode({ model_type: "opt", vocab_size: 50, hidden_size: 32, ffn_dim: 64, num_hidden_layers: 2, num_attention_heads: 4, word_embed_proj_dim: null }) as OptConfig
    expect(minimal).toStrictEqual(tinyOpt({ vocabSize: 50, hiddenSize: 32, ffnDim: 64, maxPositionEmbeddings: 2048, wordEmbedProjDim: 32 }))
    const opt350m = decode({ ...opt125m, hidden_size: 1024, ffn_dim: 4096, num_attention_heads: 16, num_hidden_layers: 24, word_embed_proj_dim: 512, do_layer_norm_before: false }) as OptConfig
    expect([opt350m.wordEmbedProjDim, opt350m.doLayerNormBefore]).toStrictEqual([512, false])
  })

  it("ignores keys it does not know (HF configs carry dozens)", () => {
    expect(decode({ ...tinyLlamaChat, some_future_key: { nested: [1, 2] }, auto_map: {} }).modelType).toBe("llama")
  })

  it("rejects an unknown model_type with a ConfigError on config.model_type listing what is supported", () => {
    const error = decodeError({ ...tinyLlamaChat, model_type: "gpt2" })
    expect(error.field).toBe("config.model_type")
    expect(error.message).toBe("invalid config: 'config.model_type': 'gpt2' is not supported; supported: llama, qwen2, mistral, opt")
    expect(decodeError({ hidden_size: 8 }).reason).toBe("is missing; supported: llama, qwen2, mistral, opt")
    expect(decodeError([1, 2]).field).toBe("config")
  })

  it("names the offending field for bad values and for what would silently compute something else", () => {
    expect(decodeError({ ...tinyLlamaChat, hidden_size: "2048" }).field).toBe("config.hidden_size")
    expect(decodeError({ ...tinyLlamaChat, vocab_size: undefined }).field).toBe("config.vocab_size")
    expect(decodeError({ ...tinyLlamaChat, num_key_value_heads: 5 }).field).toBe("config.num_key_value_heads")
    expect(decodeError({ ...tinyLlamaChat, hidden_size: 2050 }).field).toBe("config.num_attention_heads")
    expect(decodeError({ ...tinyLlamaChat, hidden_act: "gelu" }).field).toBe("config.hidden_act")
    expect(decodeError({ ...tinyLlamaChat, mlp_bias: true }).field).toBe("config.mlp_bias")
    expect(decodeError({ ...tinyLlamaChat, rope_scaling: { rope_type: "yarn", factor: 4 } }).reason).toContain("'yarn' is not supported")
    expect(decodeError({ ...tinyLlamaChat, rope_scaling: { rope_type: "llama3", factor: 8 } }).field).toBe("config.rope_scaling.original_max_position_embeddings")
    expect(decodeError({ ...tinyLlamaChat, quantization_config: { quant_method: "gptq", bits: 4 } }).field).toBe("config.quantization_config")
    expect(decodeError({ ...opt125m, activation_function: "silu" }).field).toBe("config.activation_function")
    expect(decodeError({ ...opt125m, _remove_final_layer_norm: true }).field).toBe("config._remove_final_layer_norm")
  })
})

describe("HfConfig: toHfConfig", () => {
  const roundTrip = (config: ModelConfig) => decode(JSON.parse(JSON.stringify(toHfConfig(config))))

  it("round-trips every architecture through config.json", () => {
    const configs: ReadonlyArray<ModelConfig> = [
      tinyLlama(),
      tinyLlama({ tieWordEmbeddings: true, attentionBias: true, headDim: 8, bosTokenId: undefined, eosTokenId: [5, 6] }),
      tinyLlama({ ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } }),
      tinyLlama({ ropeScaling: { type: "linear", factor: 4 } }),
      tinyLlama({ modelType: "qwen2", attentionBias: true, eosTokenId: [] }),
      tinyLlama({ modelType: "mistral" }),
      tinyOpt(),
      tinyOpt({ wordEmbedProjDim: 8, doLayerNormBefore: false, tieWordEmbeddings: false, activationFunction: "gelu", enableBias: false, layerNormElementwiseAffine: false })
    ]
    for (const config of configs) expect(roundTrip(config)).toStrictEqual(config)
  })

  it("writes what transformers reads: architectures, snake_case keys, single EOS as a number", () => {
    const json = toHfConfig(tinyLlama(), { torchDtype: "bfloat16" })
    expect(json).toMatchObject({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      torch_dtype: "bfloat16",
      hidden_size: 16,
      num_key_value_heads: 2,
      head_dim: 4,
      hidden_act: "silu",
      rope_scaling: null,
      eos_token_id: 2,
      bos_token_id: 1,
      attention_bias: false,
      tie_word_embeddings: false
    })
    expect(toHfConfig(tinyOpt())).toMatchObject({ architectures: ["OPTForCausalLM"], ffn_dim: 32, word_embed_proj_dim: 16, _remove_final_layer_norm: false })
    // An interleaved (llama2.c) config describes HF-layout weights once saved: it decodes as "half".
    expect((roundTrip(tinyLlama({ ropeLayout: "interleaved" })) as LlamaConfig).ropeLayout).toBe("half")
  })
})

/**
 * Model configurations, as decoded from a Hugging Face `config.json` (snake_case there, camelCase
 * here) or from a llama2.c header. One config per architecture family.
 */

/**
 * The Llama family: Llama 2/3, TinyLlama, SmolLM, Qwen2 (q/k/v bias), stories260K (llama2.c).
 * RMSNorm, RoPE, grouped-query attention, SwiGLU MLP.
 */
export interface LlamaConfig {
  readonly modelType: "llama" | "qwen2" | "mistral"
  readonly vocabSize: number
  readonly hiddenSize: number
  readonly intermediateSize: number
  readonly numHiddenLayers: number
  readonly numAttentionHeads: number
  readonly numKeyValueHeads: number
  /** Defaults to hiddenSize / numAttentionHeads. */
  readonly headDim: number
  readonly rmsNormEps: number
  readonly ropeTheta: number
  readonly maxPositionEmbeddings: number
  /** Output head shares the token embedding (no `lm_head.weight` in the checkpoint). */
  readonly tieWordEmbeddings: boolean
  /** Bias on q/k/v projections (Qwen2). */
  readonly attentionBias: boolean
  /**
   * How RoPE pairs dimensions: "half" rotates (i, i + d/2) as HF checkpoints expect; "interleaved"
   * rotates (2i, 2i + 1) as llama2.c checkpoints expect. The weights are used as stored either way.
   */
  readonly ropeLayout: "half" | "interleaved"
  /**
   * HF `rope_scaling` (Llama 3.1/3.2 use "llama3"; "linear" divides positions by `factor`). Absent or
   * undefined: plain RoPE. Llama 3.x checkpoints need it even at short lengths, because it changes
   * the rotation frequencies themselves.
   */
  readonly ropeScaling?: RopeScaling | undefined
  readonly bosTokenId: number | undefined
  readonly eosTokenId: ReadonlyArray<number>
}

/** HF `rope_scaling` variants peftkit implements (the frequencies of `_compute_llama3_parameters` and linear scaling). */
export type RopeScaling =
  | { readonly type: "linear"; readonly factor: number }
  | {
    readonly type: "llama3"
    readonly factor: number
    readonly lowFreqFactor: number
    readonly highFreqFactor: number
    readonly originalMaxPositionEmbeddings: number
  }

/** OPT (the COLA paper's model): learned positions (offset 2), LayerNorm, ReLU MLP. */
export interface OptConfig {
  readonly modelType: "opt"
  readonly vocabSize: number
  readonly hiddenSize: number
  readonly ffnDim: number
  readonly numHiddenLayers: number
  readonly numAttentionHeads: number
  readonly maxPositionEmbeddings: number
  /** Pre-LN (true for all OPT sizes but 350m). */
  readonly doLayerNormBefore: boolean
  /** Embedding width; != hiddenSize means project_in/project_out exist (OPT-350m). */
  readonly wordEmbedProjDim: number
  readonly enableBias: boolean
  readonly layerNormElementwiseAffine: boolean
  readonly activationFunction: "relu" | "gelu"
  readonly padTokenId: number
  readonly bosTokenId: number | undefined
  readonly eosTokenId: ReadonlyArray<number>
  readonly tieWordEmbeddings: boolean
}

export type ModelConfig = LlamaConfig | OptConfig

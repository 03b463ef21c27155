/**
 * The fixed workloads of the benchmark and the fine-tuning recipe they share: stories260K and a wide
 * stack (issue 5), and SmolLM-135M's shape, the scale people fine-tune in JS (issue 13). The PyTorch
 * reference (`python/lora_reference.py`) hard-codes the same numbers: change both together.
 */
import type { LlamaConfig } from "@peftkit/models"

export type ShapeName = "stories260K" | "wide" | "smollm135M"

export const shapeNames: ReadonlyArray<ShapeName> = ["stories260K", "wide", "smollm135M"]

export interface BenchShape {
  readonly name: ShapeName
  readonly config: LlamaConfig
  readonly batch: number
  readonly seqLen: number
  /** Default warm-up and timed steps: chosen so a full `pnpm bench` stays within minutes on 2 cores. */
  readonly defaultWarmup: number
  readonly defaultSteps: number
  /** Seconds for the interleaved COLA/LoRA ratio (`InterleavedRatio.ts`); 0: not measured by default. */
  readonly defaultRatioSeconds: number
}

const llama = (fields: Pick<LlamaConfig, "vocabSize" | "hiddenSize" | "intermediateSize" | "numHiddenLayers" | "numAttentionHeads" | "numKeyValueHeads" | "tieWordEmbeddings">): LlamaConfig => ({
  modelType: "llama",
  headDim: fields.hiddenSize / fields.numAttentionHeads,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  // Only has to cover the sequence length; RoPE tables are built up to min(this, 512).
  maxPositionEmbeddings: 512,
  attentionBias: false,
  // HF's layout, which is what LlamaForCausalLM (the reference) computes.
  ropeLayout: "half",
  bosTokenId: undefined,
  eosTokenId: [],
  ...fields
})

/** Karpathy's stories260K architecture: tiny matrices, so per-kernel overhead dominates. */
export const stories260K: BenchShape = {
  name: "stories260K",
  config: llama({ vocabSize: 512, hiddenSize: 64, intermediateSize: 172, numHiddenLayers: 5, numAttentionHeads: 8, numKeyValueHeads: 4, tieWordEmbeddings: true }),
  batch: 8,
  seqLen: 256,
  defaultWarmup: 3,
  defaultSteps: 15,
  defaultRatioSeconds: 150
}

/** A wider stack where matmul throughput dominates: the honest test against a BLAS. */
export const wide: BenchShape = {
  name: "wide",
  config: llama({ vocabSize: 8192, hiddenSize: 768, intermediateSize: 2048, numHiddenLayers: 4, numAttentionHeads: 12, numKeyValueHeads: 12, tieWordEmbeddings: false }),
  batch: 4,
  seqLen: 128,
  defaultWarmup: 2,
  defaultSteps: 9,
  defaultRatioSeconds: 300
}

/**
 * SmolLM-135M's architecture with random weights (dim 576, 30 layers, 9 heads on 3 kv heads, MLP
 * 1536, vocab 49152, tied head), one sequence of 256 tokens: what a person fine-tunes in a browser.
 * Few steps: a wasm step takes seconds here. The interleaved ratio is opt-in (`--ratio-seconds`).
 */
export const smollm135M: BenchShape = {
  name: "smollm135M",
  config: llama({ vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numHiddenLayers: 30, numAttentionHeads: 9, numKeyValueHeads: 3, tieWordEmbeddings: true }),
  batch: 1,
  seqLen: 256,
  defaultWarmup: 1,
  defaultSteps: 3,
  defaultRatioSeconds: 0
}

export const shapes: Readonly<Record<ShapeName, BenchShape>> = { stories260K, wide, smollm135M }

export const isShapeName = (value: string): value is ShapeName => Object.prototype.hasOwnProperty.call(shapes, value)

/** The recipe both implementations train with (PEFT's LoraConfig / torch.optim.AdamW names in comments). */
export const recipe = {
  /** r */
  rank: 8,
  /** lora_alpha: scale alpha / r = 2 */
  alpha: 16,
  /** lora_dropout */
  dropout: 0,
  /** target_modules */
  targetModules: ["q_proj", "v_proj"] as ReadonlyArray<string>,
  /** AdamW lr, constant (no schedule: a schedule costs nothing measurable and would differ between the two). */
  learningRate: 1e-4,
  /** AdamW weight_decay; 0 in both, so neither pays for a decay it does not need. */
  weightDecay: 0,
  /** Llama.init / torch.manual_seed */
  seed: 0
} as const

/**
 * Token id at (row, col) of the batch: a fixed pseudo-random pattern, identical in the Python
 * reference. The same batch is used every step; throughput does not depend on the values.
 */
export const tokenId = (row: number, col: number, vocabSize: number): number => (row * 977 + col * 131 + ((col * col) % 61)) % vocabSize

/** The batch's token ids, row-major [batch, seqLen]. */
export const tokenIds = (shape: BenchShape): Int32Array => {
  const ids = new Int32Array(shape.batch * shape.seqLen)
  for (let row = 0; row < shape.batch; row++) {
    for (let col = 0; col < shape.seqLen; col++) ids[row * shape.seqLen + col] = tokenId(row, col, shape.config.vocabSize)
  }
  return ids
}

export const tokensPerBatch = (shape: BenchShape): number => shape.batch * shape.seqLen

/**
 * Where the chain's knots go, relative to the first step of a window of `steps` steps: every
 * steps/3 steps, at most two, so the window holds up to three links (none when steps < 2).
 */
export const knotOffsets = (steps: number): ReadonlyArray<number> => {
  const gap = Math.max(1, Math.floor(steps / 3))
  return [gap, 2 * gap].filter((offset) => offset < steps)
}

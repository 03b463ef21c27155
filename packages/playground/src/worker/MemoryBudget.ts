/**
 * Will this model train in this tab? An estimate from the config alone, made before the weights are
 * read (and again with the run's batch and length before it starts), so that a model too big fails
 * with a message instead of taking the tab down or hanging it.
 *
 * Calibrated on this machine (`node packages/playground/dist/node/capacity.js`, headless Chromium,
 * wasm, batch 1 x 64 tokens): the tensors tfjs tracks peak at about 2.9x the float32 weights (the
 * weights, their gradients' temporaries, the frozen weights' transposed views), and XNNPACK keeps a
 * packed copy of every weight it multiplies, about 1x more: a model of 244M parameters (0.91 GiB of
 * weights) trained with a 2.69 GiB peak; one of 362M (1.35 GiB) peaked at 3.91 GiB after one step and
 * then hung in XNNPACK's out-of-memory path. A wasm module addresses at most 4 GiB (wasm32), and
 * tfjs's wasm backend keeps every tensor in that one memory. WebGPU keeps tensors in GPU buffers,
 * whose size the page cannot ask for; the same budget is used there. The dropped files themselves
 * are held in the JS heap, apart from that budget.
 */
import type { ModelConfig } from "@peftkit/models"

export interface MemoryEstimate {
  readonly weights: number
  readonly activations: number
  readonly total: number
}

export const WASM32_LIMIT = 4 * 1024 ** 3
/** Peak tensor bytes per float32 weight byte, training with adapters (measured: 2.9x, plus XNNPACK's packed copies). */
export const TRAINING_WEIGHT_FACTOR = 3.9

export const estimateTrainingMemory = (config: ModelConfig, parameters: number, batch: number, length: number): MemoryEstimate => {
  const tokens = batch * Math.min(length, config.maxPositionEmbeddings)
  const weights = 4 * parameters
  // Saved for the backward pass: about 16 floats per hidden unit per layer, plus the logits and their gradient.
  const activations = 4 * tokens * (16 * config.hiddenSize * config.numHiddenLayers + 3 * config.vocabSize)
  return { weights, activations, total: TRAINING_WEIGHT_FACTOR * weights + activations }
}

/** The tensor bytes this tab can give a model. */
export const tabBudget = (): number => WASM32_LIMIT

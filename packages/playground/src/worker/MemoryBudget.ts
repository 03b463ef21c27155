/**
 * Will this model train in this tab? An estimate from the config alone, made before the weights are
 * read: float32 weights (F16/BF16 files are widened on load), the file bytes held while decoding,
 * and the activations of one training step at the chosen batch and length (saved for the backward
 * pass: about 16 floats per hidden unit per layer, plus the logits and their gradient).
 *
 * The tab's budget: a wasm module addresses at most 4 GiB (wasm32), and tfjs's wasm backend keeps
 * every tensor in that one memory; WebGPU keeps tensors in GPU buffers, but loading still passes
 * every weight through the JS heap, whose limit Chromium reports. The estimate was checked against
 * the largest model that actually trained in headless Chromium here (see the README).
 */
import type { ModelConfig } from "@peftkit/models"

export interface MemoryEstimate {
  readonly weights: number
  readonly fileBytes: number
  readonly activations: number
  readonly total: number
}

export const WASM32_LIMIT = 4 * 1024 ** 3

export const estimateTrainingMemory = (config: ModelConfig, parameters: number, fileBytes: number, batch = 8, length = 128): MemoryEstimate => {
  const tokens = batch * Math.min(length, config.maxPositionEmbeddings)
  const weights = 4 * parameters
  const activations = 4 * tokens * (16 * config.hiddenSize * config.numHiddenLayers + 3 * config.vocabSize)
  return { weights, fileBytes, activations, total: weights + fileBytes + activations }
}

/** The bytes this tab can give a model on `backend`. */
export const tabBudget = (backend: string): number => {
  const heap = (performance as Performance & { memory?: { jsHeapSizeLimit?: number } }).memory?.jsHeapSizeLimit
  return backend === "webgpu" ? Math.max(heap ?? WASM32_LIMIT, WASM32_LIMIT) : WASM32_LIMIT
}

export const formatBytes = (bytes: number): string =>
  bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(2)} GiB` : bytes >= 1024 ** 2 ? `${(bytes / 1024 ** 2).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`

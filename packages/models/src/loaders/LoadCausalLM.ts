/**
 * A model path straight to a `CausalLM`: `Llama` for the Llama family, `Opt` for OPT, built with
 * `fromWeights` from what `loadCheckpoint` read (HF directory or llama2.c file). The loaded tensors
 * are disposed once the model's variables hold them (tfjs shares the buffers, so memory is not
 * doubled at any point).
 */
import type { FileSystem } from "@effect/platform"
import type * as tf from "@tensorflow/tfjs-core"
import type { ThrownError } from "@peftkit/core"
import type { Effect } from "effect"
import type { CausalLM } from "../CausalLM.js"
import { Llama } from "../Llama.js"
import type { ModelConfig } from "../ModelConfig.js"
import { Opt } from "../Opt.js"
import type { LoadCheckpointError } from "./LoadedCheckpoint.js"
import { type LoadedModel, loadModelWith, type ModelFactory } from "./LoadModel.js"

/** `Llama.fromWeights` or `Opt.fromWeights` by `config.modelType`; `path` names the checkpoint in errors. */
export const causalLMFactory = (path?: string): ModelFactory<CausalLM> =>
  (config: ModelConfig, weights: ReadonlyMap<string, tf.Tensor>) => {
    const options = path === undefined ? {} : { path }
    return config.modelType === "opt" ? Opt.fromWeights(config, weights, options) : Llama.fromWeights(config, weights, options)
  }

/** Loads a Hugging Face model directory or a llama2.c checkpoint file as a `CausalLM`. */
export const loadCausalLM = (path: string): Effect.Effect<LoadedModel<CausalLM>, LoadCheckpointError | ThrownError, FileSystem.FileSystem> =>
  loadModelWith(path, causalLMFactory(path))

/**
 * The contract every causal language model in peftkit implements. Weights are named exactly as in
 * Hugging Face checkpoints (`model.layers.3.self_attn.q_proj.weight`, OPT:
 * `model.decoder.layers.0.self_attn.v_proj.weight`), so PEFT `target_modules` and adapter keys line
 * up, and every linear layer is a core `Linear` under its module name (the weight name without
 * `.weight`).
 *
 * Weight names by architecture (all [out, in] like PyTorch):
 * - Llama: `model.embed_tokens.weight` [V, D]; per layer i `model.layers.{i}.input_layernorm.weight`,
 *   `.self_attn.{q,k,v,o}_proj.weight` (+ `.bias` for q/k/v when attentionBias, and for o_proj too
 *   when modelType is "llama", as HF's LlamaAttention does; Qwen2 has none on o_proj),
 *   `.post_attention_layernorm.weight`, `.mlp.{gate,up,down}_proj.weight`; `model.norm.weight`;
 *   `lm_head.weight` unless tieWordEmbeddings.
 * - OPT: `model.decoder.embed_tokens.weight` [V, E], `model.decoder.embed_positions.weight`
 *   [maxPos + 2, D]; per layer `model.decoder.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}`,
 *   `.self_attn_layer_norm.{weight,bias}`, `.fc1.{weight,bias}`, `.fc2.{weight,bias}`,
 *   `.final_layer_norm.{weight,bias}`; `model.decoder.final_layer_norm.{weight,bias}` when
 *   doLayerNormBefore; `model.decoder.project_in.weight` / `project_out.weight` when
 *   wordEmbedProjDim != hiddenSize; `lm_head.weight` (tied to embed_tokens when absent).
 */
import type { AdaptableModel, Parameter } from "@peftkit/core"
import type * as tf from "@tensorflow/tfjs-core"
import type { KvCache } from "./KvCache.js"
import type { ModelConfig } from "./ModelConfig.js"

export interface ForwardOptions {
  /**
   * [batch, seq], 1 for real tokens and 0 for padding (HF's attention_mask); padding may be on either
   * side. Position ids are derived from it (HF: cumsum(mask) - 1), so a left-padded row gives the
   * same logits at its real positions as the unpadded sequence. With a cache it may cover this
   * call's tokens only ([batch, seq]) or, as in HF, every position so far ([batch, past + seq]); the
   * cache remembers earlier calls' masks.
   */
  readonly attentionMask?: tf.Tensor2D
  /** Incremental decoding: keys/values of earlier positions; updated in place with this call's. */
  readonly cache?: KvCache
  /** Enables dropout in adapters. */
  readonly training?: boolean
  /**
   * Computes logits for the last position only ([batch, 1, vocab]): what a generation step needs,
   * and it skips the [seq, vocab] head matmul over the prompt. Meant for unpadded or left-padded input.
   */
  readonly lastPositionOnly?: boolean
}

/** How `Llama.fromWeights` / `Opt.fromWeights` treat a checkpoint's tensors. */
export interface FromWeightsOptions {
  /** Names the checkpoint in errors (a file or directory). Default "weights". */
  readonly path?: string
  /**
   * Unknown tensors are an `InvalidCheckpoint` (true, the default: a naming bug must not load as a
   * silently random model) or ignored (false). `*.rotary_emb.inv_freq` buffers are always ignored.
   */
  readonly strict?: boolean
}

export interface CausalLM extends AdaptableModel {
  readonly config: ModelConfig
  /** inputIds [batch, seq] int32 -> logits [batch, seq, vocab] float32. */
  forward(inputIds: tf.Tensor2D, options?: ForwardOptions): tf.Tensor3D
  /** A fresh, empty KV cache sized for this model. */
  createCache(batch: number, maxLength: number): KvCache
  /** Every weight as a named parameter (HF names), for full fine-tuning; set `trainable` first. */
  parameters(): ReadonlyArray<Parameter>
  /** Makes every weight trainable (full fine-tuning) or frozen (adapters). */
  setTrainable(trainable: boolean): void
  /** The weights under their HF names (copies the caller owns), for saving. */
  stateDict(): Record<string, tf.Tensor>
  dispose(): void
}

/**
 * Named trainable parameters. tfjs variable names are process-global and must be unique, so
 * peftkit keeps its own state-dict names (PEFT/HF style, e.g.
 * `model.layers.0.self_attn.q_proj.lora_A.weight`) next to the variable instead of in it.
 */
import type * as tf from "@tensorflow/tfjs-core"

export interface Parameter {
  readonly name: string
  readonly variable: tf.Variable
}

/** A set of parameters sharing optimizer settings; LoRA+ is two groups with different `lrScale`. */
export interface ParameterGroup {
  readonly params: ReadonlyArray<Parameter>
  /** Multiplies the scheduled learning rate for this group (default 1). */
  readonly lrScale?: number
  /** Overrides the optimizer's weight decay for this group. */
  readonly weightDecay?: number
}

/** Gradients keyed by parameter name. */
export type NamedGradients = Readonly<Record<string, tf.Tensor>>

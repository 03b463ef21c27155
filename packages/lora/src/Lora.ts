/**
 * LoRA (Hu et al. 2021) as a peftkit adapter variant: y = x W^T + s (x A^T) B^T with A [r, in],
 * B [out, r] (PEFT's lora_A / lora_B layout) and s = alpha / r (alpha / sqrt r with rsLoRA).
 * B starts at zero, so a fresh adapter leaves the model's output unchanged. Written with core's
 * `defineAdapter`: the tensors and the math are all there is. With `init: "pissa"` (or
 * `"pissa_niter_K"`) the same variant creates PiSSA adapters (`Pissa.ts`).
 */
import { type AdapterDefinition, type AdapterVariant, decodeConfigSync, defineAdapter, type DefinedAdapter, init, type LinearTarget, type TensorSpec } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { LoraConfig, type LoraConfigInput, loraRank, loraScale } from "./LoraConfig.js"
import { loraFormat } from "./LoraFormat.js"
import { loraPlusGroups } from "./LoraPlus.js"
import { isPissa, withPissa } from "./Pissa.js"

/** A LoRA adapter on one layer: `tensors.loraA` [r, in], `tensors.loraB` [out, r]. */
export type LoraAdapter = DefinedAdapter<LoraConfig, "loraA" | "loraB">

/**
 * LoRA's two factors for `layer` (DoRA adds its magnitude to them), at the module's rank
 * (rank_pattern resolved by the layer's name, so loaders check a file's shapes per module).
 */
export const loraTensors = (layer: LinearTarget, config: LoraConfig): { readonly loraA: TensorSpec; readonly loraB: TensorSpec } => {
  const r = loraRank(config, layer.name)
  const random = config.init === "gaussian" ? init.normal(1 / r) : init.kaimingUniform
  // One factor starts at zero so a fresh adapter changes nothing; with B frozen (RAC-LoRA's other
  // draw) that factor is A and B holds the random start.
  const bFrozen = config.freeze === "B"
  return {
    loraA: { shape: [r, layer.inFeatures], init: bFrozen ? init.zeros : random, trainable: config.freeze !== "A", key: "lora_A.weight" },
    loraB: { shape: [layer.outFeatures, r], init: bFrozen ? random : init.zeros, trainable: !bFrozen, key: "lora_B.weight" }
  }
}

/** LoRA's definition: the variant below, and PiSSA's (`withPissa`) on top of it. */
const loraDefinition: AdapterDefinition<LoraConfig, "loraA" | "loraB"> = {
  name: "lora",
  format: loraFormat,
  tensors: loraTensors,
  forward: ({ x, base, layer, tensors: { loraA, loraB }, config, dropout }) =>
    // Scale the narrow [n, r] intermediate rather than the [n, out] result.
    tf.add(base, tf.matMul(tf.mul(tf.matMul(dropout(x, config.dropout), loraA, false, true), loraScale(config, layer.name)), loraB, false, true)),
  // (scale B) A, the product of `factors`, so replaying saved factors is bit-exact.
  delta: ({ layer, tensors: { loraA, loraB }, config }) => tf.matMul(tf.mul(loraB, loraScale(config, layer.name)), loraA),
  // LoRA+ as a setting: with `loraPlusRatio`, B is its own optimizer group at that multiple of the rate.
  groups: (params, config) => (config.loraPlusRatio === undefined ? [{ params }] : loraPlusGroups(params, config.loraPlusRatio)),
  // The scale folded into b, so factors concatenate across chain links.
  factors: ({ layer, tensors: { loraA, loraB }, config }) => ({ a: loraA, b: tf.mul(loraB, loraScale(config, layer.name)) })
}

const plainLora = defineAdapter(loraDefinition)
const pissaLora = defineAdapter(withPissa(loraDefinition))

/**
 * The LoRA variant; PiSSA adapters when `config.init` is `"pissa"` or `"pissa_niter_K"`. Decode user
 * input with `loraConfig` first: `create` trusts its config.
 */
export const lora: AdapterVariant<LoraConfig> = {
  ...plainLora,
  create: (layer, config, seed, context) => (isPissa(config.init) ? pissaLora : plainLora).create(layer, config, seed, context)
}

/** Decodes a user LoRA config; throws `ConfigError` naming the field. */
export const loraConfig = (input: LoraConfigInput = {}): LoraConfig => decodeConfigSync(LoraConfig, input, "lora")

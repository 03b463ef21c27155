/** FFA-LoRA (Sun et al. 2024): LoRA with A frozen at its random init, only B trains; saved as a plain PEFT LoRA. */
import { defineAdapter, init, type LinearTarget } from "@peftkit/core"
import { type LoraConfig, loraFormat, loraScale } from "@peftkit/lora"
import * as tf from "@tensorflow/tfjs-core"

export const frozenALora = defineAdapter({
  name: "frozen-a-lora",
  format: loraFormat,
  tensors: (layer: LinearTarget, config: LoraConfig) => ({
    a: { shape: [config.r, layer.inFeatures], init: init.kaimingUniform, trainable: false, key: "lora_A.weight" },
    b: { shape: [layer.outFeatures, config.r], init: init.zeros, key: "lora_B.weight" }
  }),
  forward: ({ x, base, tensors: { a, b }, config }) =>
    tf.add(base, tf.matMul(tf.mul(tf.matMul(x, a, false, true), loraScale(config)), b, false, true)),
  delta: ({ tensors: { a, b }, config }) => tf.matMul(tf.mul(b, loraScale(config)), a),
  factors: ({ tensors: { a, b }, config }) => ({ a, b: tf.mul(b, loraScale(config)) })
})

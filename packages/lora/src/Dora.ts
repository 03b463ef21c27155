/**
 * DoRA (Liu et al. 2024) with PEFT 0.21's semantics (peft/tuners/lora/dora.py, variants.py): LoRA's
 * factors plus a trainable magnitude m per output row. With V = W + s B A and its row norm
 * ||V|| (detached: it scales the output but gets no gradient, the paper's section 4.3),
 *   y = x W^T + b + (m / ||V|| - 1) (x W^T) + (m / ||V||) s (x A^T B^T)  =  x (m / ||V|| V)^T + b
 * and merging sets W <- (m / ||V||) V row-wise. m starts at ||W + s B A|| = ||W|| (B A = 0 at
 * init), read from the layer's weight when the adapter is created or re-initialised, so a new COLA
 * link starts from the merged weight. Same config as LoRA (rsLoRA and patterns compose).
 */
import { ConfigError, defineAdapter, type DefinedAdapter, type LinearTarget } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { loraTensors } from "./Lora.js"
import { type LoraConfig, loraScale } from "./LoraConfig.js"
import { doraFormat } from "./DoraFormat.js"
import { loraPlusGroups } from "./LoraPlus.js"
import { isPissa } from "./Pissa.js"

/** A DoRA adapter on one layer: LoRA's `loraA` [r, in], `loraB` [out, r] and `magnitude` [out]. */
export type DoraAdapter = DefinedAdapter<LoraConfig, "loraA" | "loraB" | "magnitude">

/** Row-wise L2 norm of [out, in]: PEFT's `torch.linalg.norm(weight, dim=1)`. */
const rowNorm = (weight: tf.Tensor): tf.Tensor1D => tf.sqrt(tf.sum(tf.square(weight), 1)) as tf.Tensor1D

/**
 * The same data as a new tensor the gradient tape cannot trace back to the adapter's variables
 * (PEFT's `.detach()`), zero-copy: tfjs has no stop-gradient op, and a zero custom gradient would
 * still run the backward pass of the [out, in] norm.
 */
const detach = <T extends tf.Tensor>(tensor: T): T => {
  const engine = tf.engine()
  engine.backend.incRef(tensor.dataId)
  return engine.makeTensorFromDataId(tensor.dataId, tensor.shape, tensor.dtype) as T
}

/**
 * V = W + (s B) A and the row scale m / ||V||, computed one way for merging, `factors` and a
 * chain's replay, so those agree bit for bit.
 */
const scaledWeight = (layer: LinearTarget, loraA: tf.Tensor, loraB: tf.Tensor, magnitude: tf.Tensor, config: LoraConfig) => {
  const b = tf.mul(loraB, loraScale(config, layer.name))
  const updated = tf.add(layer.weight, tf.matMul(b, loraA))
  return { b, updated, rowScale: tf.div(magnitude, rowNorm(updated)) as tf.Tensor1D }
}

/** PiSSA's conversion to a plain LoRA has no DoRA form (the magnitude holds for one weight only). */
const pissaRefused = (config: LoraConfig): never => {
  throw new ConfigError({ field: "lora.init", reason: `'${config.init}' is not supported with DoRA: use the lora variant` })
}

/** The DoRA variant (PEFT's `use_dora`). Decode user input with `loraConfig` first: `create` trusts its config. */
export const dora = defineAdapter({
  name: "dora",
  format: doraFormat,
  deltaDependsOnWeight: true,
  tensors: (layer, config: LoraConfig) => ({
    ...loraTensors(layer, isPissa(config.init) ? pissaRefused(config) : config),
    // Read when the adapter is created or re-initialised: the live (possibly chain-merged) weight.
    // PEFT writes `lora_magnitude_vector`; its loader also reads the DoraLinearLayer's own `.weight` key.
    magnitude: { shape: [layer.outFeatures], init: () => rowNorm(layer.weight), key: "lora_magnitude_vector", aliases: ["lora_magnitude_vector.weight"] }
  }),
  forward: ({ x, base, layer, tensors: { loraA, loraB, magnitude }, config, training, dropout }) => {
    const scale = loraScale(config, layer.name)
    // The extra cost over LoRA: the [out, in] product s B A and its row norm, every step.
    const norm = detach(rowNorm(tf.add(layer.weight, tf.mul(tf.matMul(loraB, loraA), scale))))
    const magnitudeScale = tf.div(magnitude, norm)
    // With dropout PEFT recomputes the base product on the dropped input; otherwise it reuses the
    // layer's output less its bias.
    const dropping = training && config.dropout > 0
    const input = dropping ? dropout(x, config.dropout) : x
    const plain = dropping ? tf.matMul(input, layer.weight, false, true) : layer.bias === undefined ? base : tf.sub(base, layer.bias)
    const low = tf.mul(tf.matMul(tf.matMul(input, loraA, false, true), loraB, false, true), scale)
    return tf.add(base, tf.add(tf.mul(tf.sub(magnitudeScale, 1), plain), tf.mul(magnitudeScale, low)))
  },
  // (m / ||V||) V - W, so that W + delta is PEFT's merged weight.
  delta: ({ layer, tensors: { loraA, loraB, magnitude }, config }) => {
    const { updated, rowScale } = scaledWeight(layer, loraA, loraB, magnitude, config)
    return tf.sub(tf.mul(tf.reshape(rowScale, [-1, 1]), updated), layer.weight)
  },
  factors: ({ layer, tensors: { loraA, loraB, magnitude }, config }) => {
    const { b, rowScale } = scaledWeight(layer, loraA, loraB, magnitude, config)
    return { a: loraA, b, rowScale }
  },
  groups: (params, config) => (config.loraPlusRatio === undefined ? [{ params }] : loraPlusGroups(params, config.loraPlusRatio))
})

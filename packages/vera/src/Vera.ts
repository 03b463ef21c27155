/**
 * VeRA (Kopiczko et al. 2024) as a peftkit adapter variant, with PEFT 0.21's semantics. Two frozen
 * random matrices are shared by every adapted layer of a set: A [r, max in] and B [max out, r], each
 * layer using the top-left slice its shape needs. Per layer only two vectors train:
 *   y = x W^T + b + lambda_b * ((lambda_d * (dropout(x) A_s^T)) B_s^T)
 * (PEFT's order), lambda_b [out] starting at zero (a fresh adapter changes nothing), lambda_d [r] at
 * `dInitial`. The shared matrices are drawn from `projectionPrngKey` exactly as PEFT draws them.
 */
import { decodeConfigSync, defineAdapter, type DefinedAdapter, init, type LinearTarget } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { mt19937, torchKaimingUniform } from "./TorchRandom.js"
import type { VeraConfig, VeraConfigInput } from "./VeraConfig.js"
import { VeraConfig as VeraConfigSchema } from "./VeraConfig.js"
import { veraFormat } from "./VeraFormat.js"

/** A VeRA adapter on one layer: `tensors.lambdaB` [out], `tensors.lambdaD` [r]; `shared.veraA`, `shared.veraB`. */
export type VeraAdapter = DefinedAdapter<VeraConfig, "lambdaB" | "lambdaD", "veraA" | "veraB">

/** PEFT's `_find_dim`: the projections cover the widest input and output among the adapted layers. */
const projectionShapes = (layers: ReadonlyArray<LinearTarget>, r: number) => {
  const maxIn = Math.max(...layers.map((layer) => layer.inFeatures))
  const maxOut = Math.max(...layers.map((layer) => layer.outFeatures))
  return { a: [r, maxIn], b: [maxOut, r] }
}

/** One torch generator seeded with the key draws A, then B (as PEFT's `_init_vera_A_vera_B`). */
const drawProjection = (config: VeraConfig, a: ReadonlyArray<number>, b: ReadonlyArray<number>, which: "a" | "b") => {
  const next = mt19937(config.projectionPrngKey)
  const veraA = torchKaimingUniform(next, a[0]!, a[1]!)
  return which === "a" ? tf.tensor2d(veraA, [a[0]!, a[1]!]) : tf.tensor2d(torchKaimingUniform(next, b[0]!, b[1]!), [b[0]!, b[1]!])
}

/** The variant. Decode user input with `veraConfig` first: `create` trusts its config. */
export const vera = defineAdapter({
  name: "vera",
  format: veraFormat,
  tensors: (layer, config: VeraConfig) => ({
    lambdaB: { shape: [layer.outFeatures], init: init.zeros, key: "vera_lambda_b" },
    lambdaD: { shape: [config.r], init: init.constant(config.dInitial), key: "vera_lambda_d" }
  }),
  shared: (layers, config) => {
    const { a, b } = projectionShapes(layers, config.r)
    // Frozen and saved; with save_projection false a file has none, and the key rebuilds them exactly.
    const fromFile = config.saveProjection
    return {
      veraA: { shape: a, init: () => drawProjection(config, a, b, "a"), trainable: false, key: "base_model.vera_A", fromFile },
      veraB: { shape: b, init: () => drawProjection(config, a, b, "b"), trainable: false, key: "base_model.vera_B", fromFile }
    }
  },
  forward: ({ x, base, tensors: { lambdaB, lambdaD }, shared, layer, peftRows, config, dropout }) => {
    const { a, b } = sliced(shared, layer, peftRows, config.r)
    return tf.add(base, tf.mul(lambdaB, tf.matMul(tf.mul(lambdaD, tf.matMul(dropout(x, config.dropout), a, false, true)), b, false, true)))
  },
  // PEFT's get_delta_weight: (lambda_b B_s) (lambda_d A_s), the product of `factors`.
  delta: (scope) => {
    const { a, b } = veraFactors(scope.tensors, scope.shared, scope.layer, scope.peftRows, scope.config.r)
    return tf.matMul(b, a)
  },
  // Exact rank-r factors, so a chain of VeRA links exports as one LoRA.
  factors: (scope) => veraFactors(scope.tensors, scope.shared, scope.layer, scope.peftRows, scope.config.r)
})

/**
 * The layer's slices of the shared projections: A_s = A[:, :in], B_s = B[:out, :]. On a model that
 * keeps this layer's rows in another order than its HF form (llama2.c q/k), B's rows are gathered in
 * the model's order, since the file's B (and PEFT's slice) is in HF order.
 */
const sliced = (shared: { readonly veraA: tf.Tensor; readonly veraB: tf.Tensor }, layer: LinearTarget, peftRows: tf.Tensor1D | undefined, r: number) => ({
  a: tf.slice(shared.veraA, [0, 0], [r, layer.inFeatures]) as tf.Tensor2D,
  b: (peftRows === undefined ? tf.slice(shared.veraB, [0, 0], [layer.outFeatures, r]) : tf.gather(shared.veraB, peftRows)) as tf.Tensor2D
})

const veraFactors = (
  tensors: { readonly lambdaB: tf.Tensor; readonly lambdaD: tf.Tensor },
  shared: { readonly veraA: tf.Tensor; readonly veraB: tf.Tensor },
  layer: LinearTarget,
  peftRows: tf.Tensor1D | undefined,
  r: number
) => {
  const { a, b } = sliced(shared, layer, peftRows, r)
  return { a: tf.mul(tf.expandDims(tensors.lambdaD, 1), a), b: tf.mul(tf.expandDims(tensors.lambdaB, 1), b) }
}

/** Decodes a user VeRA config; throws `ConfigError` naming the field. */
export const veraConfig = (input: VeraConfigInput = {}): VeraConfig => decodeConfigSync(VeraConfigSchema, input, "vera")

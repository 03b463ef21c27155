/**
 * PiSSA (Meng et al. 2024) as LoRA's `init: "pissa" | "pissa_niter_K"`, exactly as PEFT 0.21's
 * `LoraLayer.pissa_init` (peft/tuners/lora/layer.py): with W = U S V^T and s the module's scale,
 *   A0 = sqrt(S_r / s) V_r^T   [r, in]        B0 = U_r sqrt(S_r / s)   [out, r]
 * so s B0 A0 = U_r S_r V_r^T, W's top-r SVD part, and W is replaced by the residual W - s B0 A0
 * (core's `initialDelta` fold): the adapted output at init equals the base output. `"pissa"` takes
 * the exact SVD, `"pissa_niter_K"` the randomised one with K power iterations (`TopSingular.ts`).
 *
 * What the adapter stands for is its net update relative to W: s (B A - B0 A0) = [sB, -sB0] [A; A0],
 * a LoRA of rank 2r. That is its `factors` (a COLA chain records and exports each link so), and its
 * saved file is that LoRA as PEFT's `path_initial_model_for_weight_conversion` writes it: lora_A
 * [A; A0], lora_B [B, -B0], r and lora_alpha doubled (`toPeftConfig`), for the ORIGINAL base model.
 * Merging adds s B A to the residual (the trained PiSSA model) and unmerging takes it off again.
 */
import { type AdapterDefinition, ConfigError, InvalidCheckpoint, type LinearTarget, mixSeed } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { type LoraConfig, type LoraInit, loraRank, loraScale } from "./LoraConfig.js"
import { topSingularTriplets } from "./TopSingular.js"

/** Whether `init` is PiSSA's (exact or randomised). */
export const isPissa = (init: LoraInit): boolean => init === "pissa" || init.startsWith("pissa_niter_")

/** The power iterations of a `pissa_niter_K` init; undefined for the exact `"pissa"` (and other inits). */
export const pissaIterations = (init: LoraInit): number | undefined => (init.startsWith("pissa_niter_") ? Number(init.slice("pissa_niter_".length)) : undefined)

/** A0 and B0 from the top-r SVD of the layer's weight as it is now (the merged weight in a chain). */
const pissaFactors = (layer: LinearTarget, config: LoraConfig, seed: number) => {
  const r = loraRank(config, layer.name)
  const scale = loraScale(config, layer.name)
  if (r > Math.min(layer.inFeatures, layer.outFeatures)) {
    throw new ConfigError({ field: "lora.r", reason: `PiSSA takes the top ${r} singular vectors, but ${layer.name} [${layer.outFeatures}, ${layer.inFeatures}] has only ${Math.min(layer.inFeatures, layer.outFeatures)}` })
  }
  if (!(scale > 0)) throw new ConfigError({ field: "lora.alpha", reason: `PiSSA splits S / scale into sqrt factors: the scale of ${layer.name} must be positive (it is ${scale})` })
  // Its own stream apart from dropout's; tfjs reads a seed of 0 as unseeded.
  const { u, s, v } = topSingularTriplets(layer.weight, r, { niter: pissaIterations(config.init), seed: mixSeed(seed, 0x915a) })
  const root = tf.tensor1d(s.map((value) => Math.sqrt(Math.max(value, 0) / scale)))
  return { loraA: tf.mul(tf.transpose(v), tf.reshape(root, [-1, 1])), loraB: tf.mul(u, root) }
}

type LoraNames = "loraA" | "loraB"

/** The rank-r part of a file's lora_A / lora_B of rank 2r (PiSSA's converted save), checking the other half is this adapter's A0 / -B0. */
const trainedHalf = (tensors: Readonly<Record<string, tf.Tensor>>, initial: { readonly [K in LoraNames]: tf.Tensor }, moduleName: string) => {
  const a = tensors["lora_A.weight"]
  const b = tensors["lora_B.weight"]
  const r = initial.loraA.shape[0]!
  if (a === undefined || b === undefined || a.shape[0] !== 2 * r || b.shape[1] !== 2 * r) return undefined
  const [trainedA, savedA0] = tf.split(a, 2, 0)
  const [trainedB, savedB0] = tf.split(b, 2, 1)
  // The other half must be this very initialisation: another one means another base weight.
  const gap = tf.max(tf.stack([tf.max(tf.abs(tf.sub(savedA0!, initial.loraA))), tf.max(tf.abs(tf.add(savedB0!, initial.loraB)))])).dataSync()[0]!
  const size = tf.max(tf.stack([tf.max(tf.abs(initial.loraA)), tf.max(tf.abs(initial.loraB))])).dataSync()[0]!
  if (!(gap <= 1e-4 * Math.max(size, 1e-30))) {
    throw new InvalidCheckpoint({ path: moduleName, tensor: "lora_A.weight", reason: `its second half (PiSSA's saved A0, B0) differs from this adapter's initialisation by ${gap}: saved from another base weight or init` })
  }
  return { ...tensors, "lora_A.weight": trainedA!, "lora_B.weight": trainedB! }
}

/**
 * LoRA's definition with PiSSA's initialisation, fold, net factors and converted file. `lora`
 * creates its adapters from this one when `config.init` is PiSSA's.
 */
export const withPissa = (lora: AdapterDefinition<LoraConfig, LoraNames>): AdapterDefinition<LoraConfig, LoraNames> => ({
  ...lora,
  initialize: pissaFactors,
  initialDelta: ({ initial, tensors, layer, config }) => {
    const start = initial ?? tensors
    return { a: start.loraA, b: tf.mul(start.loraB, loraScale(config, layer.name)) }
  },
  // s (B A - B0 A0) as [sB, -sB0] [A; A0]: relative to W before the fold.
  factors: ({ initial, tensors: { loraA, loraB }, layer, config }) => {
    const scale = loraScale(config, layer.name)
    return { a: tf.concat([loraA, initial!.loraA], 0), b: tf.mul(tf.concat([loraB, tf.neg(initial!.loraB)], 1), scale) }
  },
  fileTensors: ({ initial, tensors: { loraA, loraB } }) => ({
    "lora_A.weight": tf.concat([loraA, initial!.loraA], 0),
    "lora_B.weight": tf.concat([loraB, tf.neg(initial!.loraB)], 1)
  }),
  // A converted file (rank 2r, a checkpoint of this run) or PEFT's unconverted exact-SVD file (rank r).
  fromFile: (tensors, { initial, layer }) => trainedHalf(tensors, initial!, layer.name)
})

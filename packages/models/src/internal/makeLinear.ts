/**
 * Builds a core `Linear` named by its HF module name from a weight source: weight [out, in] and,
 * when `bias`, bias [out].
 */
import { Linear } from "@peftkit/core"
import type * as tf from "@tensorflow/tfjs-core"
import type { WeightSource } from "./WeightSource.js"

export const makeLinear = (source: WeightSource, name: string, outFeatures: number, inFeatures: number, bias: boolean): Linear => {
  const weight = source.take(`${name}.weight`, [outFeatures, inFeatures], "matrix")
  const biasTensor = bias ? source.take(`${name}.bias`, [outFeatures], "bias") : undefined
  const layer = new Linear(name, weight as tf.Tensor2D, biasTensor as tf.Tensor1D | undefined)
  // Linear's variables hold their own references to the data.
  source.release(weight)
  if (biasTensor !== undefined) source.release(biasTensor)
  return layer
}

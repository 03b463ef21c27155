/** A product operand [1, ..., 1, rows, cols] as a matrix: [rows, cols], or undefined when a leading dimension is not 1. */
import type * as tf from "@tensorflow/tfjs-core"

export const matrixShape = (x: tf.TensorInfo): [number, number] | undefined => {
  const rank = x.shape.length
  if (rank < 2) return undefined
  for (let i = 0; i < rank - 2; i++) if (x.shape[i] !== 1) return undefined
  return [x.shape[rank - 2]!, x.shape[rank - 1]!]
}

/** Small float64 reference math for tests, independent of tfjs. */
import * as tf from "@tensorflow/tfjs-core"

export type Matrix = Array<Array<number>>

export const toMatrix = (tensor: tf.Tensor): Matrix => tensor.arraySync() as Matrix

export const matmulT = (a: Matrix, b: Matrix): Matrix =>
  // a [n, k] times b^T where b is [m, k] -> [n, m]
  a.map((row) => b.map((col) => row.reduce((sum, value, k) => sum + value * col[k]!, 0)))

export const addM = (a: Matrix, b: Matrix, scale = 1): Matrix => a.map((row, i) => row.map((v, j) => v + scale * b[i]![j]!))

export const maxAbsDiff = (a: Matrix, b: Matrix): number =>
  Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - b[i]![j]!))))

export const randomMatrix = (rows: number, cols: number, seed: number, scale = 1): tf.Tensor2D =>
  tf.randomNormal([rows, cols], 0, scale, "float32", seed)

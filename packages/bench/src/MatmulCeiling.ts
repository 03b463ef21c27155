/**
 * The backend's float32 matmul ceiling: GFLOP/s of one large square product, the best any training
 * step on this backend could hope for. Median of a few runs after warm-up; each run waits for its
 * result (`await c.data()`), so asynchronous backends (WebGPU) are timed to completion.
 */
import * as tf from "@tensorflow/tfjs-core"
import { median } from "./Median.js"
import type { MatmulCeiling } from "./Results.js"

export interface CeilingOptions {
  /** n of the n x n x n product; 1024 by default (2.1 GFLOP). */
  readonly size?: number
  readonly warmup?: number
  readonly runs?: number
}

export const measureMatmulCeiling = async (options: CeilingOptions = {}): Promise<MatmulCeiling> => {
  const size = options.size ?? 1024
  const a = tf.randomUniform([size, size], -1, 1, "float32", 1)
  const b = tf.randomUniform([size, size], -1, 1, "float32", 2)
  const once = async (): Promise<number> => {
    const started = performance.now()
    const c = tf.matMul(a, b)
    await c.data()
    const ms = performance.now() - started
    c.dispose()
    return ms
  }
  try {
    for (let i = 0; i < (options.warmup ?? 2); i++) await once()
    const times: Array<number> = []
    for (let i = 0; i < (options.runs ?? 5); i++) times.push(await once())
    const medianMs = median(times)
    return { size, medianMs, gflops: (2 * size ** 3) / (medianMs / 1000) / 1e9 }
  } finally {
    a.dispose()
    b.dispose()
  }
}

/**
 * The Frank-Wolfe property behind COLA: a rank-r LoRA can at best reach the best rank-r
 * approximation of the target update (Eckart-Young), while a chain of rank-r links, at the same
 * total number of steps, keeps adding rank and goes below it.
 */
import { AdapterSet, Linear, MetricsLog, ProgressReporter, makeSchedule, train } from "@peftkit/core"
import { lora, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { Matrix, SingularValueDecomposition } from "ml-matrix"
import { beforeAll, describe, expect, it } from "vitest"
import { Chain } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const N = 64
const TARGET_RANK = 32
const RANK = 4
const LINKS = 8
const STEPS = 800
const services = Layer.merge(ProgressReporter.silent, MetricsLog.none)

/** A rank-32 target update U diag(s) V^T with slowly decaying singular values. */
const makeTarget = (): tf.Tensor2D =>
  tf.tidy(() => {
    const u = tf.linalg.qr(tf.randomNormal([N, TARGET_RANK], 0, 1, "float32", 1))[0]
    const v = tf.linalg.qr(tf.randomNormal([N, TARGET_RANK], 0, 1, "float32", 2))[0]
    const s = tf.tensor1d(Array.from({ length: TARGET_RANK }, (_, i) => 1 / Math.sqrt(1 + i)))
    return tf.matMul(tf.mul(u, s), v, false, true) as tf.Tensor2D
  })

const singularValues = (tensor: tf.Tensor2D): Array<number> =>
  new SingularValueDecomposition(new Matrix(tensor.arraySync() as Array<Array<number>>)).diagonal

const run = async (method: "lora" | "cola", target: tf.Tensor2D) => {
  const layer = new Linear("fc", tf.zeros([N, N]))
  const model = { linears: () => [layer] }
  const config = loraConfig({ r: RANK, alpha: 2 * RANK, targetModules: ["fc"] })
  const identity = tf.eye(N)
  // With X = I the loss is 0.5 ||W_eff - T||_F^2: the fit of the update itself.
  const loss = () => tf.mul(0.5, tf.sum(tf.square(tf.sub(layer.apply(identity, true), target)))) as tf.Scalar
  const optimizer = adamw([], { weightDecay: 0 })
  const schedule = makeSchedule({ kind: "constant", peak: 0.01, totalSteps: STEPS })
  let hooks: ReadonlyArray<ReturnType<Chain<typeof config>["hook"]>> = []
  if (method === "lora") {
    const adapters = AdapterSet.inject(model, lora, { ...config, targetModules: ["fc"] }, { seed: 3 })
    optimizer.setParameters([{ params: adapters.parameters() }])
  } else {
    const chain = Chain.make({ model, variant: lora, adapterConfig: config, chain: { totalSteps: STEPS, links: LINKS, seed: 3 } })
    chain.attach(optimizer)
    hooks = [chain.hook()]
  }
  await Effect.runPromise(
    train({ loss, batch: () => undefined, optimizer, steps: STEPS, learningRate: schedule, hooks, profileEvery: 0, reportEvery: STEPS }).pipe(
      Effect.provide(services)
    )
  )
  const residual = tf.tidy(() => tf.sub(layer.apply(identity), target)) as tf.Tensor2D
  const error = Math.sqrt(tf.tidy(() => tf.sum(tf.square(residual))).arraySync() as number)
  const residualRankR = singularValues(residual).slice(0, RANK)
  optimizer.dispose()
  layer.dispose()
  return { error, residualRankR }
}

describe("Frank-Wolfe property (64x64 map, rank-32 target)", () => {
  it("rank-4 LoRA stalls at the best rank-4 error; an 8-link rank-4 chain with the same steps goes well below it", async () => {
    const target = makeTarget()
    const sigma = singularValues(target)
    const bestRank4 = Math.sqrt(sigma.slice(RANK).reduce((sum, s) => sum + s * s, 0))
    const total = Math.sqrt(sigma.reduce((sum, s) => sum + s * s, 0))

    const loraRun = await run("lora", target)
    const colaRun = await run("cola", target)
    console.log(`||T|| ${total.toFixed(4)}, best rank-4 error ${bestRank4.toFixed(4)}, LoRA ${loraRun.error.toFixed(4)}, COLA ${colaRun.error.toFixed(4)}`)

    // Eckart-Young: no rank-4 update can do better; LoRA gets there (within 2%) and stops.
    expect(loraRun.error).toBeGreaterThanOrEqual(bestRank4 * (1 - 1e-4))
    expect(loraRun.error).toBeLessThan(bestRank4 * 1.02)
    // The chain goes clearly below the rank-4 floor.
    expect(colaRun.error).toBeLessThan(0.1 * bestRank4)
    target.dispose()
  })
})

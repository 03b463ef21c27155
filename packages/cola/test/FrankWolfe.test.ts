/**
 * The Frank-Wolfe property behind COLA: a rank-r LoRA can at best reach the best rank-r
 * approximation of the target update (Eckart-Young), while a chain of rank-r links, at the same
 * total number of steps, keeps adding rank and goes below it. The same budget also runs RAC-LoRA
 * (rank-4 links, one factor frozen at a random draw per link: it can only reach its sketches' span)
 * and XGBLoRA (32 rank-1 links).
 */
import { AdapterSet, Linear, MetricsLog, ProgressReporter, makeSchedule, train } from "@peftkit/core"
import { lora, type LoraAdapter, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { inverse, Matrix, SingularValueDecomposition } from "ml-matrix"
import { beforeAll, describe, expect, it } from "vitest"
import { Chain, type LinkPolicy, racPolicy, xgbPolicy } from "../src/index.js"

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

/** The chains compared with LoRA: the same budget, each with its own links and policy. */
const CHAINS = {
  cola: { links: LINKS },
  rac: { links: LINKS, policy: racPolicy() },
  // XGBLoRA's weak learners are rank 1: 32 of them (25 steps each) reach the target's rank 32.
  xgb: { links: TARGET_RANK, policy: xgbPolicy({ rank: 1 }) }
} satisfies Record<string, { links: number; policy?: LinkPolicy<ReturnType<typeof loraConfig>> }>

const run = async (method: "lora" | keyof typeof CHAINS, target: tf.Tensor2D) => {
  const layer = new Linear("fc", tf.zeros([N, N]))
  const model = { linears: () => [layer] }
  const config = loraConfig({ r: RANK, alpha: 2 * RANK, targetModules: ["fc"] })
  const identity = tf.eye(N)
  // With X = I the loss is 0.5 ||W_eff - T||_F^2: the fit of the update itself.
  const loss = () => tf.mul(0.5, tf.sum(tf.square(tf.sub(layer.apply(identity, true), target)))) as tf.Scalar
  const optimizer = adamw([], { weightDecay: 0 })
  const schedule = makeSchedule({ kind: "constant", peak: 0.01, totalSteps: STEPS })
  let hooks: ReadonlyArray<ReturnType<Chain<typeof config>["hook"]>> = []
  let chain: Chain<typeof config> | undefined
  if (method === "lora") {
    const adapters = AdapterSet.inject(model, lora, { ...config, targetModules: ["fc"] }, { seed: 3 })
    optimizer.setParameters([{ params: adapters.parameters() }])
  } else {
    const { links, ...policy } = CHAINS[method]
    const made = Chain.make({ model, variant: lora, adapterConfig: config, chain: { totalSteps: STEPS, links, seed: 3 }, ...policy })
    made.attach(optimizer)
    hooks = [made.hook()]
    chain = made
  }
  await Effect.runPromise(
    train({ loss, batch: () => undefined, optimizer, steps: STEPS, learningRate: schedule, hooks, profileEvery: 0, reportEvery: STEPS }).pipe(
      Effect.provide(services)
    )
  )
  const residual = tf.tidy(() => tf.sub(layer.apply(identity), target)) as tf.Tensor2D
  const error = Math.sqrt(tf.tidy(() => tf.sum(tf.square(residual))).arraySync() as number)
  const residualRankR = singularValues(residual).slice(0, RANK)
  const sketches = chain !== undefined && method === "rac" ? frozenFactors(chain, layer) : []
  optimizer.dispose()
  layer.dispose()
  return { error, residualRankR, sketches }
}

/** Each RAC link's frozen factor (A [r, n] or B [n, r], as recorded or still in the adapter). */
const frozenFactors = (chain: Chain<ReturnType<typeof loraConfig>>, layer: Linear) =>
  Array.from({ length: chain.links }, (_, link) => {
    const side = chain.configOf(link).freeze
    const record = chain.history[link]?.updates.get(layer.name)
    const tensors = (layer.adapter as LoraAdapter).tensors
    if (record !== undefined && record.kind !== "factors") throw new Error("expected factors")
    return side === "A"
      ? { side, factor: record === undefined ? new Matrix(tensors.loraA.arraySync() as Array<Array<number>>) : Matrix.from1DArray(RANK, N, Array.from(record.a)) }
      : { side, factor: record === undefined ? new Matrix(tensors.loraB.arraySync() as Array<Array<number>>) : Matrix.from1DArray(N, RANK, Array.from(record.b)) }
  })

/** The [n, n] projector onto the row space of `rows` [k, n] (for a column space, pass the transpose). */
const rowProjector = (rows: Matrix): Matrix => rows.transpose().mmul(inverse(rows.mmul(rows.transpose()))).mmul(rows)

/**
 * RAC-LoRA's reach. Link l, solved exactly over its trainable factor, removes the residual's part in
 * its frozen factor's span (rows of A, or columns of B): `greedy` applies those projections in turn.
 * Whatever the solves, the chain's total update lies in {X P_A + P_B Y} (P_A: rows of every frozen A,
 * P_B: columns of every frozen B), so no RAC run gets below `floor` = ||(I - P_B) T (I - P_A)||.
 */
const racReach = (target: Matrix, sketches: ReadonlyArray<{ side: string; factor: Matrix }>) => {
  let residual = target
  for (const { side, factor } of sketches) {
    residual = side === "A" ? residual.sub(residual.mmul(rowProjector(factor))) : residual.sub(rowProjector(factor.transpose()).mmul(residual))
  }
  const stacked = (side: string) => sketches.filter((s) => s.side === side).map((s) => (side === "A" ? s.factor : s.factor.transpose()))
  const complement = (rows: Array<Matrix>) => {
    if (rows.length === 0) return Matrix.eye(N)
    const all = new Matrix(rows.flatMap((m) => m.to2DArray()))
    return Matrix.eye(N).sub(rowProjector(all))
  }
  const floor = complement(stacked("B")).mmul(target).mmul(complement(stacked("A"))).norm()
  return { greedy: residual.norm(), floor }
}

describe("Frank-Wolfe property (64x64 map, rank-32 target)", () => {
  it("rank-4 LoRA stalls at the best rank-4 error; an 8-link rank-4 chain with the same steps goes well below it", async () => {
    const target = makeTarget()
    const sigma = singularValues(target)
    const bestRank4 = Math.sqrt(sigma.slice(RANK).reduce((sum, s) => sum + s * s, 0))
    const total = Math.sqrt(sigma.reduce((sum, s) => sum + s * s, 0))

    const loraRun = await run("lora", target)
    const colaRun = await run("cola", target)
    const racRun = await run("rac", target)
    const xgbRun = await run("xgb", target)
    const rac = racReach(new Matrix(target.arraySync() as Array<Array<number>>), racRun.sketches)
    // Random rank-4 sketches of a 64-dim space keep (1 - 4/64) of the energy per exact link in expectation.
    const racExpected = total * Math.sqrt((1 - RANK / N) ** LINKS)
    console.log(`||T|| ${total.toFixed(4)}, best rank-4 error ${bestRank4.toFixed(4)}, LoRA ${loraRun.error.toFixed(4)}, COLA ${colaRun.error.toFixed(4)}`)
    console.log(`RAC-LoRA ${racRun.error.toFixed(4)} (frozen ${racRun.sketches.map((s) => s.side).join("")}; exact links ${rac.greedy.toFixed(4)}, expected ${racExpected.toFixed(4)}; floor of its sketches ${rac.floor.toFixed(4)}), XGBLoRA (32 rank-1 links) ${xgbRun.error.toFixed(4)}`)

    // Eckart-Young: no rank-4 update can do better; LoRA gets there (within 2%) and stops.
    expect(loraRun.error).toBeGreaterThanOrEqual(bestRank4 * (1 - 1e-4))
    expect(loraRun.error).toBeLessThan(bestRank4 * 1.02)
    // The chain goes clearly below the rank-4 floor.
    expect(colaRun.error).toBeLessThan(0.1 * bestRank4)
    // RAC-LoRA: never below what its frozen factors leave out of reach; at most about what exact
    // links would leave, which sits near its expectation ||T|| (1 - r/n)^(L/2): above LoRA's floor here.
    expect(racRun.sketches.map((s) => s.side)).toContain("A")
    expect(racRun.sketches.map((s) => s.side)).toContain("B")
    expect(racRun.error).toBeGreaterThanOrEqual(rac.floor * (1 - 1e-4))
    expect(racRun.error).toBeLessThan(rac.greedy * 1.02)
    expect(Math.abs(rac.greedy / racExpected - 1)).toBeLessThan(0.1)
    // XGBLoRA's rank-1 weak learners add rank too: 32 of them end far below the rank-4 floor.
    expect(xgbRun.error).toBeLessThan(0.5 * bestRank4)
    target.dispose()
  })
})

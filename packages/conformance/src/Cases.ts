/**
 * The conformance cases: small, fixed computations every backend must reproduce. Each case runs on
 * the currently active tfjs backend and returns its numbers (read back to the host) plus the engine's
 * tensor count before and after, so a runner can compare a backend with the CPU reference and check
 * that nothing leaked. Inputs come from seeded tfjs random ops, which are generated on the host and
 * therefore identical on every backend.
 */
import { AdapterSet, clipByGlobalNorm, Linear, makeSchedule, MetricsLog, mixSeed, ProgressReporter, train } from "@peftkit/core"
import { Chain } from "@peftkit/cola"
import { lora, loraConfig } from "@peftkit/lora"
import { causalLmLoss, Llama, type LlamaConfig } from "@peftkit/models"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"

export type CaseOutput = Readonly<Record<string, Float32Array>>

export interface ConformanceCase {
  readonly name: string
  /** Largest |backend - reference| / max(1, |reference|) accepted for this case. */
  readonly tolerance: number
  readonly run: Effect.Effect<CaseOutput>
}

const read = (tensors: Readonly<Record<string, tf.Tensor>>): Effect.Effect<CaseOutput> =>
  Effect.promise(async () => {
    const out: Record<string, Float32Array> = {}
    for (const [name, tensor] of Object.entries(tensors)) out[name] = Float32Array.from(await tensor.data())
    return out
  })

const disposeAll = (tensors: Readonly<Record<string, tf.Tensor>>) => Object.values(tensors).forEach((t) => t.dispose())

/** Builds something that holds variables (a layer, a model) and frees the temporaries it was made from. */
const made = <A>(build: () => A): A => {
  let value: A | undefined
  tf.tidy(() => {
    value = build()
  })
  return value!
}

/** One rank-4 LoRA on a 48 -> 32 layer with bias: output, dL/dA, dL/dB. */
const loraForwardBackward: ConformanceCase = {
  name: "LoRA forward and backward",
  tolerance: 1e-4,
  run: Effect.gen(function* () {
    const layer = made(() => new Linear("fc", tf.randomNormal([32, 48], 0, 0.2, "float32", 1), tf.randomNormal([32], 0, 0.1, "float32", 2) as tf.Tensor1D))
    const set = AdapterSet.inject({ linears: () => [layer] }, lora, loraConfig({ r: 4, alpha: 8, targetModules: ["fc"] }), { seed: 3 })
    const [a, b] = set.parameters().map((p) => p.variable) as [tf.Variable, tf.Variable]
    tf.tidy(() => b.assign(tf.randomNormal(b.shape, 0, 0.3, "float32", 4)))
    const x = tf.randomNormal([16, 48], 0, 1, "float32", 5)
    const target = tf.randomNormal([16, 32], 0, 1, "float32", 6)
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(layer.apply(x, true), target))) as tf.Scalar, [a, b])
    const outputs = { output: layer.apply(x), loss: value, gradA: grads[a.name]!, gradB: grads[b.name]! }
    const result = yield* read(outputs)
    disposeAll(outputs)
    x.dispose()
    target.dispose()
    layer.dispose()
    return result
  })
}

export const tinyLlama: LlamaConfig = {
  modelType: "llama",
  vocabSize: 96,
  hiddenSize: 32,
  intermediateSize: 64,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 8,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxPositionEmbeddings: 64,
  tieWordEmbeddings: true,
  attentionBias: false,
  ropeLayout: "half",
  bosTokenId: 1,
  eosTokenId: [2]
}

/** A 2-block Llama (RMSNorm, RoPE, GQA, SwiGLU, tied head) with LoRA on q/v: logits, loss and LoRA gradients, with padding. */
const transformerBlock: ConformanceCase = {
  name: "transformer blocks forward and backward (with a padding mask)",
  tolerance: 1e-4,
  run: Effect.gen(function* () {
    const model = Llama.init(tinyLlama, 7)
    const set = AdapterSet.inject(model, lora, loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] }), { seed: 8 })
    const params = set.parameters()
    params.filter((p) => p.name.endsWith("lora_B.weight")).forEach((p, i) => tf.tidy(() => p.variable.assign(tf.randomNormal(p.variable.shape, 0, 0.1, "float32", 20 + i))))
    const ids = tf.tensor2d([[1, 5, 9, 14, 22, 31, 40, 2], [1, 7, 8, 60, 2, 0, 0, 0]], [2, 8], "int32")
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]], [2, 8], "float32")
    const { value, grads } = tf.variableGrads(() => causalLmLoss(model.forward(ids, { attentionMask: mask, training: true }), ids, mask), params.map((p) => p.variable))
    // Logits at padded positions are meaningless: compare real positions only.
    const realLogits = tf.tidy(() => tf.mul(model.forward(ids, { attentionMask: mask }), tf.expandDims(mask, 2)))
    const outputs: Record<string, tf.Tensor> = { logits: realLogits, loss: value }
    params.forEach((p) => (outputs[p.name] = grads[p.variable.name]!))
    const result = yield* read(outputs)
    disposeAll(outputs)
    ids.dispose()
    mask.dispose()
    model.dispose()
    return result
  })
}

/** AdamW with weight decay, three steps with a changing learning rate. */
const optimizerStep: ConformanceCase = {
  name: "AdamW steps",
  tolerance: 1e-5,
  run: Effect.gen(function* () {
    const w = made(() => tf.variable(tf.randomNormal([24, 16], 0, 1, "float32", 30), true))
    const optimizer = adamw([{ params: [{ name: "w", variable: w }] }], { weightDecay: 0.1 })
    for (let step = 0; step < 3; step++) {
      const grad = tf.randomNormal([24, 16], 0, 1, "float32", 40 + step)
      optimizer.step({ w: grad }, 1e-2 * (step + 1))
      grad.dispose()
    }
    const state = optimizer.stateDict()
    const result = yield* read({ w, ...Object.fromEntries(Object.entries(state).filter(([k]) => !k.endsWith("/step"))) })
    disposeAll(state)
    optimizer.dispose()
    w.dispose()
    return result
  })
}

/**
 * Clipping by the global norm of 30 gradients, as a model with adapters on every linear layer has:
 * more inputs than a WebGPU shader stage may bind (8 storage buffers on SwiftShader and lavapipe).
 */
const manyGradientsClip: ConformanceCase = {
  name: "gradient clipping over 30 gradients",
  tolerance: 1e-5,
  run: Effect.gen(function* () {
    const grads = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`g${i}`, tf.randomNormal([4 + (i % 5), 8], 0, 1, "float32", 70 + i)]))
    const clipped = clipByGlobalNorm(grads, 1)
    const result = yield* read({ norm: clipped.norm, ...Object.fromEntries(Object.entries(clipped.grads).filter((_, i) => i % 7 === 0)) })
    disposeAll(grads)
    disposeAll(clipped.grads)
    clipped.norm.dispose()
    return result
  })
}

const silent = Layer.merge(ProgressReporter.silent, MetricsLog.none)

/** A 2-link chain trained 8 steps on one layer: weights after the knot and the optimizer state (must be reset). */
const colaKnot: ConformanceCase = {
  name: "a COLA knot (merge, re-init, optimizer reset)",
  tolerance: 1e-4,
  run: Effect.gen(function* () {
    const layer = made(() => new Linear("m.q_proj", tf.randomNormal([16, 24], 0, 0.3, "float32", 50)))
    const chain = Chain.make({ model: { linears: () => [layer] }, variant: lora, adapterConfig: loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj"] }), chain: { totalSteps: 8, knots: [4], seed: 9 } })
    const optimizer = chain.attach(adamw([], { weightDecay: 0 }))
    const x = tf.randomNormal([12, 24], 0, 1, "float32", 51)
    const y = tf.randomNormal([12, 16], 0, 1, "float32", 52)
    yield* train({ loss: () => tf.mean(tf.square(tf.sub(layer.apply(x, true), y))) as tf.Scalar, batch: () => undefined, optimizer, steps: 5, learningRate: () => 0.02, hooks: [chain.hook()], profileEvery: 0 }).pipe(
      Effect.provide(silent),
      Effect.orDie
    )
    // Step 4 ran after the knot: the state holds exactly one step of the new link.
    const state = optimizer.stateDict()
    const result = yield* read({ weight: layer.weight, ...Object.fromEntries(Object.entries(state).filter(([k]) => !k.endsWith("/step"))) })
    disposeAll(state)
    optimizer.dispose()
    x.dispose()
    y.dispose()
    layer.dispose()
    return result
  })
}

/**
 * Twelve AdamW steps of LoRA on the tiny Llama memorising one fixed batch: the per-step losses.
 * The tolerance is wider than the single-step cases' on purpose: for gradient entries near Adam's
 * epsilon the update is close to sign(g), so float32 rounding differences between backends (other
 * summation orders on a GPU) become full learning-rate-sized steps and the trajectories drift apart.
 * Measured: wasm 2e-7, WebGPU on lavapipe 5e-3 after 12 steps, while every single forward, backward
 * and AdamW step above agrees to 1e-6.
 */
const trainingRun: ConformanceCase = {
  name: "a short LoRA training run (12 AdamW steps)",
  tolerance: 1e-2,
  run: Effect.gen(function* () {
    const model = Llama.init(tinyLlama, 60)
    const set = AdapterSet.inject(model, lora, loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] }), { seed: 61 })
    const optimizer = adamw([{ params: set.parameters() }], { weightDecay: 0 })
    const result = yield* train({
      loss: (batch: { ids: tf.Tensor2D }) => causalLmLoss(model.forward(batch.ids, { training: true }), batch.ids, tf.cast(tf.onesLike(batch.ids), "float32") as tf.Tensor2D),
      batch: () => ({ ids: tf.randomUniform([4, 12], 3, 96, "int32", mixSeed(62, 0)) as tf.Tensor2D }),
      optimizer,
      steps: 12,
      learningRate: makeSchedule({ kind: "linear", peak: 2e-2, totalSteps: 12, warmupSteps: 2 }),
      clipNorm: 1,
      profileEvery: 0
    }).pipe(Effect.provide(silent), Effect.orDie)
    optimizer.dispose()
    model.dispose()
    return { losses: Float32Array.from(result.trainLoss.map((e) => e.loss)) }
  })
}

export const conformanceCases: ReadonlyArray<ConformanceCase> = [loraForwardBackward, transformerBlock, optimizerStep, manyGradientsClip, colaKnot, trainingRun]

import {
  type Adapter,
  type AdapterVariant,
  AdapterSet,
  Backend,
  InvalidCheckpoint,
  Linear,
  type LinearTarget,
  makeSchedule,
  MetricsLog,
  type Parameter,
  ProgressReporter,
  ShapeMismatch,
  train
} from "@peftkit/core"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"

// --- A variant: FFA-LoRA, i.e. LoRA with A frozen at its random init; only B trains. ----------
interface FfaConfig { readonly r: number; readonly alpha: number }

const randomA = (r: number, inFeatures: number, seed: number) =>
  tf.randomUniform([r, inFeatures], -1 / Math.sqrt(inFeatures), 1 / Math.sqrt(inFeatures), "float32", seed)

class FfaAdapter implements Adapter {
  readonly variant = "ffa-lora"
  readonly a: tf.Variable // [r, in], frozen
  readonly b: tf.Variable // [out, r], trained, starts at 0 so the base output is unchanged
  readonly scale: number
  constructor(readonly moduleName: string, target: LinearTarget, config: FfaConfig, seed: number) {
    this.scale = config.alpha / config.r
    this.a = tf.tidy(() => tf.variable(randomA(config.r, target.inFeatures, seed), false))
    this.b = tf.tidy(() => tf.variable(tf.zeros([target.outFeatures, config.r]), true))
  }
  parameters(): ReadonlyArray<Parameter> {
    return [{ name: `${this.moduleName}.lora_B.weight`, variable: this.b }]
  }
  forward(x: tf.Tensor2D, base: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => tf.add(base, tf.matMul(tf.mul(tf.matMul(x, this.a, false, true), this.scale), this.b, false, true)))
  }
  delta(): tf.Tensor2D {
    return tf.tidy(() => tf.matMul(tf.mul(this.b, this.scale), this.a))
  }
  factors() {
    return { a: this.a.clone() as tf.Tensor2D, b: tf.tidy(() => tf.mul(this.b, this.scale)) as tf.Tensor2D }
  }
  reinitialize(seed: number): void {
    tf.tidy(() => {
      this.a.assign(randomA(this.a.shape[0]!, this.a.shape[1]!, seed))
      this.b.assign(tf.zerosLike(this.b))
    })
  }
  stateDict(): Record<string, tf.Tensor> {
    return { "lora_A.weight": this.a.clone(), "lora_B.weight": this.b.clone() }
  }
  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>): void {
    for (const [key, own] of [["lora_A.weight", this.a], ["lora_B.weight", this.b]] as const) {
      const given = tensors[key]
      if (given === undefined) throw new InvalidCheckpoint({ path: this.moduleName, tensor: key, reason: "missing" })
      if (!tf.util.arraysEqual(given.shape, own.shape)) throw new ShapeMismatch({ what: `${this.moduleName}.${key}`, expected: own.shape, actual: given.shape })
    }
    this.a.assign(tensors["lora_A.weight"]!)
    this.b.assign(tensors["lora_B.weight"]!)
  }
  dispose(): void {
    this.a.dispose()
    this.b.dispose()
  }
}

export const ffaLora: AdapterVariant<FfaConfig> = {
  name: "ffa-lora",
  create: (target, config, seed) => new FfaAdapter(target.name, target, config, seed)
}

// --- Using it: inject, train, merge. -------------------------------------------------------
const program = Effect.gen(function* () {
  const backend = yield* Backend
  yield* Effect.log(backend.selection.reason)

  // A model is anything with `linears()`: Linear layers named like the HF modules they stand for.
  const linear = (name: string, seed: number) => {
    const weight = tf.randomNormal([16, 16], 0, 0.3, "float32", seed) as tf.Tensor2D
    const layer = new Linear(name, weight) // frozen (trainable: false) unless asked otherwise
    weight.dispose() // the layer's variable holds its own reference
    return layer
  }
  const layers = [linear("model.layers.0.self_attn.q_proj", 1), linear("model.layers.0.self_attn.v_proj", 2)]
  const model = { linears: () => layers }
  const x = tf.randomNormal([64, 16], 0, 1, "float32", 3)
  const y = tf.randomNormal([64, 16], 0, 1, "float32", 4)
  const forward = (training: boolean) => tf.tidy(() => layers[1]!.apply(tf.tanh(layers[0]!.apply(x, training)), training))
  const base = forward(false)

  // PEFT target_modules semantics: a list entry matches a module name exactly or as a dotted suffix.
  const adapters = AdapterSet.inject(model, ffaLora, { r: 4, alpha: 8 }, { targetModules: ["q_proj", "v_proj"], seed: 0 })
  const same = tf.tidy(() => tf.all(tf.equal(forward(false), base)).dataSync()[0])
  yield* Effect.log(`B = 0: output unchanged bit for bit: ${same === 1}`) // true

  const optimizer = adamw([{ params: adapters.parameters() }], { weightDecay: 0 })
  const result = yield* train({
    label: "ffa-lora",
    loss: (_batch: undefined, training) => tf.losses.meanSquaredError(y, forward(training)) as tf.Scalar,
    batch: () => undefined, // full-batch here; normally the batch for `step`
    optimizer,
    steps: 200,
    learningRate: makeSchedule({ kind: "cosine", peak: 1e-2, totalSteps: 200, warmupSteps: 10 }),
    clipNorm: 1,
    reportEvery: 50
  })
  yield* Effect.log(`loss ${result.trainLoss[0]!.loss.toFixed(4)} -> ${result.trainLoss.at(-1)!.loss.toFixed(4)}`)

  const unmerged = forward(false)
  adapters.merge() // W <- W + (alpha/r) B A, in float32; the adapter path is skipped while merged
  const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(forward(false), unmerged))).dataSync()[0])
  yield* Effect.log(`merged vs unmerged: max |diff| = ${diff}`)

  adapters.remove() // the merged update stays in W
  optimizer.dispose()
  tf.dispose([x, y, base, unmerged])
  layers.forEach((layer) => layer.dispose())
})

await Effect.runPromise(
  program.pipe(
    Effect.provide(Layer.mergeAll(Backend.layer("wasm"), ProgressReporter.terminal(), MetricsLog.jsonl("reports/ffa/metrics.jsonl")))
  )
)

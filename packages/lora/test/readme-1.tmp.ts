import { AdapterSet, Backend, Linear, makeSchedule, MetricsLog, ProgressReporter, readSafetensors, train } from "@peftkit/core"
import { loadAdapter, lora, loraConfig, loraPlusGroups, saveAdapter } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { readFileSync } from "node:fs"

// Two projections named as in a Llama checkpoint; W is [out, in], as in PyTorch.
const makeModel = () => {
  const layers = ["q_proj", "v_proj"].map((name, i) => {
    const weight = tf.randomNormal([24, 32], 0, 0.2, "float32", i + 1) as tf.Tensor2D
    const layer = new Linear(`model.layers.0.self_attn.${name}`, weight)
    weight.dispose()
    return layer
  })
  return {
    layers,
    linears: () => layers,
    forward: (x: tf.Tensor2D, training = false) => tf.tidy(() => tf.add(layers[0]!.apply(x, training), layers[1]!.apply(x, training)))
  }
}

const program = Effect.gen(function* () {
  yield* Backend
  const model = makeModel()
  const x = tf.randomNormal([128, 32], 0, 1, "float32", 10)
  const y = tf.randomNormal([128, 24], 0, 1, "float32", 11)

  // r = 8, lora_alpha = 16: scale alpha / r = 2 (useRslora: true would make it alpha / sqrt(r)).
  const config = loraConfig({ r: 8, alpha: 16, dropout: 0.05, targetModules: ["q_proj", "v_proj"] })
  const adapters = AdapterSet.inject(model, lora, config, { targetModules: config.targetModules, seed: 0 })

  // LoRA+: lora_B trains 16x faster than lora_A.
  const optimizer = adamw(loraPlusGroups(adapters.parameters(), 16), { weightDecay: 0 })
  yield* train({
    loss: (_: undefined, training) => tf.losses.meanSquaredError(y, model.forward(x, training)) as tf.Scalar,
    batch: () => undefined,
    optimizer,
    steps: 100,
    learningRate: makeSchedule({ kind: "linear", peak: 2e-3, totalSteps: 100, warmupSteps: 5 }),
    reportEvery: 50,
    profileEvery: 0
  })

  // Save in Hugging Face PEFT layout.
  yield* saveAdapter("reports/lora-adapter", adapters, config, { baseModel: "my-org/my-model", taskType: "CAUSAL_LM" })
  const saved = yield* readSafetensors("reports/lora-adapter/adapter_model.safetensors")
  for (const t of saved.tensors) console.log(t.name, t.dtype, t.shape)
  const json = JSON.parse(readFileSync("reports/lora-adapter/adapter_config.json", "utf8"))
  console.log(json.peft_type, json.r, json.lora_alpha, json.target_modules)

  // Load onto a fresh copy of the same base model: identical outputs.
  const fresh = makeModel()
  const loaded = yield* loadAdapter("reports/lora-adapter", fresh)
  const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(fresh.forward(x), model.forward(x)))).dataSync()[0])
  console.log(`loaded adapter: ${loaded.adapters.layers.length} layers, max |diff| ${diff}`) // 0

  // Disable (PEFT's disable_adapter): the base output, bit for bit. Merge/unmerge: W +/- (alpha/r) B A.
  const adapted = model.forward(x)
  adapters.disable()
  const base = model.forward(x)
  adapters.enable()
  adapters.merge()
  const merged = tf.tidy(() => tf.max(tf.abs(tf.sub(model.forward(x), adapted))).dataSync()[0])
  adapters.unmerge()
  console.log(`merged vs unmerged: max |diff| ${merged}`) // ~1e-6 (float32 rounding)

  tf.dispose([x, y, adapted, base])
  optimizer.dispose()
  ;[...model.layers, ...fresh.layers].forEach((layer) => layer.dispose())
})

await Effect.runPromise(program.pipe(Effect.provide(Layer.mergeAll(Backend.layer("wasm"), ProgressReporter.terminal(), MetricsLog.none))))

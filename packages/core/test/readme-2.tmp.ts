import {
  Backend,
  decodeConfig,
  makeSchedule,
  PositiveInt,
  readSafetensors,
  Safetensors,
  withWarmupRestarts,
  writeSafetensors
} from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"

const program = Effect.gen(function* () {
  // Named tensors to a file (atomically: temp file, fsync, rename) and back.
  const weight = tf.tensor2d([[1, 2], [3, 4]])
  yield* writeSafetensors("reports/st/model.safetensors", { "fc.weight": weight }, { format: "pt" })
  const file = yield* readSafetensors("reports/st/model.safetensors")
  console.log(file.metadata, file.tensors.map((t) => `${t.name} ${t.dtype} [${t.shape}]`)) // { format: 'pt' } [ 'fc.weight F32 [2,2]' ]

  // F16 (and BF16) are widened to float32 exactly; tfjs has no half-precision tensors.
  const bytes = Safetensors.encode([{ name: "h", dtype: "F16", shape: [3], data: new Float32Array([0.1, 1, 65504]) }])
  const half = Safetensors.toTensor((yield* Safetensors.decode(bytes)).tensors[0]!)
  console.log(half.dtype, Array.from(half.dataSync())) // float32 [ 0.0999755859375, 1, 65504 ]

  // Every spec violation is a typed InvalidSafetensors, naming the tensor where there is one.
  const error = yield* Effect.flip(Safetensors.decode(bytes.subarray(0, bytes.length - 1), "h.safetensors"))
  console.log(error.reason, error.tensor) // out-of-bounds h

  // Configs: strict Schema decoding; an unknown key is an error naming the field.
  const RunConfig = Schema.Struct({ steps: PositiveInt, lr: Schema.Number })
  const bad = yield* Effect.flip(decodeConfig(RunConfig, { steps: 100, lr: 1e-3, warmup: 10 }, "run"))
  console.log(bad.message) // invalid config: 'run.warmup': unknown key

  // Schedules are functions of the 0-based step.
  const linear = makeSchedule({ kind: "linear", peak: 1e-3, totalSteps: 100, warmupSteps: 10 })
  console.log([0, 5, 10, 55, 100].map(linear)) // [ 0, 0.0005, 0.001, 0.0005, 0 ]
  const jagged = withWarmupRestarts(linear, [50], 5) // ReLoRA-style: back to 0 at step 50
  console.log([49, 50, 52, 55].map(jagged)) // [ 0.000567, 0, 0.000213, 0.0005 ] (rounded)

  tf.dispose([weight, half])
})

await Effect.runPromise(Effect.provide(program, Backend.layer("cpu")))

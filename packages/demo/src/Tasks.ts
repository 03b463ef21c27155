/**
 * Two related classification tasks, generated from seeds (no downloads): points x ~ N(0, I) get
 * soft labels (class probabilities) from a random "teacher" MLP. Task B's teacher is task A's with
 * a rank-16 change to each hidden layer, so adapting from A to B needs an update of rank 16: more
 * than one rank-4 LoRA can express, which is where chaining links pays off.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Mlp, type MlpShape } from "./Mlp.js"

export interface Dataset {
  readonly x: tf.Tensor2D
  /** Teacher class probabilities [n, classes]. */
  readonly targets: tf.Tensor2D
  readonly size: number
}

export interface TaskPair {
  readonly taskA: { readonly train: Dataset; readonly valid: Dataset }
  readonly taskB: { readonly train: Dataset; readonly valid: Dataset }
  dispose(): void
}

export const teacherShape: MlpShape = { inputs: 32, hidden: 64, depth: 2, classes: 8 }

/** Adds a rank-`rank` perturbation of relative size `strength` to every hidden layer. */
const perturb = (teacher: Mlp, rank: number, strength: number, seed: number): Mlp => {
  const shifted = teacher.copy(false)
  shifted.layers.forEach((layer, i) =>
    tf.tidy(() => {
      const [out, inF] = layer.weight.shape
      const u = tf.randomNormal([out, rank], 0, 1, "float32", seed + 2 * i)
      const v = tf.randomNormal([rank, inF], 0, 1, "float32", seed + 2 * i + 1)
      const delta = tf.matMul(u, v)
      const scale = tf.div(tf.mul(strength, tf.norm(layer.weight)), tf.norm(delta))
      layer.weight.assign(tf.add(layer.weight, tf.mul(delta, scale)))
    })
  )
  return shifted
}

const sample = (teacher: Mlp, size: number, seed: number): Dataset => {
  const x = tf.randomNormal([size, teacherShape.inputs], 0, 1, "float32", seed) as tf.Tensor2D
  // A temperature below 1 makes the teacher's classes confident but not one-hot.
  const targets = tf.tidy(() => tf.softmax(tf.mul(teacher.forward(x), 4)) as tf.Tensor2D)
  return { x, targets, size }
}

export const makeTasks = (seed: number, sizes: { readonly train: number; readonly valid: number }): TaskPair => {
  const teacherA = Mlp.init(teacherShape, seed, false)
  const teacherB = perturb(teacherA, 16, 1.0, seed + 500)
  const pair: TaskPair = {
    taskA: { train: sample(teacherA, sizes.train, seed + 1), valid: sample(teacherA, sizes.valid, seed + 2) },
    taskB: { train: sample(teacherB, sizes.train, seed + 3), valid: sample(teacherB, sizes.valid, seed + 4) },
    dispose: () => {
      for (const task of [pair.taskA, pair.taskB]) for (const set of [task.train, task.valid]) {
        set.x.dispose()
        set.targets.dispose()
      }
    }
  }
  teacherA.dispose()
  teacherB.dispose()
  return pair
}

/**
 * Mean KL(teacher || model) over rows: cross-entropy minus the teacher's entropy, so the same
 * gradients as cross-entropy but 0 means the teacher is matched exactly.
 */
export const klDivergence = (logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar =>
  tf.tidy(() => tf.mean(tf.sum(tf.mul(targets, tf.sub(tf.log(tf.maximum(targets, 1e-30)), tf.logSoftmax(logits))), 1)) as tf.Scalar)

/** A batch of `batchSize` rows for `step`: a deterministic walk through a seeded permutation. */
export const batchFor = (data: Dataset, batchSize: number, step: number, seed: number): { x: tf.Tensor2D; targets: tf.Tensor2D } => {
  const perEpoch = Math.floor(data.size / batchSize)
  const epoch = Math.floor(step / perEpoch)
  const offset = (step % perEpoch) * batchSize
  const order = permutation(data.size, seed + epoch)
  const indices = tf.tensor1d(order.subarray(offset, offset + batchSize), "int32")
  return { x: tf.gather(data.x, indices) as tf.Tensor2D, targets: tf.gather(data.targets, indices) as tf.Tensor2D }
}

const permutations = new Map<string, Int32Array>()
/** Fisher-Yates with a small LCG, cached per (size, seed): batches cost no host work after the first epoch. */
const permutation = (size: number, seed: number): Int32Array => {
  const key = `${size}:${seed}`
  const cached = permutations.get(key)
  if (cached !== undefined) return cached
  const order = Int32Array.from({ length: size }, (_, i) => i)
  let state = (seed * 2654435761) >>> 0 || 1
  for (let i = size - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    const j = state % (i + 1)
    const tmp = order[i]!
    order[i] = order[j]!
    order[j] = tmp
  }
  permutations.set(key, order)
  return order
}

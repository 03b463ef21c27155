/** Reads a float32 tensor back to the host (async, no dataSync) and disposes it. */
import type * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"

export const readHost = (tensor: tf.Tensor): Effect.Effect<Float32Array> =>
  Effect.promise(() => tensor.data() as Promise<Float32Array>).pipe(Effect.ensuring(Effect.sync(() => tensor.dispose())))

#!/usr/bin/env node
/**
 * `pnpm bench:pissa`: what PiSSA's initialisation costs on the wasm backend (the figures in the lora
 * README): the exact SVD against the randomised one (`pissa_niter_K`) on 1024x1024 and 4096x1024
 * weights at r = 8 and 16, and tfjs's `tf.linalg.qr` against the host QR `TopSingular.ts` uses.
 * Minutes of CPU, so a script, not a test.
 */
import { providers } from "@peftkit/backend-cpu"
import { Backend } from "@peftkit/core"
import { topSingularTriplets } from "@peftkit/lora"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { Matrix, QrDecomposition } from "ml-matrix"

const timed = (run: () => void, repeats = 1): number => {
  const start = performance.now()
  for (let i = 0; i < repeats; i++) run()
  return (performance.now() - start) / repeats
}

const measure = Effect.andThen(Backend, (backend) =>
  Effect.sync(() => {
    console.log(`backend ${backend.info.name}: ${backend.info.device}`)
    for (const [out, inF] of [[1024, 1024], [4096, 1024]] as const) {
      const w = tf.randomNormal([out, inF], 0, 0.02, "float32", 1) as tf.Tensor2D
      for (const r of [8, 16]) {
        // Each read back once (off any training step), so the time is the whole initialisation.
        const cost = (niter: number | undefined) => timed(() => tf.tidy(() => void topSingularTriplets(w, r, { niter, seed: 3 }).u.dataSync()))
        console.log(`${out}x${inF} r=${r}: exact ${cost(undefined).toFixed(0)} ms, niter 2 ${cost(2).toFixed(0)} ms, niter 4 ${cost(4).toFixed(0)} ms, niter 16 ${cost(16).toFixed(0)} ms`)
      }
      w.dispose()
    }
    for (const rows of [1024, 4096]) {
      const x = tf.randomNormal([rows, 16], 0, 1, "float32", 2) as tf.Tensor2D
      const device = timed(() => tf.tidy(() => void tf.linalg.qr(x)[0]!.dataSync()), 3)
      const host = timed(() => tf.tidy(() => void tf.tensor2d(Float32Array.from(new QrDecomposition(Matrix.from1DArray(rows, 16, Array.from(x.dataSync()))).orthogonalMatrix.to1DArray()), [rows, 16]).dataSync()), 3)
      console.log(`QR of [${rows}, 16]: tf.linalg.qr ${device.toFixed(1)} ms, host (ml-matrix, with the transfers) ${host.toFixed(1)} ms`)
      x.dispose()
    }
  })
)

await Effect.runPromise(Effect.provide(measure, Backend.layer("wasm", providers)))

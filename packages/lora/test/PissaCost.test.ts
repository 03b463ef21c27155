/**
 * What PiSSA's initialisation costs (the figures in the README), on the wasm backend: the exact SVD
 * against the randomised one (`pissa_niter_K`) on 1024x1024 and 4096x1024 weights at r = 8 and 16,
 * and tfjs's `tf.linalg.qr` against the host QR `TopSingular.ts` uses. Minutes of CPU, so opt-in:
 *
 *     PEFTKIT_PISSA_COST=1 npx vitest run --project lora test/PissaCost
 */
import { Backend } from "@peftkit/core"
import { providers } from "@peftkit/backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { Matrix, QrDecomposition } from "ml-matrix"
import { describe, expect, it } from "vitest"
import { topSingularTriplets } from "../src/index.js"

const timed = (run: () => void, repeats = 1): number => {
  const start = performance.now()
  for (let i = 0; i < repeats; i++) run()
  return (performance.now() - start) / repeats
}

describe.runIf(process.env.PEFTKIT_PISSA_COST !== undefined)("PiSSA init cost (wasm)", () => {
  it("exact vs randomised SVD; tf.linalg.qr vs host QR", () =>
    Effect.runPromise(
      Effect.provide(
        Effect.andThen(Backend, () => {
          const lines: Array<string> = [`backend ${tf.getBackend()}`]
          for (const [out, inF] of [[1024, 1024], [4096, 1024]] as const) {
            const w = tf.randomNormal([out, inF], 0, 0.02, "float32", 1) as tf.Tensor2D
            for (const r of [8, 16]) {
              const cost = (niter: number | undefined) => timed(() => tf.tidy(() => void topSingularTriplets(w, r, { niter, seed: 3 }).u.dataSync()))
              lines.push(`${out}x${inF} r=${r}: exact ${cost(undefined).toFixed(0)} ms, niter 2 ${cost(2).toFixed(0)} ms, niter 4 ${cost(4).toFixed(0)} ms, niter 16 ${cost(16).toFixed(0)} ms`)
            }
            w.dispose()
          }
          for (const rows of [1024, 4096]) {
            const x = tf.randomNormal([rows, 16], 0, 1, "float32", 2) as tf.Tensor2D
            const device = timed(() => tf.tidy(() => void tf.linalg.qr(x)[0]!.dataSync()), 3)
            const host = timed(() => tf.tidy(() => void tf.tensor2d(Float32Array.from(new QrDecomposition(Matrix.from1DArray(rows, 16, Array.from(x.dataSync()))).orthogonalMatrix.to1DArray()), [rows, 16]).dataSync()), 3)
            lines.push(`QR of [${rows}, 16]: tf.linalg.qr ${device.toFixed(1)} ms, host (ml-matrix, with the transfers) ${host.toFixed(1)} ms`)
            x.dispose()
          }
          console.log(lines.join("\n"))
          expect(lines.length).toBe(7)
        }),
        Backend.layer("wasm", providers)
      )
    ), 1_200_000)
})

/**
 * The conformance suite on the native backends, wherever they import: @tensorflow/tfjs-node-gpu
 * (CUDA) and @tensorflow/tfjs-node. On machines where they cannot be installed (their install
 * downloads libtensorflow) or cannot load, each skips with the exact reason.
 */
import { providers as cpuProviders } from "@peftkit/backend-cpu"
import { formatReport, runConformance } from "@peftkit/conformance"
import { selectBackend } from "@peftkit/core"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import { providers } from "../src/index.js"

const all = [...providers, ...cpuProviders]

for (const backend of ["node-gpu", "node"] as const) {
  const probe = await Effect.runPromise(Effect.either(selectBackend(backend, all)))
  const reason = Either.isLeft(probe) ? probe.left.message : undefined
  if (reason !== undefined) console.log(`${backend} conformance skipped: ${reason}`)
  describe.skipIf(reason !== undefined)(`conformance on ${backend}`, () => {
    it("every case agrees with the CPU reference within its tolerance and leaks no tensor", async () => {
      const reports = await Effect.runPromise(runConformance(backend, all))
      console.log(reports.map(formatReport).join("\n"))
      for (const report of reports) {
        expect(report.leaked, report.name).toBe(0)
        expect(report.maxError, `${report.name}: worst at ${report.worst}`).toBeLessThanOrEqual(report.tolerance)
      }
    }, 300_000)
  })
}

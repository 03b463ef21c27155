/**
 * The conformance suite on WebGPU in Node: Dawn (the `webgpu` package) on whatever Vulkan driver the
 * machine has; in this project's CI that is Mesa 25's software rasterizer (lavapipe), installed by
 * scripts/install-test-system-deps.sh. Skips, saying why, where no WebGPU adapter can be had, except
 * in CI (CI=true): this project's machines can run it, so there a missing adapter is a failure.
 */
import { providers as cpuProviders } from "@peftkit/backend-cpu"
import { formatReport, runConformance } from "@peftkit/conformance"
import { selectBackend } from "@peftkit/core"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import { providers } from "../src/index.js"

const all = [...providers, ...cpuProviders]
const probe = await Effect.runPromise(Effect.either(selectBackend("webgpu", all)))
const unavailable = Either.isLeft(probe) ? probe.left.message : undefined
console.log(Either.isLeft(probe) ? `WebGPU conformance skipped: ${probe.left.message}` : `WebGPU adapter: ${probe.right.info.device}`)

describe.skipIf(unavailable !== undefined && process.env.CI !== "true")("conformance on webgpu (Dawn in Node)", () => {
  it("every case agrees with the CPU reference within its tolerance and leaks no tensor", async () => {
    if (unavailable !== undefined) throw new Error(`WebGPU in Node must run in CI on this machine kind, but: ${unavailable}`)
    const reports = await Effect.runPromise(runConformance("webgpu", all))
    console.log(reports.map(formatReport).join("\n"))
    expect(reports).toHaveLength(6)
    for (const report of reports) {
      expect(report.backend).toBe("webgpu")
      expect(report.leaked, report.name).toBe(0)
      expect(report.maxError, `${report.name}: worst at ${report.worst}`).toBeLessThanOrEqual(report.tolerance)
    }
  }, 300_000)
})

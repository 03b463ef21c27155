/**
 * The WebGPU conformance suite outside vitest, for scripts/gpu-check.sh: the same call as
 * packages/backend-webgpu/test/Conformance.test.ts (runConformance("webgpu") against the CPU
 * reference, every case within its tolerance, no tensor leaked). Bundled by bundle.mjs into the
 * carried payload; `webgpu` (Dawn) stays external and resolves from the payload's node_modules.
 * Prints one report line per case, then `@gpu-check:conformance {json}`; exits 1 when a case fails.
 */
import { providers as cpuProviders } from "@peftkit/backend-cpu"
import { providers as webgpuProviders } from "@peftkit/backend-webgpu"
import { formatReport, runConformance } from "@peftkit/conformance"
import { selectBackend } from "@peftkit/core"
import { Effect, Either } from "effect"

const all = [...webgpuProviders, ...cpuProviders]
const started = Date.now()
const selected = await Effect.runPromise(Effect.either(selectBackend("webgpu", all)))
if (Either.isLeft(selected)) {
  console.log(`@gpu-check:conformance ${JSON.stringify({ error: `no WebGPU backend: ${selected.left.message}` })}`)
  process.exit(1)
}
const info = selected.right.info
console.log(`WebGPU adapter: ${info.device}`)
const reports = await Effect.runPromise(runConformance("webgpu", all))
console.log(reports.map(formatReport).join("\n"))
const cases = reports.map((r) => ({
  name: r.name, passed: r.passed && r.leaked === 0 && r.maxError <= r.tolerance, maxError: r.maxError, tolerance: r.tolerance, worst: r.worst, leaked: r.leaked, seconds: r.seconds
}))
const passed = cases.filter((c) => c.passed).length
console.log(`@gpu-check:conformance ${JSON.stringify({ device: info.device, details: info.details, passed, failed: cases.length - passed, seconds: (Date.now() - started) / 1000, cases })}`)
process.exit(passed === cases.length && cases.length > 0 ? 0 : 1)

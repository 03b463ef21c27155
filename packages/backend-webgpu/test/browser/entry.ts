/** Browser entry of the conformance suite: WebGPU (the page's navigator.gpu) against tfjs's CPU backend. */
import { cpu } from "@peftkit/backend-cpu"
import { runConformance } from "@peftkit/conformance"
import { Effect } from "effect"
import { webgpu } from "../../src/index.js"

const target = globalThis as { __conformance?: unknown; __conformanceError?: string }
Effect.runPromise(runConformance("webgpu", [webgpu, cpu])).then(
  (reports) => (target.__conformance = reports),
  (error: unknown) => (target.__conformanceError = error instanceof Error ? error.message : String(error))
)

/**
 * Runs the conformance cases on a backend and on the CPU reference, in one process, and compares:
 * every number within the case's tolerance (relative to max(1, |reference|)), and the engine's
 * tensor count unchanged by the case on the backend under test.
 */
import { Backend, type BackendChoice, type BackendProvider } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { type CaseOutput, type ConformanceCase, conformanceCases } from "./Cases.js"

export interface CaseReport {
  readonly name: string
  readonly backend: string
  readonly tolerance: number
  /** Largest |backend - reference| / max(1, |reference|) over every output. */
  readonly maxError: number
  /** Where the largest error is, e.g. "gradA[17]". */
  readonly worst: string
  /** Tensors the case left behind on the backend under test (must be 0). */
  readonly leaked: number
  readonly seconds: number
  readonly passed: boolean
}

const compare = (reference: CaseOutput, actual: CaseOutput): { maxError: number; worst: string } => {
  let maxError = 0
  let worst = ""
  for (const [name, expected] of Object.entries(reference)) {
    const got = actual[name]
    if (got === undefined || got.length !== expected.length) return { maxError: Number.POSITIVE_INFINITY, worst: `${name} (missing or wrong size)` }
    for (let i = 0; i < expected.length; i++) {
      const error = Math.abs(got[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!))
      if (!(error <= maxError)) {
        maxError = Number.isNaN(error) ? Number.POSITIVE_INFINITY : error
        worst = `${name}[${i}]`
      }
    }
  }
  return { maxError, worst }
}

const onBackend = <A>(choice: BackendChoice, providers: ReadonlyArray<BackendProvider> | undefined, program: Effect.Effect<A>) =>
  Effect.provide(Effect.flatMap(Backend, () => program), Backend.layer(choice, providers))

/** Runs one case on the CPU reference and on `backend`; `providers` as for `Backend.layer`. */
export const runCase = (testCase: ConformanceCase, backend: BackendChoice, providers?: ReadonlyArray<BackendProvider>) =>
  Effect.gen(function* () {
    const reference = yield* onBackend("cpu", providers, testCase.run)
    return yield* onBackend(
      backend,
      providers,
      Effect.gen(function* () {
        const before = tf.memory().numTensors
        const started = performance.now()
        const actual = yield* testCase.run
        const seconds = (performance.now() - started) / 1000
        const leaked = tf.memory().numTensors - before
        const { maxError, worst } = compare(reference, actual)
        return {
          name: testCase.name,
          backend: tf.getBackend(),
          tolerance: testCase.tolerance,
          maxError,
          worst,
          leaked,
          seconds,
          passed: maxError <= testCase.tolerance && leaked === 0
        } satisfies CaseReport
      })
    )
  })

/** Every case on `backend`. Fails only if a backend cannot be loaded; mismatches are in the reports. */
export const runConformance = (backend: BackendChoice, providers?: ReadonlyArray<BackendProvider>) =>
  Effect.forEach(conformanceCases, (testCase) => runCase(testCase, backend, providers))

/** A one-line summary per case, for logs and READMEs. */
export const formatReport = (report: CaseReport): string =>
  `${report.passed ? "ok  " : "FAIL"} ${report.backend.padEnd(8)} ${report.name.padEnd(62)} max rel. error ${report.maxError.toExponential(2)} (tolerance ${report.tolerance.toExponential(0)})${report.leaked === 0 ? "" : `, ${report.leaked} tensors leaked`}, ${report.seconds.toFixed(2)} s`

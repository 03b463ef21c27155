/**
 * The worker side of the fuzz harness (see `harness.ts`): runs one fast-check property with the seed
 * and case count it is given, reporting the start and end of every case to the main thread, which
 * enforces the per-case time bound and the memory bound from outside.
 */
import fc from "fast-check"
import { parentPort, workerData } from "node:worker_threads"

/** A case's outcome: success, or a typed error with its tag (anything else fails the case). */
export type Outcome = { readonly ok: true } | { readonly ok: false; readonly tag: string }

export interface FuzzTarget<T> {
  readonly arbitrary: fc.Arbitrary<T>
  /** Runs one case; throws (or rejects) only on what is a bug: an untyped exception, a defect. */
  readonly run: (input: T) => Promise<Outcome> | Outcome
  /** The error tags this target may fail with. */
  readonly typed: ReadonlyArray<string>
}

const show = (value: unknown): string => {
  const text = fc.stringify(value)
  return text.length > 300 ? `${text.slice(0, 300)}... (${text.length} chars)` : text
}

/** Runs the target named by workerData.name; posts {type: "start" | "end" | "done"} messages. */
export const runFuzzTargets = async <T extends Record<string, unknown>>(targets: { readonly [K in keyof T]: FuzzTarget<T[K]> }): Promise<void> => {
  const { name, seed, numRuns } = workerData as { name: string; seed: number; numRuns: number }
  const target = (targets as Record<string, FuzzTarget<unknown> | undefined>)[name]
  if (target === undefined) throw new Error(`no fuzz target '${name}'`)
  let index = 0
  const outcomes: Record<string, number> = {}
  const result = await fc.check(
    fc.asyncProperty(target.arbitrary, async (input) => {
      const n = index++
      parentPort!.postMessage({ type: "start", n, input: show(input) })
      let outcome: Outcome
      try {
        outcome = await target.run(input)
      } catch (error) {
        throw new Error(`untyped exception: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`)
      }
      const key = outcome.ok ? "ok" : outcome.tag
      outcomes[key] = (outcomes[key] ?? 0) + 1
      if (!outcome.ok && !target.typed.includes(outcome.tag)) throw new Error(`unexpected error tag ${outcome.tag}`)
      const memory = process.memoryUsage()
      parentPort!.postMessage({ type: "end", n, arrayBuffers: memory.arrayBuffers, heapUsed: memory.heapUsed })
    }),
    { seed, numRuns, endOnFailure: true }
  )
  parentPort!.postMessage({
    type: "done",
    runs: result.numRuns,
    outcomes,
    failure: result.failed ? `seed ${seed}, case ${show(result.counterexample)}: ${String(result.errorInstance ?? result.error)}` : undefined
  })
}

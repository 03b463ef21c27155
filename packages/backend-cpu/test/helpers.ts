/** What the backend-cpu tests share: switching the active backend, and comparing values with a tolerance. */
import { Backend, type BackendProvider } from "@peftkit/core"
import { Effect } from "effect"
import { expect } from "vitest"
import { providers as defaultProviders } from "../src/index.js"

/** Makes `backend` the active tfjs backend, chosen from `providers` (this package's by default). */
export const use = (backend: "cpu" | "wasm", providers: ReadonlyArray<BackendProvider> = defaultProviders) =>
  Effect.runPromise(Effect.provide(Effect.void, Backend.layer(backend, providers)))

/** Every value within `tolerance` of the expected one, relative to max(1, |expected|). */
export const close = (actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number) => {
  expect(actual.length).toBe(expected.length)
  let worst = 0
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)))
  expect(worst).toBeLessThan(tolerance)
}

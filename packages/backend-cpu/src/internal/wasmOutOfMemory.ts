/**
 * Recognises the wasm backend running out of memory. A WebAssembly module addresses at most 4 GiB;
 * when its heap cannot grow further, an allocation inside a kernel fails in one of several ways
 * (XNNPACK's `Aborted()`, a `memory access out of bounds` trap, or a TypeError deeper in tfjs), none
 * of which says "memory"). A tensor allocation that fails says so itself (`allocationCheck.ts`); for
 * the rest, the heap never shrinks, so a heap near its ceiling when a kernel throws is the sign.
 * Either is reported as core's `BackendOutOfMemory` with what was held and what to do
 * (`BackendOps.outOfMemory`).
 */
import * as tf from "@tensorflow/tfjs-core"
import { HEAP_EXHAUSTED } from "./allocationCheck.js"

/** The most a wasm32 module's memory can grow to. */
export const WASM_ADDRESSABLE_BYTES = 4 * 2 ** 30
/** A heap this close to the ceiling cannot take another large allocation (growth goes in steps). */
const NEAR_CEILING = 0.75

const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`

/** The heap's size now, or undefined when wasm is not the active backend. */
const heapBytes = (): number | undefined => {
  const backend = tf.engine().backend as unknown as { wasm?: { HEAPU8?: Uint8Array } } | undefined
  return backend?.wasm?.HEAPU8?.length
}

/** The engine's tensor bytes, or "unknown" with no backend registered. */
const tensorBytes = (): string => {
  try {
    return gib(tf.memory().numBytes)
  } catch {
    return "unknown"
  }
}

/** For `BackendOps.outOfMemory`: a sentence when `error` looks like the heap ran out, else undefined. */
export const wasmOutOfMemory = (error: unknown, heap: number | undefined = heapBytes()): string | undefined => {
  if (heap === undefined || !(error instanceof Error)) return undefined
  const exhausted = error instanceof RangeError && error.message.startsWith(HEAP_EXHAUSTED)
  const nearCeiling = heap >= NEAR_CEILING * WASM_ADDRESSABLE_BYTES &&
    (error instanceof WebAssembly.RuntimeError || error instanceof TypeError || error instanceof RangeError)
  if (!exhausted && !nearCeiling) return undefined
  const aborted = error instanceof WebAssembly.RuntimeError && /Aborted/.test(error.message)
  return (
    `the wasm heap is at ${gib(heap)} of the 4 GiB a WebAssembly module can address (tensors: ${tensorBytes()}), ` +
    `and a kernel could not allocate (${error.message.split("\n")[0]}). Use a smaller batch or max length, adapters on fewer ` +
    `modules, or a GPU backend (webgpu, node-gpu)` +
    (aborted ? "; the wasm backend cannot continue in this process after an abort: start a new one" : "")
  )
}

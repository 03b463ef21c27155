/**
 * tfjs-backend-wasm 4.22 does not check its allocations: when the heap cannot grow, `_malloc`
 * returns 0 and the tensor is registered at address 0 and written there, over the heap's own
 * start, before anything fails (a later trap, or silently wrong numbers). This wraps the module's
 * `_malloc` so that a failed allocation throws a `RangeError` saying so before any write;
 * `wasmOutOfMemory.ts` turns it into core's `BackendOutOfMemory`.
 */
import * as tf from "@tensorflow/tfjs-core"

interface WasmModule {
  _malloc(bytes: number): number
  _free(pointer: number): void
  readonly HEAPU8: Uint8Array
}

/** The message prefix `wasmOutOfMemory` recognises. */
export const HEAP_EXHAUSTED = "wasm heap exhausted"

const checked = new WeakSet<object>()

/** Installs the check on the active wasm backend's module (once per module). */
export const installAllocationCheck = (): void => {
  const module = (tf.findBackend("wasm") as unknown as { wasm?: WasmModule } | undefined)?.wasm
  if (module === undefined || checked.has(module)) return
  checked.add(module)
  // Emscripten's export starts as a stub that replaces itself with the real function on its first
  // call (and would replace a wrapper installed before that): call it once first.
  module._free(module._malloc(16))
  const malloc = module._malloc
  module._malloc = (bytes: number): number => {
    const at = malloc(bytes)
    if (at === 0 && bytes > 0) {
      throw new RangeError(`${HEAP_EXHAUSTED}: cannot allocate ${(bytes / 2 ** 20).toFixed(1)} MiB with the heap at ${(module.HEAPU8.length / 2 ** 30).toFixed(2)} GiB`)
    }
    return at
  }
}

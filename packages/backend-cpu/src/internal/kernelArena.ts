/**
 * Operands of peftkit's own WebAssembly kernels. Each kernel instance has its own memory; a call
 * lays its operands out past the instance's static data (16-byte aligned, growing the memory to
 * fit), copies tensors in from the tfjs heap and results out into new tfjs outputs.
 */
import * as tf from "@tensorflow/tfjs-core"

/** What the kernels use of tfjs-backend-wasm's backend. */
export interface WasmBackendInternals {
  readonly wasm: { readonly HEAPU8: Uint8Array }
  readonly dataIdMap: { get(dataId: object): { readonly memoryOffset: number } }
  makeOutput(shape: ReadonlyArray<number>, dtype: tf.DataType): tf.TensorInfo
}

/** One call's layout in a kernel instance's memory. */
export class KernelArena {
  private next: number
  constructor(
    private readonly memory: WebAssembly.Memory,
    heapBase: number
  ) {
    this.next = heapBase
  }

  take(bytes: number): number {
    const at = Math.ceil(this.next / 16) * 16
    this.next = at + bytes
    const short = this.next - this.memory.buffer.byteLength
    if (short > 0) this.memory.grow(Math.ceil(short / 65536))
    return at
  }

  /** Copies a float32 tensor's bytes from the tfjs heap into the arena; 0 for none. */
  copyIn(backend: WasmBackendInternals, x: tf.TensorInfo | undefined): number {
    if (x === undefined) return 0
    const bytes = tf.util.sizeFromShape([...x.shape]) * 4
    const at = this.take(bytes)
    const from = backend.dataIdMap.get(x.dataId).memoryOffset
    new Uint8Array(this.memory.buffer, at, bytes).set(backend.wasm.HEAPU8.subarray(from, from + bytes))
    return at
  }

  /** A new float32 tfjs output of `shape` filled from the arena at `at`. */
  copyOut(backend: WasmBackendInternals, at: number, shape: ReadonlyArray<number>): tf.TensorInfo {
    const out = backend.makeOutput(shape, "float32")
    const bytes = tf.util.sizeFromShape([...shape]) * 4
    // HEAPU8 is read after makeOutput: allocating may grow (and replace) the heap's buffer.
    backend.wasm.HEAPU8.set(new Uint8Array(this.memory.buffer, at, bytes), backend.dataIdMap.get(out.dataId).memoryOffset)
    return out
  }
}

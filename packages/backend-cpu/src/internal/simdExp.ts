/**
 * A SIMD `Exp` for the wasm backend. tfjs-backend-wasm 4.22's Exp calls libm's expf one element at
 * a time; the cross-entropy over the vocabulary takes two full-size exps a step (about 5% of a
 * stories260K step). `kernels/elementwise.ts` computes 4 at a time (cephes' polynomial, within 2
 * float32 ulps of expf; 0 below -87.34, +Infinity above 88.38, NaN kept) in its own small instance:
 * the input is copied in, exponentiated in place, and copied into the output.
 */
import * as tf from "@tensorflow/tfjs-core"
import { elementwiseWasm } from "./kernels/elementwiseWasm.js"
import { decodeBase64 } from "./decodeBase64.js"
import { replaceWasmKernel } from "./replaceWasmKernel.js"

interface ElementwiseInstance {
  readonly memory: WebAssembly.Memory
  heapBase(): number
  expInPlace(x: number, n: number): void
}

interface WasmBackendInternals {
  readonly wasm: { readonly HEAPU8: Uint8Array }
  readonly dataIdMap: { get(dataId: object): { readonly memoryOffset: number } }
  makeOutput(shape: ReadonlyArray<number>, dtype: tf.DataType): tf.TensorInfo
}

let installed: Promise<boolean> | undefined

/** Replaces the wasm backend's Exp (once per process); false where the kernel cannot load (no SIMD). */
export const installSimdExp = (): Promise<boolean> => (installed ??= install())

const install = async (): Promise<boolean> => {
  let kernel: ElementwiseInstance
  try {
    const source = (await WebAssembly.instantiate(decodeBase64(elementwiseWasm) as BufferSource, {})) as unknown as WebAssembly.WebAssemblyInstantiatedSource
    kernel = source.instance.exports as unknown as ElementwiseInstance
  } catch {
    return false
  }
  const base = Math.ceil(kernel.heapBase() / 16) * 16
  return replaceWasmKernel(tf.Exp, (stock) => (args) => {
    const x = args.inputs["x"] as tf.TensorInfo
    if (x.dtype !== "float32") return stock.kernelFunc(args)
    const backend = args.backend as unknown as WasmBackendInternals
    const n = tf.util.sizeFromShape(x.shape)
    const short = base + 4 * n - kernel.memory.buffer.byteLength
    if (short > 0) kernel.memory.grow(Math.ceil(short / 65536))
    const from = backend.dataIdMap.get(x.dataId).memoryOffset
    new Uint8Array(kernel.memory.buffer, base, 4 * n).set(backend.wasm.HEAPU8.subarray(from, from + 4 * n))
    kernel.expInPlace(base, n)
    const out = backend.makeOutput(x.shape, "float32")
    // HEAPU8 is read after makeOutput: allocating may grow (and replace) the heap's buffer.
    backend.wasm.HEAPU8.set(new Uint8Array(kernel.memory.buffer, base, 4 * n), backend.dataIdMap.get(out.dataId).memoryOffset)
    return out
  })
}

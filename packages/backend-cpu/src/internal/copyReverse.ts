/**
 * A faster `Reverse` for tfjs-backend-wasm 4.22, whose kernel computes a strided index per element
 * (a [n, 2, d/2] swap takes several times a plain copy). RoPE's pair swap reverses one axis of that
 * shape, forward and backward. Here a reversal along one axis (axes of size 1 ignored) is a copy of
 * contiguous runs inside the wasm heap; anything else goes to tfjs's own kernel, unchanged.
 */
import * as tf from "@tensorflow/tfjs-core"
import { replaceWasmKernel } from "./replaceWasmKernel.js"

interface WasmBackendInternals {
  readonly wasm: { readonly HEAPF32: Float32Array; readonly HEAP32: Int32Array; readonly HEAPU8: Uint8Array }
  readonly dataIdMap: { get(dataId: object): { readonly memoryOffset: number } }
  makeOutput(shape: ReadonlyArray<number>, dtype: tf.DataType): tf.TensorInfo
  incRef(dataId: object): void
}

const heapOf = (backend: WasmBackendInternals, dtype: tf.DataType): { heap: Float32Array | Int32Array | Uint8Array; width: number } | undefined =>
  dtype === "float32" ? { heap: backend.wasm.HEAPF32, width: 4 } : dtype === "int32" ? { heap: backend.wasm.HEAP32, width: 4 } : dtype === "bool" ? { heap: backend.wasm.HEAPU8, width: 1 } : undefined

/** Replaces the wasm backend's Reverse kernel (once per process; later calls do nothing). */
export const installCopyReverse = (): void => {
  replaceWasmKernel(tf.Reverse, (original) => (args) => {
    const x = args.inputs["x"] as tf.TensorInfo
    const { dims } = args.attrs as unknown as tf.ReverseAttrs
    const backend = args.backend as unknown as WasmBackendInternals
    if (x.shape.length === 0 || heapOf(backend, x.dtype) === undefined) return original.kernelFunc(args)
    const axes = tf.util.parseAxisParam(dims, x.shape).filter((axis) => x.shape[axis]! > 1)
    if (axes.length > 1) return original.kernelFunc(args)
    if (axes.length === 0) {
      // Nothing moves: share the input's data, as the Reshape kernel does.
      backend.incRef(x.dataId)
      return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype }
    }
    const axis = axes[0]!
    const outer = tf.util.sizeFromShape(x.shape.slice(0, axis))
    const length = x.shape[axis]!
    const inner = tf.util.sizeFromShape(x.shape.slice(axis + 1))
    const out = backend.makeOutput(x.shape, x.dtype)
    // The heap is read after makeOutput: allocating may grow (and replace) its buffer.
    const { heap, width } = heapOf(backend, x.dtype)!
    const from = backend.dataIdMap.get(x.dataId).memoryOffset / width
    const to = backend.dataIdMap.get(out.dataId).memoryOffset / width
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < length; i++) {
        const source = from + (o * length + length - 1 - i) * inner
        const target = to + (o * length + i) * inner
        if (inner >= 32) heap.copyWithin(target, source, source + inner)
        else for (let j = 0; j < inner; j++) heap[target + j] = heap[source + j]!
      }
    }
    return out
  })
}

/**
 * A faster `Slice` for tfjs-backend-wasm 4.22. Its kernel reads the whole input back
 * (`readSync`, a copy of every element) before copying out the slice, so n slices of one tensor
 * cost n copies of all of it. Blockwise attention slices per block, so this matters.
 *
 * Contiguous slices (any slice that only narrows the first non-unit axis) are copied inside the
 * wasm heap, element count = the slice's; a slice equal to its input shares the input's data
 * (as the Reshape kernel does). Everything else goes to tfjs's own kernel, unchanged.
 */
import * as tf from "@tensorflow/tfjs-core"
import { replaceWasmKernel } from "./replaceWasmKernel.js"

interface WasmBackendInternals {
  readonly wasm: { readonly HEAPU8: Uint8Array }
  readonly dataIdMap: { get(dataId: object): { readonly memoryOffset: number } }
  makeOutput(shape: ReadonlyArray<number>, dtype: tf.DataType): tf.TensorInfo
  incRef(dataId: object): void
}

const bytesPerElement: Partial<Record<tf.DataType, number>> = { float32: 4, int32: 4, bool: 1 }

/** Replaces the wasm backend's Slice kernel (once per process; later calls do nothing). */
export const installContinuousSlice = (): void => {
  replaceWasmKernel(tf.Slice, (original) => (args) => {
    const x = args.inputs["x"] as tf.TensorInfo
    const attrs = args.attrs as unknown as tf.SliceAttrs
    const width = bytesPerElement[x.dtype]
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin, attrs.size)
    if (width === undefined || !tf.slice_util.isSliceContinous(x.shape, begin, size)) return original.kernelFunc(args)
    const backend = args.backend as unknown as WasmBackendInternals
    if (tf.util.arraysEqual(size, x.shape)) {
      backend.incRef(x.dataId)
      return { dataId: x.dataId, shape: [...size], dtype: x.dtype }
    }
    const out = backend.makeOutput(size, x.dtype)
    const count = tf.util.sizeFromShape(size)
    if (count === 0) return out
    const start = backend.dataIdMap.get(x.dataId).memoryOffset + tf.slice_util.computeFlatOffset(begin, tf.util.computeStrides(x.shape)) * width
    // HEAPU8 is re-read after makeOutput: allocating may grow (and replace) the heap's buffer.
    backend.wasm.HEAPU8.copyWithin(backend.dataIdMap.get(out.dataId).memoryOffset, start, start + count * width)
    return out
  })
}

/**
 * An `Identity` for tfjs-backend-wasm 4.22 that shares its input's data (reference counted, as the
 * Reshape kernel and tfjs's CPU backend do) instead of copying it. The tfjs engine clones every
 * input a kernel saves for its gradient, so with a copying Identity each training step copied every
 * frozen weight a matmul reads (and each copy, being new data, lost the kept transpose and the
 * worker threads' resident copy of it). Tensors are immutable, so sharing is safe.
 */
import * as tf from "@tensorflow/tfjs-core"
import { replaceWasmKernel } from "./replaceWasmKernel.js"

interface WasmBackendInternals {
  incRef(dataId: object): void
}

/** Replaces the wasm backend's Identity kernel (once per process; later calls do nothing). */
export const installSharedIdentity = (): void => {
  replaceWasmKernel(tf.Identity, (original) => (args) => {
    const x = args.inputs["x"] as tf.TensorInfo
    if (x.dtype === "string") return original.kernelFunc(args)
    ;(args.backend as unknown as WasmBackendInternals).incRef(x.dataId)
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype }
  })
}

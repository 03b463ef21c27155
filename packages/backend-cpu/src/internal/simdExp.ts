/**
 * A SIMD `Exp` for the wasm backend. tfjs-backend-wasm 4.22's Exp calls libm's expf one element at
 * a time; the cross-entropy over the vocabulary takes two full-size exps a step (about 5% of a
 * stories260K step). `kernels/elementwise.ts` computes 4 at a time (cephes' polynomial, within 2
 * float32 ulps of expf; 0 below -87.34, +Infinity above 88.38, NaN kept) in its own small instance:
 * the input is copied in, exponentiated in place, and copied into the output.
 */
import * as tf from "@tensorflow/tfjs-core"
import { loadElementwise } from "./elementwiseKernels.js"
import { KernelArena, type WasmBackendInternals } from "./kernelArena.js"
import { replaceWasmKernel } from "./replaceWasmKernel.js"

/** Replaces the wasm backend's Exp (once per process); false where the kernel cannot load (no SIMD). */
export const installSimdExp = async (): Promise<boolean> => {
  const kernel = await loadElementwise()
  if (kernel === undefined) return false
  return replaceWasmKernel(tf.Exp, (stock) => (args) => {
    const x = args.inputs["x"] as tf.TensorInfo
    if (x.dtype !== "float32") return stock.kernelFunc(args)
    const backend = args.backend as unknown as WasmBackendInternals
    const arena = new KernelArena(kernel.memory, kernel.heapBase())
    const at = arena.copyIn(backend, x)
    kernel.expInPlace(at, tf.util.sizeFromShape(x.shape))
    return arena.copyOut(backend, at, x.shape)
  })
}

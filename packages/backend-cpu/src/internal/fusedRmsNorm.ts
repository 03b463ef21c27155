/**
 * The wasm backend's `rmsNorm` op (core's `BackendOps`): RMSNorm as one kernel per direction
 * (`kernels/rmsNorm.ts`, SIMD) instead of about 18 tfjs kernels, saving only x and each row's
 * 1/rms for the backward (the plain form keeps squares, means and products). Gradients for x and
 * the weight (trained in full fine-tuning). Tested against the plain form on the CPU backend.
 */
import * as tf from "@tensorflow/tfjs-core"
import { type ElementwiseInstance, loadElementwise } from "./elementwiseKernels.js"
import { KernelArena, type WasmBackendInternals } from "./kernelArena.js"

/** Kernel names, as `tf.profile` lists them. */
export const FusedRmsNorm = "PeftkitRmsNorm"
export const FusedRmsNormGrad = "PeftkitRmsNormGrad"

let kernel: ElementwiseInstance | undefined

const rowsOf = (x: tf.TensorInfo): [number, number] => {
  const d = x.shape[x.shape.length - 1]!
  return [tf.util.sizeFromShape([...x.shape]) / d, d]
}

const forwardKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const k = kernel!
  const wasmBackend = backend as unknown as WasmBackendInternals
  const { x, weight } = inputs as Record<string, tf.TensorInfo>
  const [rows, d] = rowsOf(x!)
  const arena = new KernelArena(k.memory, k.heapBase())
  const xa = arena.copyIn(wasmBackend, x)
  const wa = arena.copyIn(wasmBackend, weight)
  const y = arena.take(rows * d * 4)
  const r = arena.take(rows * 4)
  k.rmsNormForward(xa, wa, y, r, rows, d, (attrs as { eps: number }).eps)
  return [arena.copyOut(wasmBackend, y, x!.shape), arena.copyOut(wasmBackend, r, [rows])]
}

const backwardKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const k = kernel!
  const wasmBackend = backend as unknown as WasmBackendInternals
  const { x, weight, rstd, dy } = inputs as Record<string, tf.TensorInfo>
  const [rows, d] = rowsOf(x!)
  const arena = new KernelArena(k.memory, k.heapBase())
  const [xa, wa, ra, dya] = [x, weight, rstd, dy].map((t) => arena.copyIn(wasmBackend, t)) as [number, number, number, number]
  const dx = arena.take(rows * d * 4)
  const dw = arena.take(d * 4)
  k.rmsNormBackward(xa, wa, ra, dya, dx, dw, rows, d)
  return [arena.copyOut(wasmBackend, dx, x!.shape), arena.copyOut(wasmBackend, dw, [d])]
}

/** Loads the kernel and registers both directions for wasm (once per process); false without SIMD. */
export const loadFusedRmsNorm = async (): Promise<boolean> => {
  if (kernel !== undefined) return true
  const loaded = await loadElementwise()
  if (loaded === undefined) return false
  kernel = loaded
  tf.registerKernel({ kernelName: FusedRmsNorm, backendName: "wasm", kernelFunc: forwardKernel })
  tf.registerKernel({ kernelName: FusedRmsNormGrad, backendName: "wasm", kernelFunc: backwardKernel })
  return true
}

/** The `rmsNorm` op: x [..., d] float32 and weight [d]; undefined (the plain form) otherwise. */
export const fusedRmsNorm = (x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor | undefined => {
  const d = x.shape[x.shape.length - 1]
  if (kernel === undefined || x.dtype !== "float32" || weight.dtype !== "float32" || weight.shape.length !== 1 || weight.shape[0] !== d) return undefined
  const norm = tf.customGrad((xIn, wIn, save) => {
    const [y, rstd] = tf.engine().runKernel(FusedRmsNorm, { x: xIn as tf.Tensor, weight: wIn as tf.Tensor }, { eps } as unknown as tf.NamedAttrMap) as unknown as [tf.Tensor, tf.Tensor]
    ;(save as tf.GradSaveFunc)([xIn as tf.Tensor, wIn as tf.Tensor, rstd])
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: Array<tf.Tensor>) => {
        const [sx, sw, sr] = saved as [tf.Tensor, tf.Tensor, tf.Tensor]
        return tf.engine().runKernel(FusedRmsNormGrad, { x: sx, weight: sw, rstd: sr, dy }, {}) as unknown as Array<tf.Tensor>
      }
    }
  })
  return norm(x, weight)
}

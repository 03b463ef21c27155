/**
 * Replaces one of tfjs-backend-wasm's kernels with peftkit's, keeping the stock one for the cases
 * the replacement hands back. Kernels are process-global in tfjs, so a replacement is installed at
 * most once per kernel; later calls do nothing.
 */
import * as tf from "@tensorflow/tfjs-core"

const replaced = new Set<string>()

/** `make` receives the stock kernel and returns the new one; false when there was nothing to replace. */
export const replaceWasmKernel = (kernelName: string, make: (stock: tf.KernelConfig) => tf.KernelFunc): boolean => {
  if (replaced.has(kernelName)) return true
  const stock = tf.getKernel(kernelName, "wasm")
  if (stock === undefined) return false
  replaced.add(kernelName)
  tf.unregisterKernel(kernelName, "wasm")
  tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc: make(stock) })
  return true
}

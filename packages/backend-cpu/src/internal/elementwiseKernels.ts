/**
 * The instance of `kernels/elementwise.ts` (Exp, RMSNorm), loaded once per process and shared by
 * the kernels that use it. Undefined where the runtime cannot run it (no WebAssembly SIMD).
 */
import { decodeBase64 } from "./decodeBase64.js"
import { elementwiseWasm } from "./kernels/elementwiseWasm.js"

export interface ElementwiseInstance {
  readonly memory: WebAssembly.Memory
  heapBase(): number
  expInPlace(x: number, n: number): void
  rmsNormForward(x: number, w: number, y: number, r: number, rows: number, d: number, eps: number): void
  rmsNormBackward(x: number, w: number, r: number, dy: number, dx: number, dw: number, rows: number, d: number): void
}

let loaded: Promise<ElementwiseInstance | undefined> | undefined

export const loadElementwise = (): Promise<ElementwiseInstance | undefined> =>
  (loaded ??= WebAssembly.instantiate(decodeBase64(elementwiseWasm) as BufferSource, {}).then(
    (source) => (source as unknown as WebAssembly.WebAssemblyInstantiatedSource).instance.exports as unknown as ElementwiseInstance,
    () => undefined
  ))

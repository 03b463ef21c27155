// Elementwise and row-wise kernels for the wasm backend: Exp (tfjs-backend-wasm's kernel calls
// libm's expf per element; the cross-entropy over the vocabulary takes two full-size exps a step)
// and RMSNorm (rmsNorm.ts: one kernel per direction instead of about 18 tfjs kernels). Compiled by
// scripts/build-kernels.mjs into src/internal/kernels/elementwiseWasm.ts.

import { exp1, exp4 } from "./exp"

export { rmsNormBackward, rmsNormForward } from "./rmsNorm"

export function heapBase(): usize {
  return __heap_base
}

// x[i] = exp(x[i]) for i in [0, n), in place.
export function expInPlace(x: usize, n: i32): void {
  let i = 0
  for (; i + 4 <= n; i += 4) {
    const at = x + (<usize>i << 2)
    v128.store(at, exp4(v128.load(at)))
  }
  for (; i < n; i++) {
    const at = x + (<usize>i << 2)
    store<f32>(at, exp1(load<f32>(at)))
  }
}

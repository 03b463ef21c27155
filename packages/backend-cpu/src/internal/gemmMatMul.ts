/**
 * The wasm backend's float32 matrix products on peftkit's own GEMM kernel (`kernels/gemm.ts`,
 * SIMD), in Node on worker threads sharing the kernel's memory (`kernelThreads.ts`, rows split
 * between them), on one thread elsewhere.
 *
 * Why not XNNPACK (through tfjs-backend-wasm 4.22): it runs a product on one thread only, so using
 * both cores took a second tfjs instance in a worker holding its own copy of every right operand;
 * it cannot read a transposed operand, so every frozen weight was also kept transposed; and it keeps
 * a packed copy of each right operand it has seen. On the bench's wide shape that was W held six
 * to eight times. Here nothing is kept between calls: the operands are copied into the kernel's
 * memory, B is packed into column panels (read along its rows or, transposed, along its columns),
 * a transposed A is copied into row order or the product taken transposed, whichever moves less,
 * and the result is copied back. The kernel's memory grows to the largest call's operands.
 *
 * Products with a batch dimension above 1 or non-float32 operands go to the kernel registered
 * before (`transposeFreeMatMul.ts`, XNNPACK).
 */
import * as tf from "@tensorflow/tfjs-core"
import { KernelArena, type WasmBackendInternals } from "./kernelArena.js"
import { matrixShape } from "./matrixShape.js"
import { replaceWasmKernel } from "./replaceWasmKernel.js"
import { type KernelRunner, singleThreadRunner, threadedRunner } from "./kernelRunner.js"
import { gemmSharedWasm } from "./kernels/gemmSharedWasm.js"
import { gemmWasm } from "./kernels/gemmWasm.js"

type GemmEntry = "transposeInto" | "packB" | "gemm"

/** Below this many multiply-adds a product stays on one thread: a hand-off costs tens of microseconds. */
const MIN_PARALLEL_WORK = 2 ** 20

/** C [m, n] = A [m, k] (rows at `a`) x B, packed at `packed`: rows split into ranges of 4 between threads. */
const multiply = (runner: KernelRunner<GemmEntry>, a: number, packed: number, c: number, m: number, k: number, n: number) => {
  const threads = m * k * n >= MIN_PARALLEL_WORK ? runner.threads : 1
  const tiles = Math.ceil(m / 4)
  runner.run("gemm", (_, start, end) => [a, packed, c, k, n, start * 4, Math.min(m, end * 4)], tiles, threads)
}

/** Packs B [k, n] (or [n, k] when transposed) into panels of 8 columns; panels split between threads. */
const pack = (runner: KernelRunner<GemmEntry>, b: number, packed: number, k: number, n: number, transB: boolean) => {
  const panels = Math.ceil(n / 8)
  const threads = k * n >= MIN_PARALLEL_WORK / 8 ? runner.threads : 1
  runner.run("packB", (_, start, end) => [b, packed, k, n, transB ? 1 : 0, start, end], panels, threads)
}

let runner: KernelRunner<GemmEntry> | undefined

/**
 * Loads the kernel (in Node on `threads` threads, default one per core) and wraps the wasm backend's
 * BatchMatMul, once per process. Resolves to the threads it runs on, or 0 where the runtime cannot
 * run it (no WebAssembly SIMD): products then stay on XNNPACK.
 */
export const installGemmMatMul = async (threads: number | undefined): Promise<number> => {
  if (runner !== undefined) return runner.threads
  if (tf.getKernel(tf.BatchMatMul, "wasm") === undefined) return 0
  try {
    runner = (await threadedRunner<GemmEntry>(gemmSharedWasm, threads, "matmul")) ?? (await singleThreadRunner<GemmEntry>(gemmWasm))
  } catch {
    return 0
  }
  const kernel = runner
  replaceWasmKernel(tf.BatchMatMul, (previous) => (args) => {
    const a = args.inputs["a"] as tf.TensorInfo
    const b = args.inputs["b"] as tf.TensorInfo
    const attrs = args.attrs as unknown as tf.BatchMatMulAttrs
    const aShape = matrixShape(a)
    const bShape = matrixShape(b)
    if (aShape === undefined || bShape === undefined || a.dtype !== "float32" || b.dtype !== "float32") return previous.kernelFunc(args)
    const transA = attrs.transposeA === true
    const transB = attrs.transposeB === true
    const [m, k] = transA ? [aShape[1], aShape[0]] : aShape
    const n = transB ? bShape[0] : bShape[1]
    if (k !== (transB ? bShape[1] : bShape[0]) || m === 0 || n === 0 || k === 0) return previous.kernelFunc(args)
    const backend = args.backend as unknown as WasmBackendInternals
    const arena = new KernelArena(kernel.memory, kernel.heapBase)
    const aIn = arena.copyIn(backend, a)
    const bIn = arena.copyIn(backend, b)
    const c = arena.take(m * n * 4)
    // A transposed A is copied into row order (m k floats moved), or the product is taken
    // transposed, C^T = op(B)^T A with A as given ((transB ? 0 : k n) + m n moved): a rank-8
    // LoRA factor's gradient over 2048 tokens moves 8 times less that way.
    if (transA && (transB ? 0 : k * n) + m * n < m * k) {
      let left = bIn
      if (!transB) {
        left = arena.take(k * n * 4)
        kernel.run("transposeInto", () => [bIn, left, k, n], 1, 1)
      }
      const packed = arena.take(k * Math.ceil(m / 8) * 8 * 4)
      pack(kernel, aIn, packed, k, m, false)
      const cT = arena.take(m * n * 4)
      multiply(kernel, left, packed, cT, n, k, m)
      kernel.run("transposeInto", () => [cT, c, n, m], 1, 1)
    } else {
      let rowsOfA = aIn
      if (transA) {
        rowsOfA = arena.take(m * k * 4)
        kernel.run("transposeInto", () => [aIn, rowsOfA, k, m], 1, 1)
      }
      const packed = arena.take(k * Math.ceil(n / 8) * 8 * 4)
      pack(kernel, bIn, packed, k, n, transB)
      multiply(kernel, rowsOfA, packed, c, m, k, n)
    }
    const leading = new Array<number>(Math.max(a.shape.length, b.shape.length) - 2).fill(1)
    return arena.copyOut(backend, c, [...leading, m, n])
  })
  return kernel.threads
}

/**
 * Matrix products on the wasm backend's fast path, whatever transposes they ask for.
 *
 * tfjs-backend-wasm 4.22 sends a matmul to XNNPACK only when neither operand is transposed and the
 * batch is 1; anything else falls back to a scalar blocked loop (batch_mat_mul_impl.cc's
 * slow_batch_matmul), several times slower. tfjs's own matMul gradient asks for transposed
 * products, so even a plain `x W` trains on the slow path. These kernels replace BatchMatMul and
 * _FusedMatMul for "wasm": a transposed operand is materialised with the wasm Transpose kernel and
 * the untransposed product runs on XNNPACK. For BatchMatMul the cheaper of two formulations is
 * taken: transpose the operands, or compute op(b)^T op(a)^T and transpose the result.
 *
 * Frozen weights: an operand asked for transposed a second time with the same data (a frozen W in
 * x W^T, step after step) keeps its transpose, so neither the transpose nor XNNPACK's packing of it (cached by
 * data id) is redone per step. A kept transpose is freed with its source's data (the backend's
 * `disposeData` is wrapped for that), so an assigned W (merge, COLA knot, checkpoint) never meets a
 * stale one. Kept transposes live in the wasm heap outside tfjs's tensor accounting
 * (`tf.memory()`), like XNNPACK's packed copies.
 *
 * _FusedMatMul with transposeB and a bias is also wrong in tfjs-backend-wasm 4.22; materialising
 * the transpose first avoids that bug.
 */
import * as tf from "@tensorflow/tfjs-core"
import { matrixShape } from "./matrixShape.js"

interface WasmBackendInternals {
  readonly dataIdMap: { has(dataId: object): boolean }
  disposeData(dataId: object, force?: boolean): boolean
}

type KernelFunc = tf.KernelConfig["kernelFunc"]

interface Kept {
  readonly rows: number
  readonly cols: number
  readonly transposed: tf.TensorInfo
}

/** Source data id -> its kept transpose. */
const kept = new Map<object, Kept>()
/** Data ids transposed once already: the next transpose of one is kept. */
const seen = new WeakSet<object>()

let installed = false

/** How many transposes are kept now (for tests). */
export const keptTransposes = (): number => kept.size

/** A float32 [1, ..., 1, rows, cols] -> its 2D view, or undefined. */
const as2d = (x: tf.TensorInfo): tf.TensorInfo | undefined => {
  const shape = matrixShape(x)
  if (shape === undefined || x.dtype !== "float32") return undefined
  return x.shape.length === 2 ? x : { dataId: x.dataId, shape, dtype: x.dtype }
}

/** The broadcast output shape of op(a) op(b) for inputs whose leading dimensions are all 1. */
const outputShape = (a: tf.TensorInfo, b: tf.TensorInfo, rows: number, cols: number): Array<number> =>
  [...new Array<number>(Math.max(a.shape.length, b.shape.length) - 2).fill(1), rows, cols]

/** Replaces the wasm backend's BatchMatMul and _FusedMatMul (once per process). */
export const installTransposeFreeMatMul = (): void => {
  if (installed) return
  const stock = tf.getKernel(tf.BatchMatMul, "wasm")
  const stockFused = tf.getKernel(tf._FusedMatMul, "wasm")
  const transposeKernel = tf.getKernel(tf.Transpose, "wasm")
  const backend = tf.findBackend("wasm") as unknown as WasmBackendInternals | null
  if (stock === undefined || stockFused === undefined || transposeKernel === undefined || backend === null) return
  installed = true

  // A kept transpose goes with its source's data.
  const disposeData = backend.disposeData.bind(backend)
  backend.disposeData = (dataId: object, force?: boolean): boolean => {
    const freed = disposeData(dataId, force)
    if (freed) {
      const entry = kept.get(dataId)
      if (entry !== undefined) {
        kept.delete(dataId)
        disposeData(entry.transposed.dataId, true)
      }
    }
    return freed
  }

  const transpose = (x: tf.TensorInfo, be: tf.KernelBackend): tf.TensorInfo =>
    transposeKernel.kernelFunc({ inputs: { x }, backend: be, attrs: { perm: [1, 0] } }) as tf.TensorInfo

  const keptOf = (x: tf.TensorInfo): tf.TensorInfo | undefined => {
    const entry = kept.get(x.dataId)
    return entry !== undefined && entry.rows === x.shape[0] && entry.cols === x.shape[1] ? entry.transposed : undefined
  }

  /** x^T for a 2D x, and whether the caller must free it (false when kept). */
  const transposed = (x: tf.TensorInfo, be: tf.KernelBackend): { readonly info: tf.TensorInfo; readonly temporary: boolean } => {
    const existing = keptOf(x)
    if (existing !== undefined) return { info: existing, temporary: false }
    const info = transpose(x, be)
    if (!seen.has(x.dataId) || kept.has(x.dataId)) {
      seen.add(x.dataId)
      return { info, temporary: true }
    }
    kept.set(x.dataId, { rows: x.shape[0]!, cols: x.shape[1]!, transposed: info })
    return { info, temporary: false }
  }

  /** An untransposed 2D product through whatever BatchMatMul is registered now (the row-parallel one in Node). */
  const plain = (a: tf.TensorInfo, b: tf.TensorInfo, be: tf.KernelBackend): tf.TensorInfo =>
    tf.getKernel(tf.BatchMatMul, "wasm")!.kernelFunc({ inputs: { a, b }, backend: be, attrs: { transposeA: false, transposeB: false } }) as tf.TensorInfo

  const free = (be: tf.KernelBackend, ...parts: ReadonlyArray<{ readonly info: tf.TensorInfo; readonly temporary: boolean }>) => {
    for (const part of parts) if (part.temporary) be.disposeData(part.info.dataId)
  }

  /** A transposed product's 2D operands and flags; undefined when the stock kernel should run it as it is. */
  const transposedOperands = (args: Parameters<KernelFunc>[0]) => {
    const attrs = args.attrs as unknown as tf.BatchMatMulAttrs
    const transposeA = attrs.transposeA === true
    const transposeB = attrs.transposeB === true
    const a = as2d(args.inputs["a"] as tf.TensorInfo)
    const b = as2d(args.inputs["b"] as tf.TensorInfo)
    if ((!transposeA && !transposeB) || a === undefined || b === undefined) return undefined
    return { attrs, transposeA, transposeB, a, b, be: args.backend as tf.KernelBackend }
  }

  const batchMatMul: KernelFunc = (args) => {
    const operands = transposedOperands(args)
    if (operands === undefined) return stock.kernelFunc(args)
    const { transposeA, transposeB, a, b, be } = operands
    const size = (x: tf.TensorInfo) => x.shape[0]! * x.shape[1]!
    const rows = transposeA ? a.shape[1]! : a.shape[0]!
    const cols = transposeB ? b.shape[0]! : b.shape[1]!
    // An operand transposed before costs nothing: its transpose is (or is about to be) kept.
    const cost = (x: tf.TensorInfo) => (keptOf(x) !== undefined || seen.has(x.dataId) ? 0 : size(x))
    const direct = (transposeA ? cost(a) : 0) + (transposeB ? cost(b) : 0)
    const flipped = (transposeB ? 0 : size(b)) + (transposeA ? 0 : size(a)) + rows * cols
    let out: tf.TensorInfo
    if (direct <= flipped) {
      const left = transposeA ? transposed(a, be) : { info: a, temporary: false }
      const right = transposeB ? transposed(b, be) : { info: b, temporary: false }
      out = plain(left.info, right.info, be)
      free(be, left, right)
    } else {
      if (transposeA) seen.add(a.dataId)
      if (transposeB) seen.add(b.dataId)
      // (op(a) op(b))^T = op(b)^T op(a)^T: b is transposed unless it already was, likewise a.
      const left = transposeB ? { info: b, temporary: false } : { info: transpose(b, be), temporary: true }
      const right = transposeA ? { info: a, temporary: false } : { info: transpose(a, be), temporary: true }
      const product = plain(left.info, right.info, be)
      free(be, left, right)
      out = transpose(product, be)
      be.disposeData(product.dataId)
    }
    return { dataId: out.dataId, shape: outputShape(args.inputs["a"] as tf.TensorInfo, args.inputs["b"] as tf.TensorInfo, rows, cols), dtype: out.dtype }
  }

  const fusedMatMul: KernelFunc = (args) => {
    const operands = transposedOperands(args)
    if (operands === undefined) return stockFused.kernelFunc(args)
    const { attrs, transposeA, transposeB, a, b, be } = operands
    const left = transposeA ? transposed(a, be) : { info: a, temporary: false }
    const right = transposeB ? transposed(b, be) : { info: b, temporary: false }
    // The stock kernel wants [batch, rows, cols] operands, as the op hands it.
    const batched = (x: tf.TensorInfo): tf.TensorInfo => ({ dataId: x.dataId, shape: [1, ...x.shape], dtype: x.dtype })
    const out = stockFused.kernelFunc({
      inputs: { ...args.inputs, a: batched(left.info), b: batched(right.info) },
      backend: be,
      attrs: { ...attrs, transposeA: false, transposeB: false } as unknown as tf.NamedAttrMap
    }) as tf.TensorInfo
    free(be, left, right)
    return out
  }

  tf.unregisterKernel(tf.BatchMatMul, "wasm")
  tf.registerKernel({ kernelName: tf.BatchMatMul, backendName: "wasm", kernelFunc: batchMatMul })
  tf.unregisterKernel(tf._FusedMatMul, "wasm")
  tf.registerKernel({ kernelName: tf._FusedMatMul, backendName: "wasm", kernelFunc: fusedMatMul })
}

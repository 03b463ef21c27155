/**
 * The wasm backend's `attention` op (core's `BackendOps`) as one fused kernel per direction:
 * `kernels/attention.ts` (AssemblyScript, SIMD128) computes softmax(q k^T + bias) v row by row and
 * its gradient from each row's saved max and softmax sum, with no [t, L] matrix ever stored. Against the blockwise
 * form (about ten tfjs kernels per (batch row, kv head) block, forward and backward) that is two
 * kernel calls per layer per step, and masked key spans are skipped (half the work under a causal mask).
 *
 * The kernels run in their own small WebAssembly instance: operands are copied from the tfjs heap
 * into its memory and results copied back (a few hundred KiB a layer, small next to the arithmetic).
 * In Node its shared-memory build also runs on worker threads (`kernelThreads.ts`), each taking a
 * range of (batch row, kv head) blocks; in browsers it runs on the calling thread.
 * Shapes the kernel does not cover (head size not a multiple of 4, a bias that differs per head,
 * non-float32) go to the blockwise form.
 */
import * as tf from "@tensorflow/tfjs-core"
import { blockwiseAttention } from "./blockwiseAttention.js"
import { KernelArena, type WasmBackendInternals } from "./kernelArena.js"
import { type KernelRunner, singleThreadRunner, threadedRunner } from "./kernelRunner.js"
import { attentionSharedWasm } from "./kernels/attentionSharedWasm.js"
import { attentionWasm } from "./kernels/attentionWasm.js"

/** Kernel names, as `tf.profile` lists them. */
export const FusedAttention = "PeftkitFusedAttention"
export const FusedAttentionGrad = "PeftkitFusedAttentionGrad"

/** The kernel's two entry points (`kernels/attention.ts`). */
export type AttentionEntry = "attentionForward" | "attentionBackward"

let runner: KernelRunner<AttentionEntry> | undefined

/** Below this many multiply-adds a call stays on one thread: a hand-off costs tens of microseconds. */
const MIN_PARALLEL_WORK = 2 ** 20

interface Layout {
  readonly b: number
  readonly heads: number
  readonly kvHeads: number
  readonly t: number
  readonly length: number
  readonly d: number
  readonly hasBias: number
  readonly biasBatch: number
  readonly biasRows: number
}

const layoutOf = (q: tf.TensorInfo, k: tf.TensorInfo, bias: tf.TensorInfo | undefined): Layout => {
  const [b, heads, t, d] = q.shape as [number, number, number, number]
  const [, kvHeads, length] = k.shape as [number, number, number, number]
  return {
    b, heads, kvHeads, t, length, d,
    hasBias: bias === undefined ? 0 : 1,
    biasBatch: bias !== undefined && bias.shape[0] === b && b > 1 ? 1 : 0,
    biasRows: bias === undefined ? 1 : bias.shape[2]!
  }
}

/** Rows of the bias ([bb, 1, rows, L]): the kernel finds each one's unmasked span once per call. */
const biasRowCount = (bias: tf.TensorInfo | undefined): number => (bias === undefined ? 0 : bias.shape[0]! * bias.shape[2]!)

const layoutArgs = (l: Layout): Array<number> => [l.b, l.heads, l.kvHeads, l.t, l.length, l.d, l.hasBias, l.biasBatch, l.biasRows]

/** Threads worth using for this call: one for small work (cached generation), else all. */
const threadsFor = (l: Layout): number => (l.b * l.heads * l.t * l.length * l.d >= MIN_PARALLEL_WORK ? runner!.threads : 1)

/** Spans and scratch for each of `threads` threads. */
const perThread = (arena: KernelArena, threads: number, spanBytes: number, scratchBytes: number): Array<[number, number]> =>
  Array.from({ length: threads }, () => [arena.take(spanBytes), arena.take(scratchBytes)] as [number, number])

const forwardKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const kernel = runner!
  const wasmBackend = backend as unknown as WasmBackendInternals
  const { q, k, v, bias } = inputs as Record<string, tf.TensorInfo | undefined>
  const layout = layoutOf(q!, k!, bias)
  const rows = layout.b * layout.heads * layout.t
  const arena = new KernelArena(kernel.memory, kernel.heapBase)
  const operands = [q, k, v, bias].map((x) => arena.copyIn(wasmBackend, x))
  const out = arena.take(rows * layout.d * 4)
  const stats = arena.take(rows * 8)
  const threads = threadsFor(layout)
  const local = perThread(arena, threads, biasRowCount(bias) * 8, (layout.d + 4) * layout.length * 4)
  const shape = layoutArgs(layout)
  kernel.run("attentionForward", (i, start, end) => [...operands, out, stats, ...local[i]!, ...shape, start, end], layout.b * layout.kvHeads, threads)
  return [arena.copyOut(wasmBackend, out, q!.shape), arena.copyOut(wasmBackend, stats, [layout.b, layout.heads, layout.t, 2])]
}

const backwardKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const kernel = runner!
  const wasmBackend = backend as unknown as WasmBackendInternals
  const { q, k, v, bias, out, dy, stats } = inputs as Record<string, tf.TensorInfo | undefined>
  const layout = layoutOf(q!, k!, bias)
  const arena = new KernelArena(kernel.memory, kernel.heapBase)
  const operands = [q, k, v, bias, out, dy, stats].map((x) => arena.copyIn(wasmBackend, x))
  const dq = arena.take(tf.util.sizeFromShape(q!.shape) * 4)
  const dk = arena.take(tf.util.sizeFromShape(k!.shape) * 4)
  const dv = arena.take(tf.util.sizeFromShape(v!.shape) * 4)
  const threads = threadsFor(layout)
  const local = perThread(arena, threads, biasRowCount(bias) * 8, (2 * layout.d + 8) * layout.length * 4)
  const shape = layoutArgs(layout)
  kernel.run("attentionBackward", (i, start, end) => [...operands, dq, dk, dv, ...local[i]!, ...shape, start, end], layout.b * layout.kvHeads, threads)
  return [arena.copyOut(wasmBackend, dq, q!.shape), arena.copyOut(wasmBackend, dk, k!.shape), arena.copyOut(wasmBackend, dv, v!.shape)]
}

/**
 * Instantiates the kernel (in Node on `threads` threads, default one per core; one elsewhere) and registers both
 * directions for the wasm backend, once per process. Resolves to the threads it runs on, or 0 where
 * the runtime cannot run it (no WebAssembly SIMD): the op then stays blockwise.
 */
export const loadFusedAttention = async (threads: number | undefined): Promise<number> => {
  if (runner !== undefined) return runner.threads
  try {
    runner = (await threadedRunner<AttentionEntry>(attentionSharedWasm, threads, "attention")) ?? (await singleThreadRunner<AttentionEntry>(attentionWasm))
  } catch {
    return 0
  }
  tf.registerKernel({ kernelName: FusedAttention, backendName: "wasm", kernelFunc: forwardKernel })
  tf.registerKernel({ kernelName: FusedAttentionGrad, backendName: "wasm", kernelFunc: backwardKernel })
  return runner.threads
}

/** Whether the fused kernel covers these operands. */
const covers = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D | undefined): boolean => {
  const [b, heads, t, d] = q.shape
  const [kb, kvHeads, length, kd] = k.shape
  const float = [q, k, v, bias].every((x) => x === undefined || x.dtype === "float32")
  const biasFits = bias === undefined ||
    ((bias.shape[0] === 1 || bias.shape[0] === b) && bias.shape[1] === 1 && (bias.shape[2] === 1 || bias.shape[2] === t) && bias.shape[3] === length)
  return float && biasFits && d % 4 === 0 && kd === d && kb === b && heads % kvHeads === 0 && tf.util.arraysEqual(k.shape, v.shape)
}

/** The `attention` op: fused where the kernel covers the operands, blockwise otherwise. */
export const fusedAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D | undefined): tf.Tensor4D | undefined => {
  if (runner === undefined || !covers(q, k, v, bias)) return blockwiseAttention(q, k, v, bias)
  const attention = tf.customGrad((qIn, kIn, vIn, save) => {
    const operands = { q: qIn as tf.Tensor, k: kIn as tf.Tensor, v: vIn as tf.Tensor, ...(bias === undefined ? {} : { bias }) }
    const [out, stats] = tf.engine().runKernel(FusedAttention, operands, {}) as unknown as [tf.Tensor4D, tf.Tensor4D]
    // The bias too: it belongs to the model's forward scope, which ends before the backward runs.
    ;(save as tf.GradSaveFunc)([qIn as tf.Tensor, kIn as tf.Tensor, vIn as tf.Tensor, out, stats, ...(bias === undefined ? [] : [bias])])
    return {
      value: out,
      gradFunc: (dy: tf.Tensor4D, saved: Array<tf.Tensor>) => {
        const [sq, sk, sv, so, sstats, sbias] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | undefined]
        const inputs = { q: sq, k: sk, v: sv, out: so, dy, stats: sstats, ...(sbias === undefined ? {} : { bias: sbias }) }
        return tf.engine().runKernel(FusedAttentionGrad, inputs, {}) as unknown as Array<tf.Tensor>
      }
    }
  })
  return attention(q, k, v) as tf.Tensor4D
}

/**
 * The wasm backend's `attention` op (core's `BackendOps`) as one fused kernel per direction:
 * `kernels/attention.ts` (AssemblyScript, SIMD128) computes softmax(q k^T + bias) v row by row and
 * its gradient from each row's saved max and softmax sum, with no [t, L] matrix ever stored. Against the blockwise
 * form (about ten tfjs kernels per (batch row, kv head) block, forward and backward) that is two
 * kernel calls per layer per step, and masked key spans are skipped (half the work under a causal mask).
 *
 * The kernels run in their own small WebAssembly instance: operands are copied from the tfjs heap
 * into its memory and results copied back (a few hundred KiB a layer, small next to the arithmetic).
 * Shapes the kernel does not cover (head size not a multiple of 4, a bias that differs per head,
 * non-float32) go to the blockwise form.
 */
import * as tf from "@tensorflow/tfjs-core"
import { blockwiseAttention } from "./blockwiseAttention.js"
import { attentionWasm } from "./kernels/attentionWasm.js"

/** Kernel names, as `tf.profile` lists them. */
export const FusedAttention = "PeftkitFusedAttention"
export const FusedAttentionGrad = "PeftkitFusedAttentionGrad"

interface AttentionExports {
  readonly memory: WebAssembly.Memory
  heapBase(): number
  attentionForward(...args: ReadonlyArray<number>): void
  attentionBackward(...args: ReadonlyArray<number>): void
}

interface WasmBackendInternals {
  readonly wasm: { readonly HEAPU8: Uint8Array }
  readonly dataIdMap: { get(dataId: object): { readonly memoryOffset: number } }
  makeOutput(shape: ReadonlyArray<number>, dtype: tf.DataType): tf.TensorInfo
}

let exports: AttentionExports | undefined

const decodeBase64 = (text: string): Uint8Array => {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

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

/** Lays operands out past the kernel's static data, 16-byte aligned, growing its memory to fit. */
class Arena {
  private next: number
  constructor(private readonly kernel: AttentionExports) {
    this.next = kernel.heapBase()
  }
  take(bytes: number): number {
    const at = Math.ceil(this.next / 16) * 16
    this.next = at + bytes
    const short = this.next - this.kernel.memory.buffer.byteLength
    if (short > 0) this.kernel.memory.grow(Math.ceil(short / 65536))
    return at
  }
  /** Copies a tensor's bytes from the tfjs heap into the arena. */
  copyIn(backend: WasmBackendInternals, x: tf.TensorInfo | undefined): number {
    if (x === undefined) return 0
    const bytes = tf.util.sizeFromShape(x.shape) * 4
    const at = this.take(bytes)
    const from = backend.dataIdMap.get(x.dataId).memoryOffset
    new Uint8Array(this.kernel.memory.buffer, at, bytes).set(backend.wasm.HEAPU8.subarray(from, from + bytes))
    return at
  }
}

/** A new tfjs output of `shape` filled from the arena at `at`. */
const copyOut = (kernel: AttentionExports, backend: WasmBackendInternals, at: number, shape: ReadonlyArray<number>): tf.TensorInfo => {
  const out = backend.makeOutput(shape, "float32")
  const bytes = tf.util.sizeFromShape([...shape]) * 4
  // HEAPU8 is read after makeOutput: allocating may grow (and replace) the heap's buffer.
  backend.wasm.HEAPU8.set(new Uint8Array(kernel.memory.buffer, at, bytes), backend.dataIdMap.get(out.dataId).memoryOffset)
  return out
}

const forwardKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const kernel = exports!
  const wasmBackend = backend as unknown as WasmBackendInternals
  const { q, k, v, bias } = inputs as Record<string, tf.TensorInfo | undefined>
  const layout = layoutOf(q!, k!, bias)
  const rows = layout.b * layout.heads * layout.t
  const arena = new Arena(kernel)
  const [qa, ka, va, ba] = [q, k, v, bias].map((x) => arena.copyIn(wasmBackend, x)) as [number, number, number, number]
  const out = arena.take(rows * layout.d * 4)
  const stats = arena.take(rows * 8)
  const spans = arena.take(biasRowCount(bias) * 8)
  const scratch = arena.take((layout.d + 4) * layout.length * 4)
  kernel.attentionForward(qa, ka, va, ba, out, stats, spans, scratch, ...layoutArgs(layout))
  return [copyOut(kernel, wasmBackend, out, q!.shape), copyOut(kernel, wasmBackend, stats, [layout.b, layout.heads, layout.t, 2])]
}

const backwardKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const kernel = exports!
  const wasmBackend = backend as unknown as WasmBackendInternals
  const { q, k, v, bias, out, dy, stats } = inputs as Record<string, tf.TensorInfo | undefined>
  const layout = layoutOf(q!, k!, bias)
  const arena = new Arena(kernel)
  const [qa, ka, va, ba, oa, da, la] = [q, k, v, bias, out, dy, stats].map((x) => arena.copyIn(wasmBackend, x)) as [number, number, number, number, number, number, number]
  const dq = arena.take(tf.util.sizeFromShape(q!.shape) * 4)
  const dk = arena.take(tf.util.sizeFromShape(k!.shape) * 4)
  const dv = arena.take(tf.util.sizeFromShape(v!.shape) * 4)
  const spans = arena.take(biasRowCount(bias) * 8)
  const scratch = arena.take((2 * layout.d + 8) * layout.length * 4)
  kernel.attentionBackward(qa, ka, va, ba, oa, da, la, dq, dk, dv, spans, scratch, ...layoutArgs(layout))
  return [copyOut(kernel, wasmBackend, dq, q!.shape), copyOut(kernel, wasmBackend, dk, k!.shape), copyOut(kernel, wasmBackend, dv, v!.shape)]
}

/**
 * Instantiates the kernel and registers both directions for the wasm backend (once per process).
 * False where the runtime cannot (no WebAssembly SIMD): the op then stays blockwise.
 */
export const loadFusedAttention = async (): Promise<boolean> => {
  if (exports !== undefined) return true
  if (tf.getKernel(FusedAttention, "wasm") !== undefined) return true
  try {
    const { instance } = await WebAssembly.instantiate(decodeBase64(attentionWasm) as BufferSource, {}) as unknown as WebAssembly.WebAssemblyInstantiatedSource
    exports = instance.exports as unknown as AttentionExports
  } catch {
    return false
  }
  tf.registerKernel({ kernelName: FusedAttention, backendName: "wasm", kernelFunc: forwardKernel })
  tf.registerKernel({ kernelName: FusedAttentionGrad, backendName: "wasm", kernelFunc: backwardKernel })
  return true
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
  if (exports === undefined || !covers(q, k, v, bias)) return blockwiseAttention(q, k, v, bias)
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

/**
 * The WebAssembly backend (`@tensorflow/tfjs-backend-wasm`): XNNPACK kernels, SIMD wherever the
 * runtime has it (Node, every current browser), threads where the runtime allows (browsers with
 * cross-origin isolation; not Node). The tfjs module is imported inside `load`, so importing this
 * file registers nothing.
 *
 * `load` also installs peftkit's fast paths for wasm, so model, adapter and attention code calls
 * plain tfjs ops: kernel overrides (matmuls with transposes on XNNPACK and kept transposes of
 * frozen weights, a copying Slice and Reverse, an Identity that shares data, row-parallel matmuls
 * in Node) and the `attention` op (core's `BackendOps`): one fused SIMD kernel per direction
 * (`kernels/attention.ts`), blockwise where the runtime has no SIMD.
 */
import { activateTfjsBackend, backendUnavailable, firstLine, registerBackendOps } from "@peftkit/core"
import type { BackendInfo, BackendProvider } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { isNode } from "./internal/isNode.js"
import { Effect } from "effect"
import { blockwiseAttention } from "./internal/blockwiseAttention.js"
import { fusedAttention, loadFusedAttention } from "./internal/fusedAttention.js"
import { installGemmMatMul } from "./internal/gemmMatMul.js"
import { installContinuousSlice } from "./internal/continuousSlice.js"
import { installCopyReverse } from "./internal/copyReverse.js"
import { installSharedIdentity } from "./internal/sharedIdentity.js"
import { installSimdExp } from "./internal/simdExp.js"
import { fusedRmsNorm, loadFusedRmsNorm } from "./internal/fusedRmsNorm.js"
import { cpuPackage, cpuPackageInstall } from "./internal/packageInfo.js"
import { installTransposeFreeMatMul } from "./internal/transposeFreeMatMul.js"
import { wasmOutOfMemory } from "./internal/wasmOutOfMemory.js"
import { installAllocationCheck } from "./internal/allocationCheck.js"

export interface WasmOptions {
  /**
   * Threads to use; defaults to the machine's cores (`navigator.hardwareConcurrency`, or
   * `os.availableParallelism()` in Node). In browsers with cross-origin isolation they size tfjs's
   * own thread pool. In Node, where tfjs runs single-threaded, peftkit's own kernels (matmul,
   * attention) split their work across worker threads; 1 turns that off. Read once per process.
   */
  readonly threads?: number
  /**
   * Which kernel multiplies float32 matrices: "peftkit" (default where WebAssembly SIMD runs),
   * peftkit's own GEMM (`kernels/gemm.ts`), which keeps no copy of any operand between calls; or
   * "xnnpack", tfjs's, which keeps a packed copy of every right operand it has seen, a transpose of
   * every frozen weight used transposed, and in Node a worker's copies for its row split (several
   * times the weights' memory). Read once per process.
   */
  readonly matMul?: "peftkit" | "xnnpack"
  /**
   * Where the `.wasm` binaries are served from (`setWasmPaths`): a URL prefix or a per-file map.
   * Needed in browsers when a bundler does not copy them next to the script; Node finds them itself.
   */
  readonly wasmPaths?: string | Readonly<Record<string, string>>
}

const defaultThreads = (): number => {
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency
  return typeof n === "number" && n > 0 ? n : 1
}

/**
 * In Node: worker threads for large matmuls (1 when off or unavailable; the default is one per
 * core). The module path is not a literal, so browser bundles never reach its `node:` imports
 * (worker_threads, os, module): the package bundles for the browser with no externals or shims.
 */
const parallelMatMulInNode = (threads: number | undefined) =>
  Effect.gen(function* () {
    if (!isNode || typeof SharedArrayBuffer === "undefined" || (threads !== undefined && threads < 2)) return 1
    const path = "./internal/parallelMatMul.js"
    // Without workers wasm still works, on one thread: the backend info then says 1 thread.
    return yield* Effect.tryPromise(async () =>
      ((await import(/* @vite-ignore */ path)) as typeof import("./internal/parallelMatMul.js")).installParallelMatMul({ threads })
    ).pipe(Effect.orElseSucceed(() => 1))
  })

/** A wasm provider with explicit options; {@link wasm} is the default one. */
export const makeWasmProvider = (options: WasmOptions = {}): BackendProvider => ({
  name: "wasm",
  priority: 100,
  device: "cpu",
  packageName: cpuPackage,
  install: cpuPackageInstall,
  load: Effect.gen(function* () {
    const module = yield* Effect.tryPromise({
      try: () => import("@tensorflow/tfjs-backend-wasm"),
      catch: (error) => backendUnavailable("wasm", `cannot import @tensorflow/tfjs-backend-wasm: ${firstLine(error)}`, cpuPackageInstall)
    })
    const features = yield* Effect.tryPromise({
      try: async () => ({
        simd: Boolean(await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT")),
        multithread: Boolean(await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"))
      }),
      catch: (error) => backendUnavailable("wasm", `cannot probe WebAssembly features: ${firstLine(error)}`, cpuPackageInstall)
    })
    const initialised = tf.findBackend("wasm") != null
    if (!initialised) {
      if (options.wasmPaths !== undefined) {
        module.setWasmPaths(options.wasmPaths as string | Record<string, string>)
      }
      // Must precede initialisation: the thread pool is created with the module.
      if (features.multithread) module.setThreadsCount(Math.max(1, Math.floor(options.threads ?? defaultThreads())))
    }
    yield* activateTfjsBackend("wasm", "wasm", cpuPackageInstall)
    // Before the row-parallel matmul, which wraps whatever BatchMatMul is registered.
    installTransposeFreeMatMul()
    installContinuousSlice()
    installCopyReverse()
    installSharedIdentity()
    installAllocationCheck()
    // Fused attention needs WebAssembly SIMD; without it attention stays blockwise.
    const attentionThreads = features.simd ? yield* Effect.promise(() => loadFusedAttention(options.threads)) : 0
    const fused = attentionThreads > 0
    const simdExp = features.simd && (yield* Effect.promise(() => installSimdExp()))
    const rmsNorm = features.simd && (yield* Effect.promise(() => loadFusedRmsNorm()))
    registerBackendOps("wasm", {
      attention: fused ? fusedAttention : blockwiseAttention,
      ...(rmsNorm ? { rmsNorm: fusedRmsNorm } : {}),
      outOfMemory: wasmOutOfMemory
    })
    // peftkit's own GEMM kernel (SIMD, its own worker threads) takes every float32 product; without
    // SIMD, or when asked, XNNPACK's, split by rows across a second tfjs instance in Node.
    const gemmThreads = features.simd && options.matMul !== "xnnpack" ? yield* Effect.promise(() => installGemmMatMul(options.threads)) : 0
    const matMulThreads = gemmThreads > 0 ? gemmThreads : yield* parallelMatMulInNode(options.threads)
    const threads = Math.max(module.getThreadsCount(), matMulThreads, attentionThreads)
    const parallel = [matMulThreads > 1 ? "matmuls" : "", attentionThreads > 1 ? "attention" : ""].filter((s) => s !== "").join(" and ")
    const detail = `${features.simd ? "SIMD" : "no SIMD"}, ${threads} thread${threads === 1 ? "" : "s"}${parallel === "" ? "" : ` for ${parallel}`}`
    return {
      name: "wasm",
      tfjsName: "wasm",
      device: `CPU via WebAssembly (${detail})`,
      gpu: false,
      details: {
        simd: features.simd,
        threads,
        multithreadSupported: features.multithread,
        matMulThreads,
        fusedAttention: fused,
        attentionThreads,
        simdExp,
        fusedRmsNorm: rmsNorm,
        gemm: gemmThreads > 0,
        version: module.version_wasm
      }
    } satisfies BackendInfo
  })
})

/** The wasm backend with default options. */
export const wasm: BackendProvider = makeWasmProvider()

/**
 * The one implementation behind both native providers. The module importer is a parameter so
 * tests can play "not installed", "native binding fails to load" and "loads fine" without
 * libtensorflow; the real providers pass a dynamic import of the tfjs-node package.
 */
import { activateTfjsBackend, backendUnavailable, firstLine, isModuleNotFound } from "@peftkit/core"
import type { BackendInfo, BackendProvider } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { cpus, totalmem } from "node:os"

export type NodeBackendName = "node-gpu" | "node"

/** The npm package each native provider imports. */
export const nativePackage: Readonly<Record<NodeBackendName, string>> = {
  "node-gpu": "@tensorflow/tfjs-node-gpu",
  node: "@tensorflow/tfjs-node"
}

/** How each native provider describes itself: `auto` priority, device, and what to install. */
export const nativeProviderFacts: Readonly<Record<NodeBackendName, { readonly priority: number; readonly device: "gpu" | "cpu"; readonly install: string }>> = {
  "node-gpu": {
    // Native CUDA: the fastest there is, so auto tries it first.
    priority: 400,
    device: "gpu",
    install:
      "npm install @peftkit/backend-node @tensorflow/tfjs-node-gpu (requires Linux x64 with an NVIDIA GPU, " +
      "CUDA 11.2 and cuDNN 8.1; its install script downloads libtensorflow from storage.googleapis.com)"
  },
  node: {
    // Native CPU kernels: after any GPU, before WebAssembly.
    priority: 200,
    device: "cpu",
    install:
      "npm install @peftkit/backend-node @tensorflow/tfjs-node (its install script downloads libtensorflow " +
      "from storage.googleapis.com)"
  }
}

/** What a GPU probe reports; both fields optional because the probe may know neither. */
export interface GpuProbe {
  readonly name?: string
  readonly memoryBytes?: number
}

export interface NodeProviderOptions {
  /** The tfjs backend name the module registers; tfjs-node and tfjs-node-gpu both use "tensorflow". */
  readonly tfjsName?: string
  /** Finds the GPU's name and memory; defaults to asking `nvidia-smi`, which libtensorflow does not expose. */
  readonly probeGpu?: () => Promise<GpuProbe>
}

/** The parts of tfjs-node's NodeJSKernelBackend we read, all optional. */
interface NativeBackendLike {
  readonly isUsingGpuDevice?: boolean
  readonly binding?: { readonly TF_Version?: string }
}

/** Asks nvidia-smi for the first GPU's name and memory; resolves `{}` when that is not possible. */
export const nvidiaSmiProbe = (): Promise<GpuProbe> =>
  new Promise((resolve) => {
    execFile(
      "nvidia-smi",
      ["--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
      { timeout: 3000 },
      (error, stdout) => {
        if (error) return resolve({})
        const [name, mib] = (stdout.split("\n")[0] ?? "").split(",").map((s) => s.trim())
        const memory = Number(mib)
        resolve({
          ...(name ? { name } : {}),
          ...(Number.isFinite(memory) && memory > 0 ? { memoryBytes: memory * 1024 * 1024 } : {})
        })
      }
    )
  })

/**
 * tfjs-node registers its kernels before it loads the native binding, so a failed import leaves
 * kernels for a backend that does not exist; the next attempt (tfjs-node after tfjs-node-gpu)
 * would then print one "already registered" warning per kernel. Remove what the failure left.
 */
const forgetOrphanKernels = (tfjsName: string): void => {
  if (tf.findBackendFactory(tfjsName) != null || tf.findBackend(tfjsName) != null) return
  for (const kernel of tf.getKernelsForBackend(tfjsName)) tf.unregisterKernel(kernel.kernelName, tfjsName)
}

export const makeNodeProvider = (
  name: NodeBackendName,
  importModule: () => Promise<unknown>,
  options: NodeProviderOptions = {}
): BackendProvider => {
  const packageName = nativePackage[name]
  const tfjsName = options.tfjsName ?? "tensorflow"
  const probeGpu = options.probeGpu ?? nvidiaSmiProbe
  const { priority, device: deviceKind, install } = nativeProviderFacts[name]
  return {
    name,
    priority,
    device: deviceKind,
    packageName: "@peftkit/backend-node",
    install,
    load: Effect.gen(function* () {
      yield* Effect.tryPromise({
        try: importModule,
        catch: (error) => {
          forgetOrphanKernels(tfjsName)
          return isModuleNotFound(error, packageName)
            ? backendUnavailable(name, `${packageName} is not installed`, install)
            : backendUnavailable(name, `${packageName} is installed but its native binding failed to load: ${firstLine(error)}`, install)
        }
      })
      yield* activateTfjsBackend(name, tfjsName, install)
      const native = (tf.findBackend(tfjsName) ?? {}) as NativeBackendLike
      // tfjs-node-gpu runs on the CPU when CUDA loads but sees no device; say so rather than guess.
      const gpu = name === "node-gpu" && native.isUsingGpuDevice !== false
      const probe = gpu ? yield* Effect.promise(() => probeGpu().catch((): GpuProbe => ({}))) : {}
      const device = gpu
        ? `${probe.name ?? "CUDA GPU"} (CUDA)`
        : name === "node-gpu"
          ? "CPU (libtensorflow; no CUDA device visible)"
          : "CPU (libtensorflow)"
      return {
        name,
        tfjsName,
        device,
        gpu,
        details: {
          package: packageName,
          ...(native.binding?.TF_Version ? { tensorflowVersion: native.binding.TF_Version } : {}),
          ...(probe.memoryBytes === undefined ? {} : { gpuMemoryBytes: probe.memoryBytes }),
          hostMemoryBytes: totalmem(),
          hostCpus: cpus().length
        }
      } satisfies BackendInfo
    })
  }
}

/** A dynamic import the bundler and TypeScript do not follow: the package is an optional peer. */
export const importOptional = (specifier: string): (() => Promise<unknown>) => () =>
  import(/* @vite-ignore */ specifier)

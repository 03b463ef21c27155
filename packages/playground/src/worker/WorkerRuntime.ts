/**
 * The worker's Effect runtime: the chosen backend among every provider the page ships (WebGPU, wasm,
 * plain JS), the worker's in-memory file system, and progress events handed to a callback.
 */
import type { FileSystem } from "@effect/platform"
import { providers as cpuBackends, makeWasmProvider } from "@peftkit/backend-cpu"
import { providers as webgpuBackends } from "@peftkit/backend-webgpu"
import { Backend, type BackendChoice, type BackendProvider, type MemoryFileSystemHandle, MemoryFileSystem, MetricsLog, ProgressReporter, type ProgressEvent } from "@peftkit/core"
import { Layer, ManagedRuntime } from "effect"

export type WorkerServices = Backend | FileSystem.FileSystem | ProgressReporter | MetricsLog
export type WorkerRuntime = ManagedRuntime.ManagedRuntime<WorkerServices, unknown>

/** Every backend the page can use; the wasm binaries are fetched from the site's root. */
export const pageBackends = (siteUrl: string): ReadonlyArray<BackendProvider> => [
  ...webgpuBackends,
  makeWasmProvider({ wasmPaths: siteUrl }),
  ...cpuBackends.filter((provider) => provider.name !== "wasm")
]

export const makeWorkerRuntime = (
  choice: BackendChoice,
  providers: ReadonlyArray<BackendProvider>,
  files: MemoryFileSystemHandle,
  onProgress: (event: ProgressEvent) => void
): WorkerRuntime =>
  ManagedRuntime.make(Layer.mergeAll(Backend.layer(choice, providers), MemoryFileSystem.layerOf(files), ProgressReporter.callback(onProgress), MetricsLog.none))

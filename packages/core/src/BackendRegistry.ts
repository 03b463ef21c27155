/**
 * The open registry of backend providers. Core knows no backend by name: a backend package exports
 * its providers, and the application registers them (`registerBackends(providers)`) or passes them
 * to `Backend.layer(choice, providers)`. Nothing registers itself on import; a user's own backend
 * registers the same way as peftkit's.
 */
import type { Effect } from "effect"
import type { BackendUnavailable } from "./Errors.js"

/** What a loaded backend is and runs on. */
export interface BackendInfo {
  readonly name: string
  /** The name tfjs knows it by (`tf.getBackend()`): "tensorflow", "webgpu", "wasm", "cpu". */
  readonly tfjsName: string
  /** Human-readable device, e.g. "NVIDIA A100 (CUDA)", "CPU via WebAssembly (SIMD, 1 thread)". */
  readonly device: string
  /** True when tensors live and kernels run on a hardware GPU (false for software adapters). */
  readonly gpu: boolean
  /** Backend-specific facts: simd/threads for wasm, adapter vendor/architecture/limits for webgpu. */
  readonly details: Readonly<Record<string, string | number | boolean>>
}

/**
 * One concrete backend, as a backend package describes it. `load` imports and registers its tfjs
 * backend, calls `tf.setBackend` and `tf.ready()`, installs any kernel overrides or backend ops,
 * and returns what it found; anything that stops it is a `BackendUnavailable` with `install`.
 */
export interface BackendProvider {
  /** The name users choose it by (`--backend`, `Backend.layer(name)`). */
  readonly name: string
  /** `auto` tries higher first. peftkit's: node-gpu 400, webgpu 300, node 200, wasm 100, cpu 0. */
  readonly priority: number
  /** Where its kernels run. */
  readonly device: "gpu" | "cpu"
  /**
   * In `auto`, accept it only when it loads on a hardware GPU (`info.gpu`). Set for WebGPU: on a
   * software adapter (SwiftShader, lavapipe) it is slower than the wasm backend.
   */
  readonly autoRequiresHardwareGpu?: boolean
  /** The npm package that exports this provider. */
  readonly packageName: string
  /** What to install (and which prerequisites) when it cannot load. */
  readonly install: string
  readonly load: Effect.Effect<BackendInfo, BackendUnavailable>
}

const registry = new Map<string, BackendProvider>()

/**
 * Registers providers under their names (a later registration of a name replaces the earlier one).
 * Returns a function that removes exactly these registrations again.
 */
export const registerBackends = (providers: Iterable<BackendProvider>): (() => void) => {
  const added = [...providers]
  for (const provider of added) registry.set(provider.name, provider)
  return () => {
    for (const provider of added) if (registry.get(provider.name) === provider) registry.delete(provider.name)
  }
}

/** The registered providers, highest priority first (the order `auto` tries them). */
export const registeredBackends = (): ReadonlyArray<BackendProvider> => byPriority([...registry.values()])

/** Providers highest priority first; equal priorities keep their given order. */
export const byPriority = (providers: ReadonlyArray<BackendProvider>): ReadonlyArray<BackendProvider> =>
  providers.map((provider, index) => ({ provider, index })).sort((x, y) => y.provider.priority - x.provider.priority || x.index - y.index).map((entry) => entry.provider)

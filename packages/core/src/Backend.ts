/**
 * The compute backend as a service. Library code asks for `Backend`; the application picks one with
 * `Backend.layer("wasm")` (or `"auto"`), exactly like choosing `@effect/platform-node` over
 * `-browser`. Core knows no concrete backend: providers live in `@peftkit/backend-node`,
 * `@peftkit/backend-webgpu` and `@peftkit/backend-cpu`, are passed in or discovered by dynamic
 * import, and register their tfjs backend only when their `load` runs, never at import time.
 *
 * tfjs keeps one global active backend, so building two Backend layers in one process means the
 * later one wins; build it once at the edge of the program.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Context, Effect, Layer } from "effect"
import { BackendUnavailable } from "./Errors.js"

/** The backends peftkit knows how to select. */
export type BackendName = "node-gpu" | "node" | "webgpu" | "wasm" | "cpu"

/** A backend name, or `"auto"` for the fastest one that loads here (see {@link autoOrder}). */
export type BackendChoice = BackendName | "auto"

/** What a loaded backend is and runs on. */
export interface BackendInfo {
  readonly name: BackendName
  /** The name tfjs knows it by (`tf.getBackend()`): "tensorflow", "webgpu", "wasm", "cpu". */
  readonly tfjsName: string
  /** Human-readable device, e.g. "NVIDIA A100 (CUDA)", "CPU via WebAssembly (SIMD, 1 thread)". */
  readonly device: string
  /** True when tensors live and kernels run on a hardware GPU (false for software adapters). */
  readonly gpu: boolean
  /** Backend-specific facts: simd/threads for wasm, adapter vendor/architecture/limits for webgpu. */
  readonly details: Readonly<Record<string, string | number | boolean>>
}

/** A snapshot of `tf.memory()`. */
export interface MemoryStats {
  readonly numTensors: number
  /** Bytes held by live tensors, as tracked by the tfjs engine (not the backend's own pools). */
  readonly numBytes: number
  /** Bytes in GPU memory, where the backend reports it (webgl/webgpu). */
  readonly numBytesInGPU?: number
  /** True when the backend says its numbers are approximate (e.g. string tensors, native pools). */
  readonly unreliable?: boolean
}

/**
 * One concrete backend, exported by a backend package (`providers: ReadonlyArray<BackendProvider>`).
 * `load` imports and registers its tfjs backend, calls `tf.setBackend` and `tf.ready()`, and
 * returns what it found; anything that stops it is a `BackendUnavailable` with an install hint.
 */
export interface BackendProvider {
  readonly name: BackendName
  /** The npm package that exports this provider. */
  readonly packageName: string
  /** What to install (and which prerequisites) when it cannot load. */
  readonly install: string
  readonly load: Effect.Effect<BackendInfo, BackendUnavailable>
}

/** The service: the selected backend, a memory probe, and why it was selected. */
export interface BackendService {
  readonly info: BackendInfo
  memory(): MemoryStats
  readonly selection: { readonly requested: BackendChoice; readonly reason: string }
}

/** Where each backend comes from and what to install for it: the one table of such facts. */
export interface BackendCatalogEntry {
  /** The peftkit package whose `providers` contains this backend. */
  readonly packageName: string
  /** Exact install command plus prerequisites, used in every `BackendUnavailable` for it. */
  readonly install: string
  /**
   * In `auto`, accept this backend only when it reports `gpu: true`. Set for WebGPU: on a
   * software adapter (SwiftShader, llvmpipe/lavapipe) it is slower than the wasm backend.
   */
  readonly autoRequiresHardwareGpu: boolean
}

export const backendCatalog: Readonly<Record<BackendName, BackendCatalogEntry>> = {
  "node-gpu": {
    packageName: "@peftkit/backend-node",
    install:
      "npm install @peftkit/backend-node @tensorflow/tfjs-node-gpu (requires Linux x64 with an NVIDIA GPU, " +
      "CUDA 11.2 and cuDNN 8.1; its install script downloads libtensorflow from storage.googleapis.com)",
    autoRequiresHardwareGpu: false
  },
  webgpu: {
    packageName: "@peftkit/backend-webgpu",
    install:
      "npm install @peftkit/backend-webgpu webgpu (in Node; Linux needs a Vulkan driver, e.g. " +
      "mesa-vulkan-drivers >= 25; in a browser @peftkit/backend-webgpu alone, on a WebGPU-enabled browser)",
    autoRequiresHardwareGpu: true
  },
  node: {
    packageName: "@peftkit/backend-node",
    install:
      "npm install @peftkit/backend-node @tensorflow/tfjs-node (its install script downloads libtensorflow " +
      "from storage.googleapis.com)",
    autoRequiresHardwareGpu: false
  },
  wasm: {
    packageName: "@peftkit/backend-cpu",
    install: "npm install @peftkit/backend-cpu",
    autoRequiresHardwareGpu: false
  },
  cpu: {
    packageName: "@peftkit/backend-cpu",
    install: "npm install @peftkit/backend-cpu",
    autoRequiresHardwareGpu: false
  }
}

/**
 * The order `auto` tries: native CUDA, then WebGPU on a hardware adapter, then native CPU
 * (libtensorflow), then WebAssembly (SIMD), then plain JavaScript.
 */
export const autoOrder: ReadonlyArray<BackendName> = ["node-gpu", "webgpu", "node", "wasm", "cpu"]

/** Builds the typed error for `name`, with the catalog's install hint unless one is given. */
export const backendUnavailable = (name: BackendName, reason: string, install?: string): BackendUnavailable =>
  new BackendUnavailable({ backend: name, reason, install: install ?? backendCatalog[name].install })

/** The first line of an error's message: native loaders append long stacks and search paths. */
export const firstLine = (error: unknown): string => {
  const text = error instanceof Error ? error.message : String(error)
  const line = text.split("\n").find((l) => l.trim() !== "") ?? text
  return line.trim()
}

/**
 * For providers: make the already registered tfjs backend `tfjsName` the active one and wait for
 * it. tfjs logs (rather than throws) an initialisation failure and answers false, so that answer
 * is what becomes the typed error.
 */
export const activateTfjsBackend = (
  name: BackendName,
  tfjsName: string,
  install?: string
): Effect.Effect<void, BackendUnavailable> =>
  Effect.tryPromise({
    try: async () => {
      if (tf.findBackendFactory(tfjsName) == null && tf.findBackend(tfjsName) == null) {
        throw new Error(`tfjs backend '${tfjsName}' is not registered`)
      }
      const ok = await tf.setBackend(tfjsName)
      if (!ok) throw new Error(`tfjs could not initialise its '${tfjsName}' backend (see the warning it logged)`)
      await tf.ready()
      if (tf.getBackend() !== tfjsName) {
        throw new Error(`tfjs is on '${tf.getBackend()}' after selecting '${tfjsName}'`)
      }
    },
    catch: (error) => backendUnavailable(name, firstLine(error), install)
  })

/** Reads `tf.memory()` into {@link MemoryStats}. */
export const readMemory = (): MemoryStats => {
  const m = tf.memory() as tf.MemoryInfo & { readonly numBytesInGPU?: number }
  return {
    numTensors: m.numTensors,
    numBytes: m.numBytes,
    ...(typeof m.numBytesInGPU === "number" ? { numBytesInGPU: m.numBytesInGPU } : {}),
    ...(m.unreliable ? { unreliable: true } : {})
  }
}

/**
 * Runs `f` under `tf.profile` and reports the highest number of bytes held by live tensors at any
 * kernel boundary during it (absolute, including tensors that existed before; `startBytes` lets a
 * caller take the difference), and how many tensors it left alive.
 *
 * Profiling is not free: tfjs times every kernel, which on GPU backends waits for each kernel to
 * finish (and with the DEBUG flag also downloads every output). Use it on a sampled step (say one
 * in fifty), never on every step. Profiles do not nest: do not call it from inside another
 * `tf.profile`. Memory the backend keeps outside tensors (the wasm heap, GPU buffer pools) is not
 * counted. If `f` throws, the error is rethrown once profiling has been switched off again.
 */
export const measurePeakBytes = async <T>(
  f: () => T | Promise<T>
): Promise<{ result: T; peakBytes: number; newTensors: number; newBytes: number; startBytes: number }> => {
  const startBytes = tf.memory().numBytes
  let result: T | undefined
  let failure: { readonly error: unknown } | undefined
  const profile = await tf.profile(async () => {
    // tfjs leaves profiling switched on for good if this throws, so nothing may escape here.
    try {
      result = await f()
    } catch (error) {
      failure = { error }
    }
    // tf.profile keeps whatever this returns; the real result is carried in the closure, so a
    // non-tensor T is fine.
    return [] as Array<tf.Tensor>
  })
  if (failure !== undefined) throw failure.error
  const endBytes = startBytes + profile.newBytes
  const kernelPeak = profile.kernels.length === 0 ? 0 : profile.peakBytes
  return {
    result: result as T,
    peakBytes: Math.max(startBytes, endBytes, kernelPeak),
    newTensors: profile.newTensors,
    newBytes: profile.newBytes,
    startBytes
  }
}

// --- discovery --------------------------------------------------------------------------------

type Discovered = { readonly provider: BackendProvider } | { readonly error: BackendUnavailable }

/**
 * True when `error` says that `specifier` itself could not be found (Node's ESM and CJS loaders,
 * and Vite/vitest's resolver phrase it differently). A package that is present but misses one of
 * its own dependencies is not "not installed": that is a broken install, reported as such.
 */
export const isModuleNotFound = (error: unknown, specifier: string): boolean => {
  const escaped = specifier.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")
  const pattern = new RegExp(
    `(cannot find (package|module)|could not resolve|failed to resolve import|failed to load url)\\s+['"]?${escaped}['"\\s]`,
    "i"
  )
  return pattern.test(`${firstLine(error)} `)
}

/**
 * Imports a backend package. The specifier is a variable on purpose: core must not depend on its
 * backends (they depend on core), and TypeScript must not resolve them. With a strict node_modules
 * layout (pnpm) core cannot see its siblings, so in Node a miss is retried from the application's
 * entry script and from the working directory. Browser bundlers cannot follow a variable import: pass providers explicitly there.
 */
const importPackage = async (specifier: string): Promise<unknown> => {
  try {
    return await import(/* @vite-ignore */ specifier)
  } catch (error) {
    const proc = typeof process === "undefined" ? undefined : process
    if (!isModuleNotFound(error, specifier) || proc === undefined) throw error
    // Variables again, so browser bundlers do not try to include Node built-ins.
    const moduleSpecifier = "node:module"
    const urlSpecifier = "node:url"
    const { createRequire } = (await import(/* @vite-ignore */ moduleSpecifier)) as typeof import("node:module")
    const { pathToFileURL } = (await import(/* @vite-ignore */ urlSpecifier)) as typeof import("node:url")
    // The application's entry script sees its own dependencies; so does the working directory.
    const bases = [proc.argv?.[1], `${proc.cwd?.()}/`].filter((base): base is string => typeof base === "string" && base !== "undefined/")
    for (const base of bases) {
      let resolved: string
      try {
        resolved = createRequire(base).resolve(specifier)
      } catch {
        continue
      }
      return await import(/* @vite-ignore */ pathToFileURL(resolved).href)
    }
    throw error
  }
}

const discover = async (name: BackendName): Promise<Discovered> => {
  const { packageName } = backendCatalog[name]
  let mod: unknown
  try {
    mod = await importPackage(packageName)
  } catch (error) {
    const reason = isModuleNotFound(error, packageName)
      ? `package ${packageName} is not installed`
      : `package ${packageName} failed to import: ${firstLine(error)}`
    return { error: backendUnavailable(name, reason) }
  }
  const list = (mod as { providers?: unknown } | null)?.providers
  const provider = Array.isArray(list)
    ? (list as ReadonlyArray<BackendProvider>).find((p) => p?.name === name)
    : undefined
  return provider === undefined
    ? { error: backendUnavailable(name, `package ${packageName} exports no '${name}' provider`) }
    : { provider }
}

const findProvider = (
  name: BackendName,
  providers: ReadonlyArray<BackendProvider> | undefined
): Effect.Effect<BackendProvider, BackendUnavailable> => {
  if (providers !== undefined) {
    const provider = providers.find((p) => p.name === name)
    return provider === undefined
      ? Effect.fail(backendUnavailable(name, "no provider for it was given"))
      : Effect.succeed(provider)
  }
  return Effect.flatMap(Effect.promise(() => discover(name)), (d) =>
    "provider" in d ? Effect.succeed(d.provider) : Effect.fail(d.error)
  )
}

const loadByName = (
  name: BackendName,
  providers: ReadonlyArray<BackendProvider> | undefined
): Effect.Effect<BackendInfo, BackendUnavailable> =>
  Effect.flatMap(findProvider(name, providers), (provider) => provider.load)

const makeService = (info: BackendInfo, requested: BackendChoice, reason: string): BackendService => ({
  info,
  memory: readMemory,
  selection: { requested, reason }
})

const describe = (info: BackendInfo): string => `${info.name} (${info.device})`

const selectAuto = (
  providers: ReadonlyArray<BackendProvider> | undefined
): Effect.Effect<BackendService, BackendUnavailable> =>
  Effect.gen(function* () {
    const notes: Array<string> = []
    // A backend loaded but passed over (software WebGPU): better than nothing if all else fails.
    let fallback: BackendInfo | undefined
    for (const name of autoOrder) {
      const attempt = yield* Effect.either(loadByName(name, providers))
      if (attempt._tag === "Left") {
        notes.push(`${name} unavailable (${attempt.left.reason})`)
        continue
      }
      const info = attempt.right
      if (backendCatalog[name].autoRequiresHardwareGpu && !info.gpu) {
        notes.push(`${name} skipped (${info.device} is not a hardware GPU; slower than wasm)`)
        fallback ??= info
        continue
      }
      const tried = notes.length === 0 ? "" : `${notes.join(", ")}; `
      return makeService(info, "auto", `auto: ${tried}picked ${describe(info)}`)
    }
    if (fallback !== undefined) {
      const info = fallback
      yield* activateTfjsBackend(info.name, info.tfjsName)
      return makeService(info, "auto", `auto: ${notes.join(", ")}; picked ${describe(info)} as the only backend that loaded`)
    }
    return yield* Effect.fail(
      new BackendUnavailable({
        backend: "auto",
        reason: `no backend could be loaded: ${notes.join(", ")}`,
        install: `for the portable default: ${backendCatalog.wasm.install}`
      })
    )
  })

/** Whether `value` names a backend (or "auto"); CLI flags and config files arrive as plain strings. */
export const isBackendChoice = (value: unknown): value is BackendChoice =>
  value === "auto" || (typeof value === "string" && Object.prototype.hasOwnProperty.call(backendCatalog, value))

/**
 * Selects, loads and activates a backend; the Effect form of {@link Backend.layer} for callers
 * without a Layer. With `providers` omitted, the backend packages are found by dynamic import.
 */
export const selectBackend = (
  choice: BackendChoice,
  providers?: ReadonlyArray<BackendProvider>
): Effect.Effect<BackendService, BackendUnavailable> =>
  !isBackendChoice(choice)
    ? Effect.fail(
        new BackendUnavailable({
          backend: String(choice),
          reason: "not a backend name",
          install: `Choose one of: auto, ${autoOrder.join(", ")}.`
        })
      )
    : choice === "auto"
    ? selectAuto(providers)
    : Effect.map(loadByName(choice, providers), (info) =>
        makeService(info, choice, `requested ${choice}; loaded ${describe(info)}`)
      )

/** The selected compute backend. Provide it with `Backend.layer(choice)`. */
export class Backend extends Context.Tag("@peftkit/core/Backend")<Backend, BackendService>() {
  /**
   * Loads `choice` (or, for `"auto"`, the first of node-gpu, webgpu on a hardware adapter, node,
   * wasm, cpu that loads) and makes it tfjs's active backend. A named backend that cannot load
   * fails with `BackendUnavailable` saying what to install.
   */
  static layer(
    choice: BackendChoice = "auto",
    providers?: ReadonlyArray<BackendProvider>
  ): Layer.Layer<Backend, BackendUnavailable> {
    return Layer.effect(Backend, selectBackend(choice, providers))
  }
}

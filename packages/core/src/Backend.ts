/**
 * The compute backend as a service. Library code asks for `Backend`; the application picks one with
 * `Backend.layer("wasm")` (or `"auto"`), exactly like choosing `@effect/platform-node` over
 * `-browser`. Core knows no concrete backend: backend packages export providers, and the
 * application registers them (`registerBackends`, see `BackendRegistry.ts`) or passes them here.
 * A provider registers its tfjs backend only when its `load` runs, never at import time.
 *
 * tfjs keeps one global active backend, so building two Backend layers in one process means the
 * later one wins; build it once at the edge of the program.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Context, Effect, Layer } from "effect"
import { type BackendInfo, type BackendProvider, byPriority, registeredBackends } from "./BackendRegistry.js"
import { BackendUnavailable } from "./Errors.js"

/** A backend's name, as its provider gives it ("wasm", "webgpu", a user's own, ...). */
export type BackendName = string

/** A backend name, or `"auto"` for the highest-priority one that loads here. */
export type BackendChoice = BackendName | "auto"

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

/** The service: the selected backend, a memory probe, and why it was selected. */
export interface BackendService {
  readonly info: BackendInfo
  memory(): MemoryStats
  readonly selection: { readonly requested: BackendChoice; readonly reason: string }
}

/** Builds the typed error for backend `name`; `install` comes from its provider. */
export const backendUnavailable = (name: string, reason: string, install: string): BackendUnavailable =>
  new BackendUnavailable({ backend: name, reason, install })

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
  install: string
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

// --- selection --------------------------------------------------------------------------------

const NO_PROVIDERS =
  "install a peftkit backend package (or write a provider) and register its providers: " +
  "registerBackends(providers), or Backend.layer(choice, providers)"

const listNames = (providers: ReadonlyArray<BackendProvider>, source: "registered" | "given" = "registered"): string =>
  providers.length === 0 ? `none is ${source}` : `${source}: ${providers.map((p) => p.name).join(", ")}`

/** Levenshtein distance, for "did you mean" on a mistyped backend name. */
const distance = (a: string, b: string): number => {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)))
    row = next
  }
  return row[b.length]!
}

const didYouMean = (name: string, providers: ReadonlyArray<BackendProvider>): string => {
  const close = providers.map((p) => p.name).filter((candidate) => distance(name.toLowerCase(), candidate.toLowerCase()) <= 2)
  return close.length === 0 ? "" : `; did you mean ${close.map((c) => `'${c}'`).join(" or ")}?`
}

const makeService = (info: BackendInfo, requested: BackendChoice, reason: string): BackendService => ({
  info,
  memory: readMemory,
  selection: { requested, reason }
})

const describe = (info: BackendInfo): string => `${info.name} (${info.device})`

const selectAuto = (providers: ReadonlyArray<BackendProvider>): Effect.Effect<BackendService, BackendUnavailable> =>
  Effect.gen(function* () {
    const notes: Array<string> = []
    // A backend loaded but passed over (software WebGPU): better than nothing if all else fails.
    let fallback: { readonly info: BackendInfo; readonly provider: BackendProvider } | undefined
    for (const provider of providers) {
      const attempt = yield* Effect.either(provider.load)
      if (attempt._tag === "Left") {
        notes.push(`${provider.name} unavailable (${attempt.left.reason})`)
        continue
      }
      const info = attempt.right
      if (provider.autoRequiresHardwareGpu === true && !info.gpu) {
        notes.push(`${provider.name} skipped (${info.device} is not a hardware GPU; slower than the CPU backends)`)
        fallback ??= { info, provider }
        continue
      }
      const tried = notes.length === 0 ? "" : `${notes.join(", ")}; `
      return makeService(info, "auto", `auto: ${tried}picked ${describe(info)}`)
    }
    if (fallback !== undefined) {
      const { info, provider } = fallback
      yield* activateTfjsBackend(info.name, info.tfjsName, provider.install)
      return makeService(info, "auto", `auto: ${notes.join(", ")}; picked ${describe(info)} as the only backend that loaded`)
    }
    // The lowest priority is the most portable one: its install is the most likely to work.
    const portable = providers.at(-1)
    return yield* Effect.fail(
      new BackendUnavailable({
        backend: "auto",
        reason: providers.length === 0 ? "no backend provider is registered" : `no backend could be loaded: ${notes.join(", ")}`,
        install: portable === undefined ? NO_PROVIDERS : `for the most portable one (${portable.name}): ${portable.install}`
      })
    )
  })

/**
 * Whether `value` can name a backend (or "auto"): CLI flags and config files arrive as plain
 * strings. Only the form is checked; whether such a backend is registered is `selectBackend`'s
 * question, answered with the registered names.
 */
export const isBackendChoice = (value: unknown): value is BackendChoice =>
  typeof value === "string" && /^[a-z0-9][a-z0-9._-]*$/i.test(value)

/**
 * Selects, loads and activates a backend; the Effect form of {@link Backend.layer} for callers
 * without a Layer. Chooses among `providers` when given, else among the registered ones
 * (`registerBackends`); `"auto"` tries them by priority.
 */
export const selectBackend = (
  choice: BackendChoice,
  providers?: ReadonlyArray<BackendProvider>
): Effect.Effect<BackendService, BackendUnavailable> =>
  Effect.suspend(() => {
    const candidates = providers === undefined ? registeredBackends() : byPriority(providers)
    if (!isBackendChoice(choice)) {
      return Effect.fail(
        new BackendUnavailable({ backend: String(choice), reason: "not a backend name", install: `Choose auto or a backend (${listNames(candidates)}).` })
      )
    }
    if (choice === "auto") return selectAuto(candidates)
    const provider = candidates.find((p) => p.name === choice)
    if (provider === undefined) {
      return Effect.fail(
        new BackendUnavailable({
          backend: choice,
          reason: `no provider for it is ${providers === undefined ? "registered" : "given"} (${listNames(candidates, providers === undefined ? "registered" : "given")})${didYouMean(choice, candidates)}`,
          install: NO_PROVIDERS
        })
      )
    }
    return Effect.map(provider.load, (info) => makeService(info, choice, `requested ${choice}; loaded ${describe(info)}`))
  })

/** The selected compute backend. Provide it with `Backend.layer(choice)`. */
export class Backend extends Context.Tag("@peftkit/core/Backend")<Backend, BackendService>() {
  /**
   * Loads `choice` (or, for `"auto"`, the highest-priority provider that loads, passing over one
   * that wants a hardware GPU and found none) and makes it tfjs's active backend. Chooses among
   * `providers` when given, else the registered ones. A backend that cannot load fails with
   * `BackendUnavailable` saying what to install; an unknown name lists the known ones.
   */
  static layer(
    choice: BackendChoice = "auto",
    providers?: ReadonlyArray<BackendProvider>
  ): Layer.Layer<Backend, BackendUnavailable> {
    return Layer.effect(Backend, selectBackend(choice, providers))
  }
}

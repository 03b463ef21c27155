/**
 * The WebGPU backend (`@tensorflow/tfjs-backend-webgpu`). In a browser it uses `navigator.gpu`;
 * in Node it first installs Dawn's implementation from the `webgpu` package (an optional peer) on
 * `globalThis.navigator.gpu`, because tfjs registers its webgpu backend only if `navigator.gpu`
 * exists when the backend module is imported. Everything happens inside `load`; importing this
 * file touches no global.
 *
 * The adapter is inspected before tfjs uses it: vendor, architecture, limits, and whether it is a
 * software rasteriser (SwiftShader, llvmpipe, lavapipe), which `auto` passes over for wasm.
 */
import { activateTfjsBackend, backendUnavailable, firstLine, isModuleNotFound } from "@peftkit/core"
import type { BackendInfo, BackendProvider } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"

// Minimal structural WebGPU types: enough for what we read, without depending on @webgpu/types.
export interface GpuAdapterInfoLike {
  readonly vendor?: string
  readonly architecture?: string
  readonly device?: string
  readonly description?: string
  readonly isFallbackAdapter?: boolean
}

export interface GpuAdapterLike {
  readonly features: { has(feature: string): boolean }
  readonly limits: Readonly<Record<string, number>>
  readonly info?: GpuAdapterInfoLike
  readonly isFallbackAdapter?: boolean
  requestAdapterInfo?(): Promise<GpuAdapterInfoLike>
  requestDevice(descriptor?: unknown): Promise<unknown>
}

export interface GpuLike {
  requestAdapter(options?: { powerPreference?: "low-power" | "high-performance" }): Promise<GpuAdapterLike | null>
}

/** What we report about an adapter. */
export interface AdapterDescription {
  readonly vendor: string
  readonly architecture: string
  readonly device: string
  readonly description: string
  readonly software: boolean
  readonly limits: {
    readonly maxBufferSize: number
    readonly maxStorageBufferBindingSize: number
    readonly maxComputeWorkgroupStorageSize: number
  }
}

export interface WebGpuOptions {
  /** Flags for Dawn's `create()` in Node, e.g. `["enable-dawn-features=allow_unsafe_apis"]`. */
  readonly dawnOptions?: ReadonlyArray<string>
  /** Which adapter to ask for; default "high-performance", as tfjs does. */
  readonly powerPreference?: "low-power" | "high-performance"
  /** How to import the `webgpu` package in Node (injectable for tests). */
  readonly importDawn?: () => Promise<unknown>
  /**
   * Node only: ask Dawn for an adapter in a short-lived child process first, and load Dawn into
   * this process only when that adapter is a hardware GPU. Dawn writes its Vulkan diagnostics
   * ("Warning: Couldn't load Vulkan", "... artificially reduced ...") to the native stderr, which
   * no JavaScript can silence; in the child they are captured, and the first one that explains a
   * missing adapter goes into the failure's reason. Meant for `auto`, where probing WebGPU is a
   * question, not a request (the CLI sets it); ignored with `importDawn` or in a browser.
   */
  readonly quietProbe?: boolean
}

/** What to install for WebGPU: the hint of this provider's errors. */
export const webgpuInstall =
  "npm install @peftkit/backend-webgpu webgpu (in Node; Linux needs a Vulkan driver, e.g. " +
  "mesa-vulkan-drivers >= 25; in a browser @peftkit/backend-webgpu alone, on a WebGPU-enabled browser)"

const unavailable = (reason: string, install: string = webgpuInstall) => backendUnavailable("webgpu", reason, install)

const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|software|basic render driver/i

/** Reads vendor, architecture, limits and software-ness off an adapter (info or the older method). */
export const describeAdapter = async (adapter: GpuAdapterLike): Promise<AdapterDescription> => {
  const info: GpuAdapterInfoLike =
    adapter.info ?? (adapter.requestAdapterInfo === undefined ? {} : await adapter.requestAdapterInfo())
  const vendor = info.vendor ?? ""
  const architecture = info.architecture ?? ""
  const device = info.device ?? ""
  const description = info.description ?? ""
  const fallback = info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false
  const software = fallback || SOFTWARE_ADAPTER.test([vendor, architecture, device, description].join(" "))
  const limit = (name: string): number => Number(adapter.limits[name] ?? 0)
  return {
    vendor,
    architecture,
    device,
    description,
    software,
    limits: {
      maxBufferSize: limit("maxBufferSize"),
      maxStorageBufferBindingSize: limit("maxStorageBufferBindingSize"),
      maxComputeWorkgroupStorageSize: limit("maxComputeWorkgroupStorageSize")
    }
  }
}

const isNode = (): boolean =>
  typeof process !== "undefined" && typeof (process as { versions?: { node?: string } }).versions?.node === "string"

const currentGpu = (): GpuLike | undefined =>
  (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu ?? undefined

const importDawnDefault = (): Promise<unknown> => {
  const specifier = "webgpu"
  return import(/* @vite-ignore */ specifier)
}

/** Puts Dawn on `navigator.gpu` (Node), or fails saying what is missing. */
const ensureNavigatorGpu = (options: WebGpuOptions): Effect.Effect<GpuLike, ReturnType<typeof unavailable>> =>
  Effect.gen(function* () {
    const existing = currentGpu()
    if (existing !== undefined) return existing
    if (!isNode()) {
      return yield* Effect.fail(
        unavailable("this browser does not expose navigator.gpu (WebGPU)",
          "use a WebGPU-enabled browser (Chrome/Edge 113+; headless Chromium needs --enable-unsafe-webgpu)"
        )
      )
    }
    const dawn = yield* Effect.tryPromise({
      try: options.importDawn ?? importDawnDefault,
      catch: (error) =>
        isModuleNotFound(error, "webgpu")
          ? unavailable("the `webgpu` package (Dawn for Node) is not installed")
          : unavailable(`the \`webgpu\` package (Dawn) failed to load: ${firstLine(error)}`)
    })
    const { create, globals } = dawn as {
      create?: (options: ReadonlyArray<string>) => GpuLike
      globals?: Record<string, unknown>
    }
    if (typeof create !== "function") {
      return yield* Effect.fail(unavailable("the `webgpu` package exports no create()"))
    }
    const gpu = yield* Effect.try({
      try: () => create([...(options.dawnOptions ?? [])]),
      catch: (error) => unavailable(`Dawn's create() failed: ${firstLine(error)}`)
    })
    // GPUBufferUsage, GPUMapMode, ... which tfjs's webgpu backend reads as globals.
    if (globals !== undefined) Object.assign(globalThis, globals)
    const g = globalThis as { navigator?: object }
    g.navigator ??= {}
    Object.defineProperty(g.navigator, "gpu", { value: gpu, configurable: true, writable: true })
    return gpu
  })

/** A Node built-in by a non-literal specifier, so browser bundles (which never probe quietly) do not follow it. */
const importNode = (specifier: string): Promise<unknown> => import(/* @vite-ignore */ specifier)

/** What the child process of a quiet probe found. */
export interface QuietProbeResult {
  /** The adapter's description, or null when Dawn found none. */
  readonly adapter: AdapterDescription | null
  /** Dawn's stderr lines that say something (the limit-clamping notes left out). */
  readonly dawnWarnings: ReadonlyArray<string>
}

// Runs in the child: Dawn from the URL in argv[1], options in argv[2]; one JSON line on stdout.
const PROBE_SCRIPT = `
const [url, raw] = process.argv.slice(1)
const options = JSON.parse(raw)
const dawn = await import(url)
const gpu = dawn.create(options.dawnOptions)
const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference })
let found = null
if (adapter) {
  const info = adapter.info ?? (typeof adapter.requestAdapterInfo === "function" ? await adapter.requestAdapterInfo() : {}) ?? {}
  const limits = {}
  for (const name of ["maxBufferSize", "maxStorageBufferBindingSize", "maxComputeWorkgroupStorageSize"]) limits[name] = Number(adapter.limits[name] ?? 0)
  found = { info: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, isFallbackAdapter: info.isFallbackAdapter ?? adapter.isFallbackAdapter }, limits }
}
process.stdout.write(JSON.stringify({ found }) + "\\n")
process.exit(0)
`

/** Dawn's stderr, less stack frames and the notes that every Vulkan adapter prints. */
const dawnWarnings = (stderr: string): ReadonlyArray<string> =>
  stderr
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("at ") && !/artificially reduced/.test(line))
    .map((line) => line.replace(/^Warning:\s*/, ""))

/**
 * Node: asks Dawn for an adapter in a child process (see {@link WebGpuOptions.quietProbe}), so
 * nothing Dawn prints reaches this process's stderr. Fails when `webgpu` is not installed or the
 * child cannot run.
 */
export const probeAdapterQuietly = (options: WebGpuOptions = {}): Effect.Effect<QuietProbeResult, ReturnType<typeof unavailable>> =>
  Effect.gen(function* () {
    const { createRequire } = (yield* Effect.promise(() => importNode("node:module"))) as typeof import("node:module")
    const { pathToFileURL } = (yield* Effect.promise(() => importNode("node:url"))) as typeof import("node:url")
    const { execFile } = (yield* Effect.promise(() => importNode("node:child_process"))) as typeof import("node:child_process")
    const url = yield* Effect.try({
      try: () => pathToFileURL(createRequire(import.meta.url).resolve("webgpu")).href,
      catch: () => unavailable("the `webgpu` package (Dawn for Node) is not installed")
    })
    const args = ["--input-type=module", "-e", PROBE_SCRIPT, url, JSON.stringify({ dawnOptions: [...(options.dawnOptions ?? [])], powerPreference: options.powerPreference ?? "high-performance" })]
    const { stdout, stderr, error } = yield* Effect.async<{ stdout: string; stderr: string; error: Error | null }>((resume) => {
      const child = execFile(process.execPath, args, { timeout: 60_000, maxBuffer: 1 << 20, windowsHide: true }, (error, stdout, stderr) =>
        resume(Effect.succeed({ stdout: String(stdout), stderr: String(stderr), error }))
      )
      return Effect.sync(() => void child.kill())
    })
    const warnings = dawnWarnings(stderr)
    const line = stdout.trim().split("\n").at(-1) ?? ""
    let parsed: { found: { info: GpuAdapterInfoLike; limits: Record<string, number> } | null } | undefined
    try {
      parsed = JSON.parse(line) as typeof parsed
    } catch {
      parsed = undefined
    }
    if (parsed === undefined) {
      const why = warnings.find((w) => !/^(file|node):/.test(w)) ?? firstLine(error ?? "no answer")
      return yield* Effect.fail(unavailable(`the \`webgpu\` package (Dawn) failed in a probe process: ${why}`))
    }
    if (parsed.found === null) return { adapter: null, dawnWarnings: warnings }
    const { info, limits } = parsed.found
    const adapter = yield* Effect.promise(() => describeAdapter({ info, limits, features: { has: () => false }, requestDevice: async () => undefined }))
    return { adapter, dawnWarnings: warnings }
  })

/** No adapter: what to do about it, in Node or a browser. */
const noAdapterInstall = (): string =>
  isNode()
    ? "Dawn needs a working Vulkan driver: on Linux install one, e.g. mesa-vulkan-drivers >= 25 " +
      "(Debian bookworm-backports); check with `vulkaninfo --summary`"
    : "enable WebGPU in the browser (chrome://gpu), or use one that supports it"

/** The probe first (see {@link WebGpuOptions.quietProbe}): fails unless it found a hardware adapter. */
const quietProbeFirst = (options: WebGpuOptions): Effect.Effect<void, ReturnType<typeof unavailable>> =>
  Effect.gen(function* () {
    if (options.quietProbe !== true || options.importDawn !== undefined || !isNode() || currentGpu() !== undefined) return
    const { adapter, dawnWarnings: warnings } = yield* probeAdapterQuietly(options)
    if (adapter === null) {
      // The line that says why (no Vulkan library, no driver) rather than the loader's first note.
      const why = warnings.find((w) => /couldn't load|no drivers|not found|cannot open/i.test(w)) ?? warnings[0]
      const dawn = why === undefined ? "" : `; Dawn: ${why.length > 120 ? `${why.slice(0, 117)}...` : why}`
      return yield* Effect.fail(unavailable(`no WebGPU adapter found (probed quietly${dawn})`, noAdapterInstall()))
    }
    if (adapter.software) {
      const name = adapter.description || [adapter.vendor, adapter.architecture].filter((s) => s).join(" ") || "the adapter"
      return yield* Effect.fail(unavailable(`${name} (WebGPU, software) is not a hardware GPU; slower than the CPU backends (probed quietly, not loaded)`))
    }
  })

/** A WebGPU provider with explicit options; {@link webgpu} is the default one. */
export const makeWebGpuProvider = (options: WebGpuOptions = {}): BackendProvider => ({
  name: "webgpu",
  // After native CUDA, before native CPU; auto takes it only on a hardware adapter.
  priority: 300,
  device: "gpu",
  autoRequiresHardwareGpu: true,
  packageName: "@peftkit/backend-webgpu",
  install: webgpuInstall,
  load: Effect.gen(function* () {
    yield* quietProbeFirst(options)
    const gpu = yield* ensureNavigatorGpu(options)
    // Imported only now that navigator.gpu exists: that is when it registers its backend (and
    // its flags, such as WEBGPU_USE_LOW_POWER_GPU).
    const module = yield* Effect.tryPromise({
      try: () => import("@tensorflow/tfjs-backend-webgpu"),
      catch: (error) => unavailable(`cannot import @tensorflow/tfjs-backend-webgpu: ${firstLine(error)}`)
    })
    const powerPreference = options.powerPreference ?? "high-performance"
    tf.env().set("WEBGPU_USE_LOW_POWER_GPU", powerPreference === "low-power")
    const adapter = yield* Effect.tryPromise({
      try: () => gpu.requestAdapter({ powerPreference }),
      catch: (error) => unavailable(`requestAdapter failed: ${firstLine(error)}`)
    })
    if (adapter === null || adapter === undefined) {
      return yield* Effect.fail(unavailable("no WebGPU adapter found", noAdapterInstall()))
    }
    const described = yield* Effect.promise(() => describeAdapter(adapter))
    if (tf.findBackendFactory("webgpu") == null && tf.findBackend("webgpu") == null) {
      // The module was first imported before navigator.gpu existed, so it registered nothing.
      // Register the same factory tfjs would have, on the adapter we just inspected.
      tf.registerBackend(
        "webgpu",
        async () => {
          const required = [
            "maxComputeWorkgroupStorageSize",
            "maxComputeWorkgroupsPerDimension",
            "maxStorageBufferBindingSize",
            "maxBufferSize",
            "maxComputeWorkgroupSizeX",
            "maxComputeInvocationsPerWorkgroup"
          ]
          const device = await adapter.requestDevice({
            requiredFeatures: adapter.features.has("timestamp-query") ? ["timestamp-query"] : [],
            requiredLimits: Object.fromEntries(required.map((k) => [k, adapter.limits[k]]))
          })
          const info = adapter.info ?? (await adapter.requestAdapterInfo?.())
          return new module.WebGPUBackend(device as never, info as never)
        },
        3
      )
    }
    yield* activateTfjsBackend("webgpu", "webgpu", webgpuInstall)
    const name = described.description || [described.vendor, described.architecture].filter((s) => s).join(" ")
    return {
      name: "webgpu",
      tfjsName: "webgpu",
      device: `${name || "unknown adapter"} (WebGPU${described.software ? ", software" : ""})`,
      gpu: !described.software,
      details: {
        vendor: described.vendor,
        architecture: described.architecture,
        adapterDevice: described.device,
        description: described.description,
        software: described.software,
        runtime: isNode() ? "node (Dawn)" : "browser",
        ...described.limits
      }
    } satisfies BackendInfo
  })
})

/** The WebGPU backend with default options. */
export const webgpu: BackendProvider = makeWebGpuProvider()

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
      return yield* Effect.fail(
        unavailable("no WebGPU adapter found",
          isNode()
            ? "Dawn needs a working Vulkan driver: on Linux install one, e.g. mesa-vulkan-drivers >= 25 " +
                "(Debian bookworm-backports); check with `vulkaninfo --summary`"
            : "enable WebGPU in the browser (chrome://gpu), or use one that supports it"
        )
      )
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

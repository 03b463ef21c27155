import { Backend, BackendUnavailable } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import { createRequire } from "node:module"
import { afterEach, describe, expect, it } from "vitest"
import { describeAdapter, type GpuAdapterLike, makeWebGpuProvider, providers, webgpu } from "../src/index.js"

const dawnInstalled = (() => {
  try {
    createRequire(import.meta.url).resolve("webgpu")
    return true
  } catch {
    return false
  }
})()

const loadEither = (provider = webgpu) => Effect.runPromise(Effect.either(provider.load))

// Loading installs navigator.gpu (and Dawn's globals) process-wide; tests that fake it put it back.
const g = globalThis as { navigator?: { gpu?: unknown } }
const originalNavigator = g.navigator
afterEach(() => {
  if (originalNavigator === undefined) delete g.navigator
  else if (g.navigator !== undefined) delete g.navigator.gpu
})

const adapter = (info: Record<string, unknown>, extra: Partial<GpuAdapterLike> = {}): GpuAdapterLike => ({
  features: { has: () => false },
  limits: { maxBufferSize: 268435456, maxStorageBufferBindingSize: 134217728, maxComputeWorkgroupStorageSize: 16384 },
  info,
  requestDevice: async () => ({}),
  ...extra
})

describe("the real environment", () => {
  it("exports one provider", () => {
    expect(providers.map((p) => p.name)).toEqual(["webgpu"])
    expect(webgpu.install).toMatch(/^npm install @peftkit\/backend-webgpu webgpu /)
  })

  it.skipIf(dawnInstalled)("without the `webgpu` package: a typed error saying what to install", async () => {
    const result = await loadEither()
    const e = Either.getOrThrow(Either.flip(result))
    expect(e).toBeInstanceOf(BackendUnavailable)
    expect(e.backend).toBe("webgpu")
    expect(e.reason).toBe("the `webgpu` package (Dawn for Node) is not installed")
    expect(e.install).toContain("npm install @peftkit/backend-webgpu webgpu")
    expect(e.install).toContain("Linux needs a Vulkan driver, e.g. mesa-vulkan-drivers >= 25")
    expect(g.navigator?.gpu).toBeUndefined()
  })

  it.skipIf(!dawnInstalled)("with Dawn: a matmul on the adapter, or 'no WebGPU adapter found' without a Vulkan driver", async () => {
    const result = await loadEither()
    if (Either.isLeft(result)) {
      // No Vulkan driver (libvulkan / Mesa >= 25) on this machine: the documented typed error.
      expect(result.left.reason).toBe("no WebGPU adapter found")
      expect(result.left.install).toContain("mesa-vulkan-drivers >= 25")
      return
    }
    const info = result.right
    expect(tf.getBackend()).toBe("webgpu")
    expect(info.details["maxBufferSize"]).toBeGreaterThan(0)
    const values = await tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]), tf.tensor2d([7, 8, 9, 10, 11, 12], [3, 2]))).data()
    expect(Array.from(values)).toEqual([58, 64, 139, 154])
  })
})

describe("injected Dawn", () => {
  it("no adapter: 'no WebGPU adapter found' with the Vulkan hint", async () => {
    const provider = makeWebGpuProvider({
      importDawn: async () => ({ create: () => ({ requestAdapter: async () => null }), globals: {} })
    })
    const e = Either.getOrThrow(Either.flip(await loadEither(provider)))
    expect(e.reason).toBe("no WebGPU adapter found")
    expect(e.install).toMatch(/Vulkan driver.*mesa-vulkan-drivers >= 25/)
    expect(e.message).toMatch(/^backend 'webgpu' is unavailable: no WebGPU adapter found\. /)
  })

  it("Dawn present but its native part fails: the first line of the error", async () => {
    const provider = makeWebGpuProvider({
      importDawn: async () => {
        throw new Error("libvulkan.so.1: cannot open shared object file\n    at dlopen")
      }
    })
    const e = Either.getOrThrow(Either.flip(await loadEither(provider)))
    expect(e.reason).toBe("the `webgpu` package (Dawn) failed to load: libvulkan.so.1: cannot open shared object file")
    expect(g.navigator?.gpu).toBeUndefined()
  })

  it("Node's own not-found error is recognised as 'not installed'", async () => {
    const provider = makeWebGpuProvider({
      importDawn: async () => {
        throw Object.assign(new Error("Cannot find package 'webgpu' imported from /app/x.js"), { code: "ERR_MODULE_NOT_FOUND" })
      }
    })
    const e = Either.getOrThrow(Either.flip(await loadEither(provider)))
    expect(e.reason).toBe("the `webgpu` package (Dawn for Node) is not installed")
    expect(e.install).toContain("npm install @peftkit/backend-webgpu webgpu")
    expect(e.install).toContain("Linux needs a Vulkan driver, e.g. mesa-vulkan-drivers >= 25")
  })

  it("a module without create() is a typed error", async () => {
    const provider = makeWebGpuProvider({ importDawn: async () => ({}) })
    const e = Either.getOrThrow(Either.flip(await loadEither(provider)))
    expect(e.reason).toBe("the `webgpu` package exports no create()")
  })

  it("an existing navigator.gpu is used as is, without importing Dawn", async () => {
    let imported = false
    let asked: unknown
    g.navigator ??= {}
    g.navigator.gpu = {
      requestAdapter: async (options: unknown) => {
        asked = options
        return null
      }
    }
    const provider = makeWebGpuProvider({
      powerPreference: "low-power",
      importDawn: async () => {
        imported = true
        return {}
      }
    })
    const e = Either.getOrThrow(Either.flip(await loadEither(provider)))
    expect(imported).toBe(false)
    expect(asked).toEqual({ powerPreference: "low-power" })
    expect(e.reason).toBe("no WebGPU adapter found")
  })

  it("Backend.layer('webgpu') fails with the typed error and does not fall back", async () => {
    const provider = makeWebGpuProvider({
      importDawn: async () => ({ create: () => ({ requestAdapter: async () => null }) })
    })
    const result = await Effect.runPromise(Effect.either(Effect.provide(Backend, Backend.layer("webgpu", [provider]))))
    expect(Either.getOrThrow(Either.flip(result)).backend).toBe("webgpu")
  })
})

describe("describeAdapter", () => {
  it("a hardware adapter, with its limits", async () => {
    const d = await describeAdapter(adapter({ vendor: "nvidia", architecture: "hopper", device: "", description: "NVIDIA H100" }))
    expect(d).toEqual({
      vendor: "nvidia",
      architecture: "hopper",
      device: "",
      description: "NVIDIA H100",
      software: false,
      limits: { maxBufferSize: 268435456, maxStorageBufferBindingSize: 134217728, maxComputeWorkgroupStorageSize: 16384 }
    })
  })

  it.each([
    [{ vendor: "google", architecture: "swiftshader" }],
    [{ vendor: "mesa", description: "llvmpipe (LLVM 19.1.7, 256 bits)" }],
    [{ vendor: "mesa", description: "Lavapipe" }],
    [{ vendor: "microsoft", description: "Microsoft Basic Render Driver" }],
    [{ vendor: "x", isFallbackAdapter: true }]
  ])("software: %o", async (info) => {
    expect((await describeAdapter(adapter(info))).software).toBe(true)
  })

  it("older implementations: requestAdapterInfo() and adapter.isFallbackAdapter", async () => {
    const old: GpuAdapterLike = {
      features: { has: () => false },
      limits: {},
      isFallbackAdapter: true,
      requestAdapterInfo: async () => ({ vendor: "intel", architecture: "gen-12lp" }),
      requestDevice: async () => ({})
    }
    const d = await describeAdapter(old)
    expect(d).toMatchObject({ vendor: "intel", architecture: "gen-12lp", software: true, limits: { maxBufferSize: 0 } })
  })
})

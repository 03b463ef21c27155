import { cpu } from "@peftkit/backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either, Layer } from "effect"
import { describe, expect, it } from "vitest"
import {
  autoOrder,
  Backend,
  type BackendInfo,
  type BackendName,
  type BackendProvider,
  BackendUnavailable,
  backendCatalog,
  firstLine,
  isModuleNotFound,
  measurePeakBytes,
  selectBackend
} from "../src/index.js"

const run = <A, E>(effect: Effect.Effect<A, E, Backend>, layer: Layer.Layer<Backend, BackendUnavailable>) =>
  Effect.runPromise(Effect.either(Effect.provide(effect, layer)))

const service = Effect.gen(function* () {
  return yield* Backend
})

/** A provider that records being tried and either fails or "loads" without touching tfjs. */
const fake = (
  name: BackendName,
  calls: Array<string>,
  outcome: { readonly fail: string } | { readonly gpu: boolean; readonly device: string; readonly tfjsName?: string }
): BackendProvider => ({
  name,
  packageName: backendCatalog[name].packageName,
  install: backendCatalog[name].install,
  load: Effect.suspend(() => {
    calls.push(name)
    if ("fail" in outcome) {
      return Effect.fail(new BackendUnavailable({ backend: name, reason: outcome.fail, install: backendCatalog[name].install }))
    }
    return Effect.succeed<BackendInfo>({
      name,
      tfjsName: outcome.tfjsName ?? name,
      device: outcome.device,
      gpu: outcome.gpu,
      details: {}
    })
  })
})

describe("auto selection", () => {
  it("documents its order", () => {
    expect(autoOrder).toEqual(["node-gpu", "webgpu", "node", "wasm", "cpu"])
  })

  it("tries node-gpu, webgpu, node, wasm in order and says why it picked wasm", async () => {
    const calls: Array<string> = []
    const providers = [
      fake("cpu", calls, { gpu: false, device: "JS" }),
      fake("wasm", calls, { gpu: false, device: "CPU via WebAssembly (SIMD, 1 thread)" }),
      fake("node", calls, { fail: "@tensorflow/tfjs-node is not installed" }),
      fake("webgpu", calls, { fail: "no WebGPU adapter found" }),
      fake("node-gpu", calls, { fail: "@tensorflow/tfjs-node-gpu is not installed" })
    ]
    const result = await run(service, Backend.layer("auto", providers))
    const backend = Either.getOrThrow(result)
    expect(calls).toEqual(["node-gpu", "webgpu", "node", "wasm"])
    expect(backend.info.name).toBe("wasm")
    expect(backend.selection).toEqual({
      requested: "auto",
      reason:
        "auto: node-gpu unavailable (@tensorflow/tfjs-node-gpu is not installed), webgpu unavailable (no WebGPU " +
        "adapter found), node unavailable (@tensorflow/tfjs-node is not installed); picked wasm (CPU via " +
        "WebAssembly (SIMD, 1 thread))"
    })
  })

  it("takes the first that loads: node-gpu", async () => {
    const calls: Array<string> = []
    const providers = [
      fake("node-gpu", calls, { gpu: true, device: "NVIDIA H100 (CUDA)" }),
      fake("wasm", calls, { gpu: false, device: "wasm" })
    ]
    const backend = Either.getOrThrow(await run(service, Backend.layer("auto", providers)))
    expect(calls).toEqual(["node-gpu"])
    expect(backend.selection.reason).toBe("auto: picked node-gpu (NVIDIA H100 (CUDA))")
  })

  it("takes webgpu on a hardware adapter", async () => {
    const calls: Array<string> = []
    const providers = [
      fake("node-gpu", calls, { fail: "not installed" }),
      fake("webgpu", calls, { gpu: true, device: "nvidia ampere (WebGPU)" }),
      fake("wasm", calls, { gpu: false, device: "wasm" })
    ]
    const backend = Either.getOrThrow(await run(service, Backend.layer("auto", providers)))
    expect(calls).toEqual(["node-gpu", "webgpu"])
    expect(backend.info.name).toBe("webgpu")
  })

  it("skips webgpu on a software adapter (slower than wasm)", async () => {
    const calls: Array<string> = []
    const providers = [
      fake("webgpu", calls, { gpu: false, device: "google swiftshader (WebGPU, software)" }),
      fake("wasm", calls, { gpu: false, device: "wasm" })
    ]
    const backend = Either.getOrThrow(await run(service, Backend.layer("auto", providers)))
    expect(calls).toEqual(["webgpu", "wasm"])
    expect(backend.info.name).toBe("wasm")
    expect(backend.selection.reason).toBe(
      "auto: node-gpu unavailable (no provider for it was given), webgpu skipped (google swiftshader (WebGPU, " +
        "software) is not a hardware GPU; slower than wasm), node unavailable (no provider for it was given); " +
        "picked wasm (wasm)"
    )
  })

  it("falls back to a software webgpu when nothing else loads, re-activating it", async () => {
    await Effect.runPromise(cpu.load) // the fake "webgpu" below runs on tfjs's cpu backend
    const calls: Array<string> = []
    const providers = [fake("webgpu", calls, { gpu: false, device: "llvmpipe (WebGPU, software)", tfjsName: "cpu" })]
    const backend = Either.getOrThrow(await run(service, Backend.layer("auto", providers)))
    expect(backend.info.name).toBe("webgpu")
    expect(backend.selection.reason).toMatch(/picked webgpu \(llvmpipe \(WebGPU, software\)\) as the only backend that loaded$/)
    expect(tf.getBackend()).toBe("cpu")
  })

  it("fails with every reason and the portable install hint when nothing loads", async () => {
    const calls: Array<string> = []
    const providers = [fake("node-gpu", calls, { fail: "libcudart.so.11.0 missing" })]
    const error = Either.flip(await run(service, Backend.layer("auto", providers)))
    const e = Either.getOrThrow(error)
    expect(e).toBeInstanceOf(BackendUnavailable)
    expect(e.backend).toBe("auto")
    expect(e.reason).toBe(
      "no backend could be loaded: node-gpu unavailable (libcudart.so.11.0 missing), webgpu unavailable (no " +
        "provider for it was given), node unavailable (no provider for it was given), wasm unavailable (no " +
        "provider for it was given), cpu unavailable (no provider for it was given)"
    )
    expect(e.install).toContain("npm install @peftkit/backend-cpu")
  })
})

describe("explicit selection", () => {
  it("loads only the named backend", async () => {
    const calls: Array<string> = []
    const providers = [fake("node-gpu", calls, { gpu: true, device: "GPU" }), fake("cpu", calls, { gpu: false, device: "JS" })]
    const backend = Either.getOrThrow(await run(service, Backend.layer("cpu", providers)))
    expect(calls).toEqual(["cpu"])
    expect(backend.selection).toEqual({ requested: "cpu", reason: "requested cpu; loaded cpu (JS)" })
  })

  it("fails with the provider's error when it cannot load", async () => {
    const calls: Array<string> = []
    const providers = [fake("node-gpu", calls, { fail: "libcudnn.so.8: cannot open shared object file" })]
    const e = Either.getOrThrow(Either.flip(await run(service, Backend.layer("node-gpu", providers))))
    expect(e._tag).toBe("BackendUnavailable")
    expect(e.message).toBe(
      "backend 'node-gpu' is unavailable: libcudnn.so.8: cannot open shared object file. npm install " +
        "@peftkit/backend-node @tensorflow/tfjs-node-gpu (requires Linux x64 with an NVIDIA GPU, CUDA 11.2 and " +
        "cuDNN 8.1; its install script downloads libtensorflow from storage.googleapis.com)"
    )
  })

  it("names the install when the given providers lack the backend", async () => {
    const e = Either.getOrThrow(Either.flip(await run(service, Backend.layer("webgpu", []))))
    expect(e.backend).toBe("webgpu")
    expect(e.reason).toBe("no provider for it was given")
    expect(e.install).toMatch(/^npm install @peftkit\/backend-webgpu webgpu /)
    expect(e.install).toContain("mesa-vulkan-drivers >= 25")
  })

  // tfjs-node-gpu cannot be installed with its binding here: the package is either absent, or
  // present without the libtensorflow its install script would have downloaded.
  const nativeMissing = (pkg: string) =>
    new RegExp(`^${pkg.replace("/", "\\/")} is (not installed|installed but its native binding failed to load: .+)$`)

  it("discovers @peftkit/backend-node and reports its missing native package with the CUDA prerequisites", async () => {
    const e = Either.getOrThrow(Either.flip(await Effect.runPromise(Effect.either(selectBackend("node-gpu")))))
    expect(e.backend).toBe("node-gpu")
    expect(e.reason).toMatch(nativeMissing("@tensorflow/tfjs-node-gpu"))
    expect(e.install).toContain("npm install @peftkit/backend-node @tensorflow/tfjs-node-gpu")
    expect(e.install).toContain("CUDA 11.2 and cuDNN 8.1")
  })

  it("discovers @peftkit/backend-webgpu and reports why WebGPU is not usable here", async () => {
    const result = await Effect.runPromise(Effect.either(selectBackend("webgpu")))
    // Without `webgpu` (Dawn) or without a Vulkan driver; with both, this machine has a software
    // adapter at best, which loads (explicitly asked for) but is not a GPU.
    if (Either.isRight(result)) {
      expect(result.right.info.name).toBe("webgpu")
      return
    }
    expect(result.left.reason).toMatch(/^(the `webgpu` package \(Dawn for Node\) is not installed|no WebGPU adapter found)$/)
    expect(result.left.install).toMatch(/mesa-vulkan-drivers >= 25/)
  })
})

describe("discovery of the installed @peftkit/backend-cpu", () => {
  it("loads wasm by name without providers", async () => {
    const backend = await Effect.runPromise(selectBackend("wasm"))
    expect(backend.info.name).toBe("wasm")
    expect(backend.info.details["simd"]).toBe(true)
    expect(tf.getBackend()).toBe("wasm")
  })

  it("auto picks wasm here, saying why each faster backend was passed over", async () => {
    const backend = await Effect.runPromise(selectBackend("auto"))
    expect(backend.info.name).toBe("wasm")
    const reason = backend.selection.reason
    expect(reason).toMatch(/^auto: node-gpu unavailable \(@tensorflow\/tfjs-node-gpu is (not installed|installed but its native binding failed to load: .+?)\), /)
    expect(reason).toMatch(/, webgpu (unavailable \((the `webgpu` package \(Dawn for Node\) is not installed|no WebGPU adapter found)\)|skipped \(.+ is not a hardware GPU; slower than wasm\)), /)
    expect(reason).toMatch(/, node unavailable \(@tensorflow\/tfjs-node is (not installed|installed but its native binding failed to load: .+?)\); /)
    expect(reason).toMatch(/; picked wasm \(CPU via WebAssembly \(SIMD, \d+ threads?\)\)$/)
  })
})

describe("memory", () => {
  it("memory() follows tensors being created and disposed", async () => {
    const result = await run(
      Effect.gen(function* () {
        const backend = yield* Backend
        const before = backend.memory()
        const a = tf.zeros([1000])
        const b = tf.zeros([10, 10], "int32")
        const during = backend.memory()
        tf.dispose([a, b])
        const after = backend.memory()
        return { before, during, after }
      }),
      Backend.layer("cpu", [cpu])
    )
    const { before, during, after } = Either.getOrThrow(result)
    expect(during.numTensors - before.numTensors).toBe(2)
    expect(during.numBytes - before.numBytes).toBe(4000 + 400)
    expect(after).toEqual(before)
  })

  it("measurePeakBytes sees two 1000-float tensors alive at once", async () => {
    await Effect.runPromise(cpu.load)
    const start = tf.memory().numTensors
    const measured = await measurePeakBytes(() => {
      const a = tf.ones([1000])
      const b = tf.add(a, 1) // a and b alive together: 8000 bytes
      const c = tf.sum(b)
      tf.dispose([a, b])
      return c
    })
    expect(measured.peakBytes - measured.startBytes).toBeGreaterThanOrEqual(8000)
    expect(measured.newTensors).toBe(1)
    expect(measured.newBytes).toBe(4)
    expect(measured.result.dataSync()[0]).toBe(2000)
    measured.result.dispose()
    expect(tf.memory().numTensors).toBe(start)
  })

  it("measurePeakBytes passes non-tensor results through and counts what existed before", async () => {
    await Effect.runPromise(cpu.load)
    const held = tf.zeros([250]) // 1000 bytes alive before and during
    const measured = await measurePeakBytes(async () => {
      const x = tf.ones([500])
      const y = tf.mul(x, 2)
      const value = (await y.data())[0]!
      tf.dispose([x, y])
      return { value }
    })
    expect(measured.result).toEqual({ value: 2 })
    expect(measured.peakBytes).toBeGreaterThanOrEqual(1000 + 4000)
    expect(measured.newTensors).toBe(0)
    held.dispose()
  })
})

describe("measurePeakBytes on failure", () => {
  it("rethrows and leaves tfjs profiling switched off", async () => {
    await Effect.runPromise(cpu.load)
    await expect(
      measurePeakBytes(() => {
        tf.dispose(tf.add(tf.ones([10]), 1))
        throw new Error("boom")
      })
    ).rejects.toThrow("boom")
    expect(tf.engine().state.profiling).toBe(false)
  })
})

describe("helpers for providers", () => {
  it("isModuleNotFound recognises Node's and Vite's phrasing, for that specifier only", () => {
    const node = new Error("Cannot find package 'webgpu' imported from /app/node_modules/@peftkit/backend-webgpu/dist/WebGpu.js")
    const cjs = new Error("Cannot find module '@tensorflow/tfjs-node-gpu'\nRequire stack:\n- /app/x.js")
    const vite = new Error('Could not resolve "webgpu" imported by "@peftkit/backend-webgpu". Is it installed?')
    const viteUrl = new Error("Failed to load url webgpu (resolved id: webgpu) in /app/x.ts. Does the file exist?")
    expect(isModuleNotFound(node, "webgpu")).toBe(true)
    expect(isModuleNotFound(cjs, "@tensorflow/tfjs-node-gpu")).toBe(true)
    expect(isModuleNotFound(vite, "webgpu")).toBe(true)
    expect(isModuleNotFound(viteUrl, "webgpu")).toBe(true)
    // A dependency of the package is missing: the package itself is there, so this is not "not installed".
    const transitive = new Error("Cannot find package 'adm-zip' imported from /app/node_modules/@tensorflow/tfjs-node/dist/index.js")
    expect(isModuleNotFound(transitive, "@tensorflow/tfjs-node")).toBe(false)
    expect(isModuleNotFound(node, "webgpu-extra")).toBe(false)
    expect(isModuleNotFound(new Error("libcudart.so.11.0: cannot open shared object file"), "@tensorflow/tfjs-node-gpu")).toBe(false)
  })

  it("firstLine keeps the message, not the stack or search paths", () => {
    expect(firstLine(new Error("\n  libcudnn.so.8: cannot open\n    at dlopen"))).toBe("libcudnn.so.8: cannot open")
    expect(firstLine("plain")).toBe("plain")
  })
})

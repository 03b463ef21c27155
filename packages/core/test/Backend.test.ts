import { cpu, providers as cpuProviders } from "@peftkit/backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either, Layer } from "effect"
import { describe, expect, it } from "vitest"
import {
  Backend,
  type BackendInfo,
  type BackendProvider,
  BackendUnavailable,
  backendOps,
  firstLine,
  isBackendChoice,
  isModuleNotFound,
  measurePeakBytes,
  registerBackendOps,
  registerBackends,
  registeredBackends,
  selectBackend
} from "../src/index.js"

const run = <A, E>(effect: Effect.Effect<A, E, Backend>, layer: Layer.Layer<Backend, BackendUnavailable>) =>
  Effect.runPromise(Effect.either(Effect.provide(effect, layer)))

const service = Effect.gen(function* () {
  return yield* Backend
})

/** How the real providers describe themselves (core itself knows none of this). */
const facts: Record<string, { priority: number; device: "gpu" | "cpu"; autoRequiresHardwareGpu?: boolean; packageName: string; install: string }> = {
  "node-gpu": { priority: 400, device: "gpu", packageName: "@peftkit/backend-node", install: "npm install @peftkit/backend-node @tensorflow/tfjs-node-gpu (requires CUDA 11.2 and cuDNN 8.1)" },
  webgpu: { priority: 300, device: "gpu", autoRequiresHardwareGpu: true, packageName: "@peftkit/backend-webgpu", install: "npm install @peftkit/backend-webgpu webgpu" },
  node: { priority: 200, device: "cpu", packageName: "@peftkit/backend-node", install: "npm install @peftkit/backend-node @tensorflow/tfjs-node" },
  wasm: { priority: 100, device: "cpu", packageName: "@peftkit/backend-cpu", install: "npm install @peftkit/backend-cpu" },
  cpu: { priority: 0, device: "cpu", packageName: "@peftkit/backend-cpu", install: "npm install @peftkit/backend-cpu" },
  // A user's own backend: core needs no edit for it.
  "my-npu": { priority: 500, device: "gpu", packageName: "my-npu-backend", install: "npm install my-npu-backend" }
}

/** A provider that records being tried and either fails or "loads" without touching tfjs. */
const fake = (
  name: string,
  calls: Array<string>,
  outcome: { readonly fail: string } | { readonly gpu: boolean; readonly device: string; readonly tfjsName?: string }
): BackendProvider => ({
  name,
  ...facts[name]!,
  load: Effect.suspend(() => {
    calls.push(name)
    if ("fail" in outcome) {
      return Effect.fail(new BackendUnavailable({ backend: name, reason: outcome.fail, install: facts[name]!.install }))
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
  it("tries providers by priority, whatever order they are given or registered in", () => {
    const calls: Array<string> = []
    const undo = registerBackends(["cpu", "wasm", "webgpu", "node", "node-gpu"].map((name) => fake(name, calls, { gpu: false, device: name })))
    expect(registeredBackends().map((p) => p.name)).toEqual(["node-gpu", "webgpu", "node", "wasm", "cpu"])
    undo()
    expect(registeredBackends()).toEqual([])
  })

  it("a user's own provider takes part in auto by its priority, with no edit to core", async () => {
    const calls: Array<string> = []
    const providers = [fake("wasm", calls, { gpu: false, device: "wasm" }), fake("my-npu", calls, { gpu: true, device: "NPU 1" })]
    const backend = Either.getOrThrow(await run(service, Backend.layer("auto", providers)))
    expect(calls).toEqual(["my-npu"])
    expect(backend.selection.reason).toBe("auto: picked my-npu (NPU 1)")
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
      "auto: webgpu skipped (google swiftshader (WebGPU, software) is not a hardware GPU; slower than the CPU " +
        "backends); picked wasm (wasm)"
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
    const providers = [fake("wasm", calls, { fail: "no WebAssembly" }), fake("node-gpu", calls, { fail: "libcudart.so.11.0 missing" })]
    const error = Either.flip(await run(service, Backend.layer("auto", providers)))
    const e = Either.getOrThrow(error)
    expect(e).toBeInstanceOf(BackendUnavailable)
    expect(e.backend).toBe("auto")
    expect(e.reason).toBe("no backend could be loaded: node-gpu unavailable (libcudart.so.11.0 missing), wasm unavailable (no WebAssembly)")
    expect(e.install).toBe("for the most portable one (wasm): npm install @peftkit/backend-cpu")
  })

  it("says how to register a backend when none is", async () => {
    const e = Either.getOrThrow(Either.flip(await Effect.runPromise(Effect.either(selectBackend("auto")))))
    expect(e.reason).toBe("no backend provider is registered")
    expect(e.install).toContain("registerBackends(providers)")
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
        "@peftkit/backend-node @tensorflow/tfjs-node-gpu (requires CUDA 11.2 and cuDNN 8.1)"
    )
  })

  it("an unknown name fails listing the backends it could have been", async () => {
    const calls: Array<string> = []
    const providers = [fake("cpu", calls, { gpu: false, device: "JS" }), fake("wasm", calls, { gpu: false, device: "wasm" })]
    const e = Either.getOrThrow(Either.flip(await run(service, Backend.layer("webgpu", providers))))
    expect(e.backend).toBe("webgpu")
    expect(e.reason).toBe("no provider for it is given (given: wasm, cpu)")
    expect(e.install).toContain("registerBackends(providers)")
    expect(calls).toEqual([])
    const typo = Either.getOrThrow(Either.flip(await run(service, Backend.layer("wasmm", providers))))
    expect(typo.reason).toBe("no provider for it is given (given: wasm, cpu); did you mean 'wasm'?")
  })

  it("rejects what cannot be a name, and accepts any name-shaped string (the registry decides)", async () => {
    expect(["auto", "wasm", "node-gpu", "my-npu", "x.y_z"].every(isBackendChoice)).toBe(true)
    expect(["", " wasm", "a b", 3, undefined].some(isBackendChoice)).toBe(false)
    const e = Either.getOrThrow(Either.flip(await Effect.runPromise(Effect.either(selectBackend("no such")))))
    expect(e.reason).toBe("not a backend name")
  })
})

describe("the registry with the real @peftkit/backend-cpu", () => {
  it("selects by name and by auto among registered providers only, until unregistered", async () => {
    const undo = registerBackends(cpuProviders)
    try {
      const named = await Effect.runPromise(selectBackend("cpu"))
      expect(named.info.name).toBe("cpu")
      expect(tf.getBackend()).toBe("cpu")
      const auto = await Effect.runPromise(selectBackend("auto"))
      expect(auto.selection.reason).toMatch(/^auto: picked wasm \(CPU via WebAssembly \(SIMD, \d+ threads?( for matmuls)?\)\)$/)
      expect(tf.getBackend()).toBe("wasm")
      const missing = Either.getOrThrow(Either.flip(await Effect.runPromise(Effect.either(selectBackend("webgpu")))))
      expect(missing.reason).toBe("no provider for it is registered (registered: wasm, cpu)")
    } finally {
      undo()
    }
    expect(registeredBackends()).toEqual([])
  })

  it("wasm installs its backend ops when it loads; other backends have none", async () => {
    await Effect.runPromise(cpu.load)
    expect(backendOps().attention).toBeUndefined()
    await Effect.runPromise(selectBackend("wasm", cpuProviders))
    expect(typeof backendOps().attention).toBe("function")
    const undo = registerBackendOps("cpu", { attention: () => undefined })
    await Effect.runPromise(cpu.load)
    expect(backendOps().attention?.(tf.zeros([1, 1, 1, 1]), tf.zeros([1, 1, 1, 1]), tf.zeros([1, 1, 1, 1]), undefined)).toBeUndefined()
    undo()
    expect(backendOps().attention).toBeUndefined()
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

import { Backend, BackendUnavailable, registerBackends } from "@peftkit/core"
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import { node, nodeGpu, providers } from "../src/index.js"
import { makeNodeProvider } from "../src/internal/makeNodeProvider.js"

const gpuInstall =
  "npm install @peftkit/backend-node @tensorflow/tfjs-node-gpu (requires Linux x64 with an NVIDIA GPU, CUDA 11.2 " +
  "and cuDNN 8.1; its install script downloads libtensorflow from storage.googleapis.com)"

const loadError = async (load: Effect.Effect<unknown, BackendUnavailable>): Promise<BackendUnavailable> =>
  Either.getOrThrow(Either.flip(await Effect.runPromise(Effect.either(load))))

/**
 * What tfjs-node does on import, faked: register a tfjs backend (here under its own name, running
 * tfjs's JS CPU kernels) whose instance carries the fields NodeJSKernelBackend has.
 */
const fakeNativeModule = (tfjsName: string, usingGpu: boolean) => async (): Promise<unknown> => {
  if (tf.findBackendFactory(tfjsName) == null) {
    class FakeNativeBackend extends MathBackendCPU {
      readonly isUsingGpuDevice = usingGpu
      readonly binding = { TF_Version: "2.9.1" }
    }
    tf.registerBackend(tfjsName, () => new FakeNativeBackend())
    for (const kernel of tf.getKernelsForBackend("cpu")) tf.registerKernel({ ...kernel, backendName: tfjsName })
  }
  return {}
}

const notInstalled = (pkg: string) => async (): Promise<unknown> => {
  throw Object.assign(new Error(`Cannot find package '${pkg}' imported from /app/node_modules/@peftkit/backend-node/dist/x.js`), {
    code: "ERR_MODULE_NOT_FOUND"
  })
}

const bindingFails = (message: string) => async (): Promise<unknown> => {
  throw new Error(`${message}\n    at Module._extensions..node (node:internal/modules/cjs/loader:1460:18)\n    at Module.load`)
}

const matmul = (): Array<number> =>
  tf.tidy(() => Array.from(tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([5, 6, 7, 8], [2, 2])).dataSync()))

describe("the real packages on this machine", () => {
  it("exports node-gpu then node", () => {
    expect(providers.map((p) => p.name)).toEqual(["node-gpu", "node"])
    expect(nodeGpu.packageName).toBe("@peftkit/backend-node")
    expect(nodeGpu.install).toBe(gpuInstall)
  })

  // Absent, or present without the libtensorflow its install script downloads: either way a typed error.
  it("node-gpu fails with a typed error and the CUDA install hint", async () => {
    const e = await loadError(nodeGpu.load)
    expect(e).toBeInstanceOf(BackendUnavailable)
    expect(e.backend).toBe("node-gpu")
    expect(e.reason).toMatch(/^@tensorflow\/tfjs-node-gpu is (not installed|installed but its native binding failed to load: .+)$/)
    expect(e.install).toBe(gpuInstall)
  })

  it("node fails with a typed error and its install hint", async () => {
    const e = await loadError(node.load)
    expect(e.backend).toBe("node")
    expect(e.reason).toMatch(/^@tensorflow\/tfjs-node is (not installed|installed but its native binding failed to load: .+)$/)
    expect(e.install).toMatch(/^npm install @peftkit\/backend-node @tensorflow\/tfjs-node \(/)
  })

  it("registered (registerBackends), Backend.layer('node-gpu') finds this package's provider and fails the same way", async () => {
    const undo = registerBackends(providers)
    try {
      const e = await loadError(Effect.provide(Backend, Backend.layer("node-gpu")))
      expect(e.backend).toBe("node-gpu")
      expect(e.message).toContain(gpuInstall)
    } finally {
      undo()
    }
  })

  it("describes itself to auto: node-gpu before webgpu (300) before node, both before wasm (100)", () => {
    expect(providers.map((p) => [p.name, p.priority, p.device, p.packageName])).toEqual([
      ["node-gpu", 400, "gpu", "@peftkit/backend-node"],
      ["node", 200, "cpu", "@peftkit/backend-node"]
    ])
  })
})

describe("injected importers", () => {
  it("not installed", async () => {
    const provider = makeNodeProvider("node-gpu", notInstalled("@tensorflow/tfjs-node-gpu"))
    const e = await loadError(provider.load)
    expect(e.reason).toBe("@tensorflow/tfjs-node-gpu is not installed")
    expect(e.install).toBe(gpuInstall)
  })

  it("a missing dependency of the package is a broken install, not an absent one", async () => {
    const provider = makeNodeProvider("node", notInstalled("adm-zip"))
    const e = await loadError(provider.load)
    expect(e.reason).toMatch(/^@tensorflow\/tfjs-node is installed but its native binding failed to load: Cannot find package 'adm-zip'/)
  })

  it("binding fails to load (CUDA missing): the first line of the error, then the prerequisites", async () => {
    const provider = makeNodeProvider(
      "node-gpu",
      bindingFails("libcudart.so.11.0: cannot open shared object file: No such file or directory")
    )
    const e = await loadError(provider.load)
    expect(e.reason).toBe(
      "@tensorflow/tfjs-node-gpu is installed but its native binding failed to load: libcudart.so.11.0: cannot " +
        "open shared object file: No such file or directory"
    )
    expect(e.message).toContain("CUDA 11.2 and cuDNN 8.1")
    expect(e.message).not.toContain("Module._extensions")
  })

  it("loads fine on a GPU: device from the probe, memory, version", async () => {
    let probed = 0
    const provider = makeNodeProvider("node-gpu", fakeNativeModule("fake-tensorflow-gpu", true), {
      tfjsName: "fake-tensorflow-gpu",
      probeGpu: async () => {
        probed++
        return { name: "NVIDIA H100 80GB HBM3", memoryBytes: 81559 * 1024 * 1024 }
      }
    })
    const info = await Effect.runPromise(provider.load)
    expect(tf.getBackend()).toBe("fake-tensorflow-gpu")
    expect(probed).toBe(1)
    expect(info).toMatchObject({
      name: "node-gpu",
      tfjsName: "fake-tensorflow-gpu",
      device: "NVIDIA H100 80GB HBM3 (CUDA)",
      gpu: true,
      details: {
        package: "@tensorflow/tfjs-node-gpu",
        tensorflowVersion: "2.9.1",
        gpuMemoryBytes: 81559 * 1024 * 1024
      }
    })
    expect(info.details["hostMemoryBytes"]).toBeGreaterThan(0)
    expect(matmul()).toEqual([19, 22, 43, 50])
  })

  it("a GPU whose name cannot be probed is 'CUDA GPU'", async () => {
    const provider = makeNodeProvider("node-gpu", fakeNativeModule("fake-tensorflow-gpu", true), {
      tfjsName: "fake-tensorflow-gpu",
      probeGpu: async () => {
        throw new Error("nvidia-smi: not found")
      }
    })
    const info = await Effect.runPromise(provider.load)
    expect(info.device).toBe("CUDA GPU (CUDA)")
    expect(info.details["gpuMemoryBytes"]).toBeUndefined()
  })

  it("tfjs-node-gpu that sees no CUDA device says it runs on the CPU", async () => {
    const provider = makeNodeProvider("node-gpu", fakeNativeModule("fake-tensorflow-nodevice", false), {
      tfjsName: "fake-tensorflow-nodevice",
      probeGpu: async () => ({ name: "should not be asked" })
    })
    const info = await Effect.runPromise(provider.load)
    expect(info).toMatchObject({ gpu: false, device: "CPU (libtensorflow; no CUDA device visible)" })
  })

  it("node (CPU) loads fine and never probes for a GPU", async () => {
    let probed = 0
    const provider = makeNodeProvider("node", fakeNativeModule("fake-tensorflow-cpu", false), {
      tfjsName: "fake-tensorflow-cpu",
      probeGpu: async () => {
        probed++
        return {}
      }
    })
    const info = await Effect.runPromise(provider.load)
    expect(probed).toBe(0)
    expect(info).toMatchObject({ name: "node", gpu: false, device: "CPU (libtensorflow)" })
    expect(tf.getBackend()).toBe("fake-tensorflow-cpu")
    expect(matmul()).toEqual([19, 22, 43, 50])
  })

  it("a failed import leaves no kernels behind (tfjs-node registers them before loading its binding)", async () => {
    const provider = makeNodeProvider(
      "node-gpu",
      async () => {
        const [kernel] = tf.getKernelsForBackend("cpu")
        tf.registerKernel({ ...kernel!, backendName: "fake-half-loaded" })
        throw new Error("libcudart.so.11.0: cannot open shared object file")
      },
      { tfjsName: "fake-half-loaded" }
    )
    await loadError(provider.load)
    expect(tf.getKernelsForBackend("fake-half-loaded")).toEqual([])
  })

  it("a module that imports but registers no backend is a typed error", async () => {
    const provider = makeNodeProvider("node", async () => ({}), { tfjsName: "never-registered" })
    const e = await loadError(provider.load)
    expect(e.reason).toBe("tfjs backend 'never-registered' is not registered")
  })
})

describe("selection through Backend.layer", () => {
  const failingGpu = makeNodeProvider("node-gpu", bindingFails("libcudnn.so.8: cannot open shared object file"))
  const workingGpu = makeNodeProvider("node-gpu", fakeNativeModule("fake-tensorflow-gpu", true), {
    tfjsName: "fake-tensorflow-gpu",
    probeGpu: async () => ({ name: "NVIDIA A100" })
  })
  const workingCpu = makeNodeProvider("node", fakeNativeModule("fake-tensorflow-cpu", false), {
    tfjsName: "fake-tensorflow-cpu"
  })
  const select = (choice: "auto" | "node-gpu" | "node", list: ReadonlyArray<typeof failingGpu>) =>
    Effect.runPromise(Effect.either(Effect.provide(Backend, Backend.layer(choice, list))))

  it("auto picks node-gpu when it loads", async () => {
    const backend = Either.getOrThrow(await select("auto", [workingCpu, workingGpu]))
    expect(backend.info.name).toBe("node-gpu")
    expect(backend.selection.reason).toBe("auto: picked node-gpu (NVIDIA A100 (CUDA))")
    expect(tf.getBackend()).toBe("fake-tensorflow-gpu")
  })

  it("auto falls to node when the CUDA binding fails, saying why", async () => {
    const backend = Either.getOrThrow(await select("auto", [failingGpu, workingCpu]))
    expect(backend.info.name).toBe("node")
    expect(backend.selection.reason).toBe(
      "auto: node-gpu unavailable (@tensorflow/tfjs-node-gpu is installed but its native binding failed to load: " +
        "libcudnn.so.8: cannot open shared object file); " +
        "picked node (CPU (libtensorflow))"
    )
    expect(tf.getBackend()).toBe("fake-tensorflow-cpu")
    expect(backend.memory().numTensors).toBeGreaterThanOrEqual(0)
  })

  it("explicit node-gpu with a failing binding fails, and does not fall back", async () => {
    const e = Either.getOrThrow(Either.flip(await select("node-gpu", [failingGpu, workingCpu])))
    expect(e).toBeInstanceOf(BackendUnavailable)
    expect(e.message).toBe(
      "backend 'node-gpu' is unavailable: @tensorflow/tfjs-node-gpu is installed but its native binding failed to " +
        `load: libcudnn.so.8: cannot open shared object file. ${gpuInstall}`
    )
  })

  it("explicit node when only node-gpu was given lists what was", async () => {
    const e = Either.getOrThrow(Either.flip(await select("node", [workingGpu])))
    expect(e.reason).toBe("no provider for it is given (given: node-gpu)")
  })
})

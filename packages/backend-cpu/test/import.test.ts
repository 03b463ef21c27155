import * as tf from "@tensorflow/tfjs-core"
import { expect, it } from "vitest"

it("importing the package registers and selects nothing (a backend is a Layer, not a side effect)", async () => {
  const mod = await import("../src/index.js")
  expect(mod.providers.map((p) => p.name)).toEqual(["wasm", "cpu"])
  expect(tf.findBackendFactory("wasm")).toBeNull()
  expect(tf.findBackendFactory("cpu")).toBeNull()
  expect(Object.keys(tf.engine().registryFactory)).toEqual([])
})

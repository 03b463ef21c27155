import * as tf from "@tensorflow/tfjs-core"
import { it } from "vitest"
it("readme 1", async () => {
  await import("./readme-1.tmp.js")
  console.log("numTensors after", tf.memory().numTensors)
}, 120000)
it("readme 2", async () => {
  await import("./readme-2.tmp.js")
  console.log("numTensors after", tf.memory().numTensors)
}, 120000)
it("readme 3", async () => {
  await import("./readme-3.tmp.js")
}, 120000)

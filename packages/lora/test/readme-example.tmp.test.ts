import * as tf from "@tensorflow/tfjs-core"
import { it } from "vitest"
it("readme 1", async () => {
  await import("./readme-1.tmp.js")
  console.log("numTensors after", tf.memory().numTensors)
}, 120000)

/**
 * tfjs's plain JavaScript CPU backend (`@tensorflow/tfjs-backend-cpu`): every kernel, gradients
 * included, but slow; the last resort of `auto` and a reference for tests. Imported inside `load`,
 * so importing this file registers nothing.
 */
import { activateTfjsBackend, backendUnavailable, firstLine } from "@peftkit/core"
import type { BackendInfo, BackendProvider } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { cpuPackage, cpuPackageInstall } from "./internal/packageInfo.js"

export const cpu: BackendProvider = {
  name: "cpu",
  // The last resort of auto: every kernel, but plain JavaScript.
  priority: 0,
  device: "cpu",
  packageName: cpuPackage,
  install: cpuPackageInstall,
  load: Effect.gen(function* () {
    const module = yield* Effect.tryPromise({
      try: () => import("@tensorflow/tfjs-backend-cpu"),
      catch: (error) => backendUnavailable("cpu", `cannot import @tensorflow/tfjs-backend-cpu: ${firstLine(error)}`, cpuPackageInstall)
    })
    yield* activateTfjsBackend("cpu", "cpu", cpuPackageInstall)
    // Its first tensor write would print "install tfjs-node" advice in Node; peftkit's own
    // selection (Backend.layer("auto")) already says what is faster and how to get it.
    const instance = tf.findBackend("cpu") as { firstUse?: boolean } | null
    if (instance !== null && instance.firstUse === true) instance.firstUse = false
    return {
      name: "cpu",
      tfjsName: "cpu",
      device: "CPU (JavaScript kernels, 1 thread)",
      gpu: false,
      details: { threads: 1, version: module.version_cpu }
    } satisfies BackendInfo
  })
}

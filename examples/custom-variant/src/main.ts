#!/usr/bin/env node
/** `node dist/main.js [out-dir]`: runs the custom-variant example on the wasm backend and prints what it shows. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { providers } from "@peftkit/backend-cpu"
import { Backend, MetricsLog, ProgressReporter } from "@peftkit/core"
import { Effect, Layer } from "effect"
import { runExample } from "./Example.js"

const dir = process.argv[2] ?? "out/custom-variant"
const result = await Effect.runPromise(
  runExample(dir).pipe(
    Effect.provide(Layer.mergeAll(Backend.layer("wasm", providers), ProgressReporter.terminal(), MetricsLog.none)),
    Effect.provide(NodeFileSystem.layer)
  )
)
console.log(`frozen-A LoRA in a ${result.links}-link chain: loss ${result.initialLoss.toFixed(4)} -> ${result.finalLoss.toFixed(4)}`)
console.log(`trainable: ${result.trainable.join(", ")}`)
console.log(`chain saved as one PEFT LoRA and reloaded: max |diff| ${result.chainDiff.toExponential(2)}`)
console.log(`last link saved as '${result.variant}' and reloaded: max |diff| ${result.linkDiff.toExponential(2)}`)

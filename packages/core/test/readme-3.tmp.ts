import { Backend } from "@peftkit/core"
import { Effect } from "effect"

const error = await Effect.runPromise(Effect.flip(Effect.provide(Backend, Backend.layer("node-gpu"))))
console.log(error._tag, error.message)
const auto = await Effect.runPromise(Effect.provide(Backend, Backend.layer("auto")))
console.log(auto.selection.reason)

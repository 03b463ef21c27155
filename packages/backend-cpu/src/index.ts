/**
 * @peftkit/backend-cpu: the portable CPU backends, WebAssembly (`wasm`, the default) and plain
 * JavaScript (`cpu`). Importing this package registers nothing; `Backend.layer("wasm")` does.
 */
import type { BackendProvider } from "@peftkit/core"
import { cpu } from "./Cpu.js"
import { wasm } from "./Wasm.js"

export { cpu } from "./Cpu.js"
export { makeWasmProvider, wasm, type WasmOptions } from "./Wasm.js"

/** What `Backend.layer` discovers in this package, fastest first. */
export const providers: ReadonlyArray<BackendProvider> = [wasm, cpu]

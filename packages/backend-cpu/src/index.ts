/**
 * @peftkit/backend-cpu: the portable CPU backends, WebAssembly (`wasm`, the default) and plain
 * JavaScript (`cpu`). Importing this package registers nothing: the application registers
 * `providers` (`registerBackends(providers)`) or passes them to `Backend.layer`.
 */
import type { BackendProvider } from "@peftkit/core"
import { cpu } from "./Cpu.js"
import { wasm } from "./Wasm.js"

export { cpu } from "./Cpu.js"
export { makeWasmProvider, wasm, type WasmOptions } from "./Wasm.js"

/** This package's providers, fastest first, for `registerBackends` or `Backend.layer`. */
export const providers: ReadonlyArray<BackendProvider> = [wasm, cpu]

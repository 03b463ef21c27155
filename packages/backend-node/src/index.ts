/**
 * @peftkit/backend-node: tfjs's native Node backends (libtensorflow, with or without CUDA) as
 * peftkit providers. Importing this package loads nothing native; `Backend.layer("node-gpu")` does.
 */
import type { BackendProvider } from "@peftkit/core"
import { node, nodeGpu } from "./NodeBackends.js"

export { node, nodeGpu } from "./NodeBackends.js"

/** This package's providers, fastest first, for `registerBackends` or `Backend.layer`. */
export const providers: ReadonlyArray<BackendProvider> = [nodeGpu, node]

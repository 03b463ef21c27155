/**
 * @peftkit/backend-node: tfjs's native Node backends (libtensorflow, with or without CUDA) as
 * peftkit providers. Importing this package loads nothing native; `Backend.layer("node-gpu")` does.
 */
import type { BackendProvider } from "@peftkit/core"
import { node, nodeGpu } from "./NodeBackends.js"

export { node, nodeGpu } from "./NodeBackends.js"

/** What `Backend.layer` discovers in this package, fastest first. */
export const providers: ReadonlyArray<BackendProvider> = [nodeGpu, node]

/**
 * The native backends: `node-gpu` (@tensorflow/tfjs-node-gpu: libtensorflow with CUDA) and `node`
 * (@tensorflow/tfjs-node: libtensorflow on the CPU). Both packages are optional peers; importing
 * this file imports neither, `load` does, and a missing package or a native binding that cannot
 * load (no CUDA 11.2 / cuDNN 8.1) becomes a `BackendUnavailable` that says what to install.
 */
import type { BackendProvider } from "@peftkit/core"
import { importOptional, makeNodeProvider, nativePackage } from "./internal/makeNodeProvider.js"

/** libtensorflow with CUDA, through @tensorflow/tfjs-node-gpu. */
export const nodeGpu: BackendProvider = makeNodeProvider("node-gpu", importOptional(nativePackage["node-gpu"]))

/** libtensorflow on the CPU, through @tensorflow/tfjs-node. */
export const node: BackendProvider = makeNodeProvider("node", importOptional(nativePackage.node))

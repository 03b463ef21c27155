/**
 * @peftkit/backend-webgpu: tfjs's WebGPU backend as a peftkit provider, in browsers and in Node
 * through Dawn (the `webgpu` package). Importing this package touches no global;
 * `Backend.layer("webgpu")` does.
 */
import type { BackendProvider } from "@peftkit/core"
import { webgpu } from "./WebGpu.js"

export {
  type AdapterDescription,
  describeAdapter,
  type GpuAdapterInfoLike,
  type GpuAdapterLike,
  type GpuLike,
  makeWebGpuProvider,
  webgpu,
  type WebGpuOptions
} from "./WebGpu.js"

/** This package's provider, for `registerBackends` or `Backend.layer`. */
export const providers: ReadonlyArray<BackendProvider> = [webgpu]

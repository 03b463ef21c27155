/**
 * The benchmark's result, as JSON: what each backend's child process prints, what the PyTorch
 * reference prints (mapped), and what `reports/bench/latest.json` holds. Plain data, no tensors.
 */
import type { InterleavedRatio } from "./InterleavedRatio.js"
import type { BackendInfo } from "@peftkit/core"
import type { ShapeName } from "./Shapes.js"

/** Timings of one method on one shape; every time in milliseconds. */
export interface MethodTiming {
  readonly warmup: number
  readonly steps: number
  /** Median over the timed steps (knots excluded). */
  readonly medianStepMs: number
  readonly stepMs: ReadonlyArray<number>
  readonly tokensPerSecond: number
  /** Wall time of the whole timed window: steps, and for COLA the knots inside it. */
  readonly windowMs: number
  /** Highest tfjs engine bytes during one (separate, untimed) step, weights included. */
  readonly peakStepBytes?: number
  /**
   * PyTorch rows: the peak resident memory above what the process held before the model was built,
   * over the whole run (weights, optimizer state, activations and the allocator's slack included).
   */
  readonly peakBytes?: number
  /**
   * tfjs rows on CPU backends (LoRA and COLA): the same measure as `peakBytes`, taken in a fresh
   * process (`ResidentChild.ts`): everything the backend holds, not only tensors.
   */
  readonly residentPeakBytes?: number
  readonly achievedGflops: number
  /** achievedGflops / the backend's matmul ceiling. */
  readonly ceilingFraction?: number
  /** Final loss read back, as a sanity check that training ran. */
  readonly lastLoss: number
}

export interface ColaTiming extends MethodTiming {
  /** Knots inside the timed window (steps relative to the window start). */
  readonly knotOffsets: ReadonlyArray<number>
  readonly knotMs: ReadonlyArray<number>
  readonly medianKnotMs: number
  /** Highest engine bytes during one (separate) knot. */
  readonly peakKnotBytes?: number
}

export interface ShapeResult {
  readonly shape: ShapeName
  readonly tokensPerBatch: number
  readonly flopsPerStep: number
  readonly lora: MethodTiming
  readonly cola: ColaTiming
  /** Other adapter variants (DoRA, VeRA), by name, with LoRA's steps on the same shape. */
  readonly variants?: Readonly<Record<string, MethodTiming>>
  /** Variants that failed on this shape, with why (the shape's other rows stand). */
  readonly variantFailures?: Readonly<Record<string, string>>
  /** COLA's step time over LoRA's from interleaved rounds, with a 95% interval (absent with --ratio-seconds 0). */
  readonly colaRatio?: InterleavedRatio
}

export interface MatmulCeiling {
  readonly size: number
  readonly gflops: number
  readonly medianMs: number
}

export type BackendRun =
  | {
    readonly status: "ok"
    readonly backend: string
    readonly info: BackendInfo
    readonly selection: string
    readonly ceiling: MatmulCeiling
    readonly shapes: ReadonlyArray<ShapeResult>
    /** Shapes that failed on this backend, with why. */
    readonly failures: ReadonlyArray<{ readonly shape: ShapeName; readonly reason: string }>
  }
  | { readonly status: "unavailable"; readonly backend: string; readonly reason: string }

/** What `python/lora_reference.py` reports for one shape. */
export interface TorchShapeResult {
  readonly shape: ShapeName
  readonly tokensPerBatch: number
  readonly lora: MethodTiming
  readonly cola: ColaTiming
  /** PEFT's DoRA, VeRA, ... with LoRA's steps (absent for the plain-PyTorch fallback). */
  readonly variants?: Readonly<Record<string, MethodTiming>>
}

export type TorchRun =
  | {
    readonly status: "ok"
    readonly torchVersion: string
    readonly threads: number
    readonly implementation: "peft" | "plain-pytorch-lora"
    readonly blas: string
    readonly python: string
    readonly ceiling: MatmulCeiling
    readonly shapes: ReadonlyArray<TorchShapeResult>
  }
  | { readonly status: "unavailable"; readonly reason: string }

export interface MachineInfo {
  readonly cpuModel: string
  readonly cpuCount: number
  readonly platform: string
  readonly arch: string
  readonly totalMemoryBytes: number
  readonly node: string
}

export interface BenchResult {
  readonly startedAt: string
  readonly command: string
  readonly machine: MachineInfo
  readonly backends: ReadonlyArray<BackendRun>
  readonly torch: TorchRun
}

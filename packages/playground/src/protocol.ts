/**
 * The messages between the page and the training worker. The page never computes; the worker never
 * touches the DOM. Files cross as `File` objects (structured clone, no copy); results come back as
 * plain data and bytes.
 */

export type BackendChoice = "auto" | "webgpu" | "wasm" | "cpu"

/** A dropped file with its path inside what was dropped (`my-model/config.json`). */
export interface DroppedFile {
  readonly path: string
  readonly file: File
}

export type ModelSource = { readonly kind: "builtin" } | { readonly kind: "files"; readonly files: ReadonlyArray<DroppedFile> }

export type DataSource =
  | { readonly kind: "builtin" }
  | { readonly kind: "jsonl"; readonly files: ReadonlyArray<DroppedFile> }
  | { readonly kind: "pasted"; readonly text: string }
  | { readonly kind: "task"; readonly task: string; readonly files: ReadonlyArray<DroppedFile> }

export type MethodName = "lora" | "cola" | "rac" | "xgb"
export type VariantName = "lora" | "dora" | "pissa" | "vera"

export interface TrainSettings {
  readonly method: MethodName
  readonly variant: VariantName
  readonly rank: number
  readonly alpha: number
  readonly targetModules: ReadonlyArray<string> | "all-linear"
  readonly links: number
  readonly linkWarmup: number
  readonly optimizerAtKnot: "reset" | "keep" | "prune"
  readonly learningRate: number
  readonly schedule: "constant" | "linear" | "cosine"
  readonly warmup: number
  readonly steps: number
  readonly batchSize: number
  readonly maxSeqLength: number
  readonly seed: number
  readonly evalEvery: number
  readonly checkpointEvery: number
}

export type ToWorker =
  | { readonly type: "init"; readonly backend: BackendChoice }
  | { readonly type: "load-model"; readonly source: ModelSource }
  | { readonly type: "load-data"; readonly source: DataSource }
  | { readonly type: "train"; readonly settings: TrainSettings }
  | { readonly type: "resume" }
  | { readonly type: "discard-checkpoint" }
  | { readonly type: "stop" }
  | { readonly type: "generate"; readonly prompt: string; readonly maxTokens: number; readonly temperature: number }
  | { readonly type: "evaluate" }
  | { readonly type: "download"; readonly what: DownloadKind }

export type DownloadKind = "adapter" | "adapter-zip" | "merged" | "report"

export interface ModelInfo {
  readonly source: string
  readonly architecture: string
  readonly parameters: number
  readonly layers: number
  readonly hiddenSize: number
  readonly heads: string
  readonly vocabSize: number
  readonly contextLength: number
  readonly linearModules: ReadonlyArray<string>
  readonly tokenizer: string
  readonly estimatedTrainingBytes: number
  readonly loadSeconds: number
}

export interface DataInfo {
  readonly describe: string
  readonly train: number
  readonly valid: number
  readonly test: number
  readonly task?: string
  readonly warnings: ReadonlyArray<string>
}

export interface ProgressPoint {
  readonly step: number
  readonly totalSteps: number
  readonly loss?: number
  readonly validLoss?: number
  readonly learningRate: number
  readonly tokensPerSecond: number
  readonly etaSeconds: number
  readonly peakBytes?: number
}

export interface RunSummary {
  readonly step: number
  readonly totalSteps: number
  readonly stopped: boolean
  readonly seconds: number
  readonly trainable: number
  readonly describe: string
  /** The adapter as PEFT files: what Download saves. */
  readonly adapterFiles: ReadonlyArray<string>
}

export interface EvalResult {
  readonly split: string
  readonly base: Record<string, number>
  readonly adapted: Record<string, number>
}

/** A checkpoint kept in the browser (IndexedDB) that a reload can resume. */
export interface SavedRunInfo {
  readonly step: number
  readonly totalSteps: number
  readonly model: string
  readonly data: string
  readonly method: string
  readonly savedAt: string
}

export type FromWorker =
  | { readonly type: "ready"; readonly backend: string; readonly device: string; readonly reason: string; readonly isolated: boolean; readonly savedRun?: SavedRunInfo }
  | { readonly type: "status"; readonly text: string }
  | { readonly type: "model"; readonly info: ModelInfo }
  | { readonly type: "data"; readonly info: DataInfo }
  | { readonly type: "train-start"; readonly settings: TrainSettings; readonly totalSteps: number; readonly startStep: number; readonly knots: ReadonlyArray<number>; readonly describe: string; readonly history: ReadonlyArray<ProgressPoint> }
  | { readonly type: "progress"; readonly point: ProgressPoint }
  | { readonly type: "checkpoint"; readonly step: number }
  | { readonly type: "trained"; readonly summary: RunSummary }
  | { readonly type: "generated"; readonly prompt: string; readonly base: string; readonly adapted: string }
  | { readonly type: "evaluated"; readonly result: EvalResult }
  | { readonly type: "file"; readonly name: string; readonly mime: string; readonly bytes: Uint8Array }
  | { readonly type: "error"; readonly during: string; readonly message: string; readonly kind: string }

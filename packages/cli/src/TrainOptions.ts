/**
 * The options of `peftkit train`, decoded with Schema from a config file (JSON, `--config`) merged
 * with command-line flags (flags win). Names follow mlx-lm's LoRA command where one exists
 * (`--iters`, `--batch-size`, `--learning-rate`, `--adapter-path`, `--save-every`,
 * `--steps-per-report`, `--steps-per-eval`, `--max-seq-length`, `--mask-prompt`, `--seed`); an
 * unknown key or a bad value is a `ConfigError` naming it.
 */
import { FiniteNumber, NonNegativeInt, PositiveInt, Probability, TargetModulesSchema } from "@peftkit/core"
import { Schema } from "effect"
import { knownBackendNames } from "./InstalledBackends.js"
import { variantNames } from "./Variants.js"

export const Method = Schema.Literal("lora", "cola", "rac", "xgb", "full")
export type Method = typeof Method.Type

/** "auto" or a backend the CLI knows (`InstalledBackends.ts`). */
export const BackendName = Schema.Literal("auto", ...knownBackendNames)

export const TrainOptions = Schema.Struct({
  /** A Hugging Face model directory or a llama2.c checkpoint file. */
  model: Schema.String,
  /** A directory with train.jsonl (valid.jsonl, test.jsonl optional). Give `data` or `task`. */
  data: Schema.optional(Schema.String),
  /** One of the paper's tasks (sst2, rte, cb, boolq, wic, wsc, multirc), read from `taskData`. */
  task: Schema.optional(Schema.String),
  /** Where the task files live (the GLUE/SuperGLUE folders). */
  taskData: Schema.optional(Schema.String),
  method: Schema.optionalWith(Method, { default: () => "lora" as const }),
  /** The adapter variant (`Variants.ts`): lora, dora, vera, ... */
  variant: Schema.optionalWith(Schema.Literal(...variantNames), { default: () => "lora" as const }),
  rank: Schema.optionalWith(PositiveInt, { default: () => 8 }),
  alpha: Schema.optionalWith(FiniteNumber, { default: () => 16 }),
  dropout: Schema.optionalWith(Probability, { default: () => 0 }),
  rslora: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** A factor that does not train: A is FFA-LoRA (only B trains). */
  freeze: Schema.optionalWith(Schema.Literal("none", "A", "B"), { default: () => "none" as const }),
  /** Per-module ranks and alphas (PEFT's rank_pattern / alpha_pattern: key -> value, PEFT's key matching). */
  rankPattern: Schema.optionalWith(Schema.Record({ key: Schema.String, value: PositiveInt }), { default: () => ({}) }),
  alphaPattern: Schema.optionalWith(Schema.Record({ key: Schema.String, value: FiniteNumber }), { default: () => ({}) }),
  /** PiSSA: power iterations of the randomised SVD (PEFT's pissa_niter_K); -1 = the exact SVD (slow on big layers). */
  pissaNiter: Schema.optionalWith(Schema.Int.pipe(Schema.between(-1, 999)), { default: () => 4 }),
  /** LoRA+: B's learning rate as a multiple of A's (16 in the paper); off when absent. */
  loraPlusRatio: Schema.optional(FiniteNumber.pipe(Schema.positive())),
  /** COLA: number of links (the budget is split evenly). */
  links: Schema.optionalWith(PositiveInt, { default: () => 3 }),
  /** COLA: optimizer policy at each knot. */
  knotOptimizer: Schema.optionalWith(Schema.Literal("reset", "keep"), { default: () => "reset" as const }),
  /** COLA: per-link learning-rate warm-up (ReLoRA's jagged schedule), 0 = off. */
  linkWarmup: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /** RAC-LoRA: the factor each link freezes (a coin per link by default). */
  racFreeze: Schema.optionalWith(Schema.Literal("random", "alternate", "A", "B"), { default: () => "random" as const }),
  /** XGBLoRA: rank of each link's weak learner (1 in the paper). */
  xgbRank: Schema.optionalWith(PositiveInt, { default: () => 1 }),
  /** XGBLoRA: transformer blocks trained per link (default 11/32 of them, the paper's best). */
  xgbLayers: Schema.optional(PositiveInt),
  /** XGBLoRA: the boosting step size each link is merged with. */
  xgbStepSize: Schema.optionalWith(FiniteNumber.pipe(Schema.positive()), { default: () => 1 }),
  targetModules: Schema.optionalWith(TargetModulesSchema, { default: () => ["q_proj", "v_proj"] }),
  /** Total optimizer steps; or give `epochs`. */
  iters: Schema.optional(PositiveInt),
  epochs: Schema.optional(PositiveInt),
  batchSize: Schema.optionalWith(PositiveInt, { default: () => 4 }),
  learningRate: Schema.optionalWith(FiniteNumber.pipe(Schema.positive()), { default: () => 1e-4 }),
  schedule: Schema.optionalWith(Schema.Literal("constant", "linear", "cosine"), { default: () => "linear" as const }),
  warmup: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  weightDecay: Schema.optionalWith(FiniteNumber.pipe(Schema.nonNegative()), { default: () => 0 }),
  gradClip: Schema.optional(FiniteNumber.pipe(Schema.positive())),
  maxSeqLength: Schema.optionalWith(PositiveInt, { default: () => 512 }),
  maskPrompt: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  seed: Schema.optionalWith(Schema.Int, { default: () => 0 }),
  backend: Schema.optionalWith(BackendName, { default: () => "auto" as const }),
  adapterPath: Schema.optionalWith(Schema.String, { default: () => "adapters" }),
  saveEvery: Schema.optional(PositiveInt),
  /** Also checkpoint after this many minutes of training since the last checkpoint (0 = off), so a crash loses at most that. */
  saveEveryMinutes: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative(), Schema.finite()), { default: () => 10 }),
  stepsPerReport: Schema.optionalWith(PositiveInt, { default: () => 10 }),
  stepsPerEval: Schema.optional(PositiveInt),
  /** Validation batches per evaluation (-1 = the whole validation set). */
  valBatches: Schema.optionalWith(Schema.Union(Schema.Literal(-1), PositiveInt), { default: () => 25 as const }),
  resume: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** Replace an earlier run in `adapterPath` (otherwise a directory holding one is refused). */
  overwrite: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** Evaluate on the test split after training. */
  test: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type TrainOptions = typeof TrainOptions.Type
export type TrainOptionsInput = typeof TrainOptions.Encoded

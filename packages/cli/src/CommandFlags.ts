/** The flags of each command, with their help text: the single source for parsing and `--help`. */
import { directoryHolding, type FlagSpec } from "./Flags.js"

const model: FlagSpec = { name: "model", type: "string", value: "PATH", help: "Hugging Face model directory or llama2.c .bin checkpoint" }
const backend: FlagSpec = { name: "backend", type: "string", value: "NAME", help: "auto | node-gpu | node | webgpu | wasm | cpu (default auto)" }
const adapterPath: FlagSpec = { name: "adapter-path", type: "string", value: "DIR", help: "adapter directory (PEFT layout) (default adapters)" }
const seed: FlagSpec = { name: "seed", type: "number", value: "N", help: "random seed (default 0)" }

export const trainFlags: ReadonlyArray<FlagSpec> = [
  model,
  { name: "data", type: "string", value: "DIR", help: "directory with train.jsonl (valid.jsonl, test.jsonl): {text} | {prompt,completion} | {messages}", check: directoryHolding("train.jsonl") },
  { name: "task", type: "string", value: "NAME", help: "one of the paper's tasks: sst2 rte cb boolq wic wsc multirc (instead of --data)" },
  { name: "task-data", type: "string", value: "DIR", help: "folder with glue/ and superglue/ (for --task)" },
  { name: "method", type: "string", value: "M", help: "lora (one adapter) | cola | rac | xgb (chains of adapters) | full (default lora)" },
  { name: "variant", type: "string", value: "V", help: "adapter variant: lora | dora | pissa | vera (default lora)" },
  { name: "rank", type: "number", value: "R", help: "adapter rank r (default 8; VeRA wants far more, PEFT's default is 256)" },
  { name: "alpha", type: "number", value: "A", help: "LoRA/DoRA/PiSSA alpha; scale = alpha / r (default 16; XGBLoRA's rank-1 links: scale = alpha)" },
  { name: "dropout", type: "number", value: "P", help: "LoRA dropout (default 0)" },
  { name: "rslora", type: "boolean", help: "rsLoRA scaling alpha / sqrt(r)" },
  { name: "freeze", type: "string", value: "F", help: "none | A | B: a factor kept at its init; A is FFA-LoRA (default none)" },
  { name: "rank-pattern", type: "list", value: "K=R,...", help: "per-module ranks, PEFT's rank_pattern (e.g. q_proj=16,layers.0.mlp.down_proj=4)" },
  { name: "alpha-pattern", type: "list", value: "K=A,...", help: "per-module alphas, PEFT's alpha_pattern" },
  { name: "pissa-niter", type: "number", value: "K", help: "PiSSA: power iterations of the randomised SVD; -1 for the exact SVD (default 4)" },
  { name: "lora-plus-ratio", type: "number", value: "K", help: "LoRA+: B learns at K times the learning rate (16 in the paper)" },
  { name: "links", type: "number", value: "L", help: "COLA: links in the chain; the steps are split evenly (default 3)" },
  { name: "knot-optimizer", type: "string", value: "P", help: "COLA: reset | keep the optimizer state at each knot (default reset)" },
  { name: "link-warmup", type: "number", value: "N", help: "COLA: learning-rate warm-up steps after each knot (default 0)" },
  { name: "rac-freeze", type: "string", value: "F", help: "RAC-LoRA: random | alternate | A | B, the factor each link freezes (default random)" },
  { name: "xgb-rank", type: "number", value: "R", help: "XGBLoRA: rank of each link (default 1)" },
  { name: "xgb-layers", type: "number", value: "N", help: "XGBLoRA: blocks trained per link (default 11/32 of them)" },
  { name: "xgb-step-size", type: "number", value: "ETA", help: "XGBLoRA: each link merges as W + ETA delta (default 1)" },
  { name: "target-modules", type: "list", value: "LIST", keywords: ["all-linear"], help: "modules to adapt, comma-separated, or all-linear (default q_proj,v_proj)" },
  { name: "iters", type: "number", value: "N", help: "optimizer steps (or --epochs)" },
  { name: "epochs", type: "number", value: "N", help: "passes over the training set (or --iters)" },
  { name: "batch-size", type: "number", value: "N", help: "examples per step (default 4)" },
  { name: "learning-rate", type: "number", value: "LR", help: "peak learning rate (default 1e-4)" },
  { name: "schedule", type: "string", value: "S", help: "constant | linear | cosine (default linear)" },
  { name: "warmup", type: "number", value: "N", help: "warm-up steps (default 0)" },
  { name: "weight-decay", type: "number", value: "W", help: "AdamW weight decay (default 0)" },
  { name: "grad-clip", type: "number", value: "G", help: "clip gradients to this global norm" },
  { name: "max-seq-length", type: "number", value: "N", help: "truncate longer sequences (default 512)" },
  { name: "mask-prompt", type: "boolean", help: "loss on completions only (default on; --no-mask-prompt to train on all tokens)" },
  { name: "no-mask-prompt", type: "boolean", help: "train on prompt tokens too" },
  seed,
  backend,
  adapterPath,
  { name: "save-every", type: "number", value: "N", help: "checkpoint every N steps (resumable with --resume)" },
  { name: "save-every-minutes", type: "number", value: "M", help: "also checkpoint after M minutes of training since the last one (default 10; 0 = off)" },
  { name: "steps-per-report", type: "number", value: "N", help: "report line every N steps (default 10)" },
  { name: "steps-per-eval", type: "number", value: "N", help: "validation loss every N steps (default: at the end)" },
  { name: "val-batches", type: "number", value: "N", help: "validation batches per evaluation, -1 = all (default 25)" },
  { name: "resume", type: "boolean", help: "continue from the newest checkpoint in --adapter-path" },
  { name: "overwrite", type: "boolean", help: "replace an earlier run in --adapter-path (otherwise a directory holding one is refused)" },
  { name: "test", type: "boolean", help: "evaluate on the test split after training" }
]

export const evalFlags: ReadonlyArray<FlagSpec> = [
  model,
  adapterPath,
  { name: "no-adapter", type: "boolean", help: "evaluate the base model without an adapter" },
  { name: "data", type: "string", value: "DIR", help: "directory with test.jsonl (or valid.jsonl)", check: directoryHolding("test.jsonl (or valid.jsonl)") },
  { name: "task", type: "string", value: "NAME", help: "one of the paper's tasks (accuracy by label log-likelihood)" },
  { name: "task-data", type: "string", value: "DIR", help: "folder with glue/ and superglue/ (for --task)" },
  { name: "split", type: "string", value: "S", help: "test | valid (default test)" },
  { name: "batch-size", type: "number", value: "N", help: "examples per forward pass (default 8)" },
  { name: "max-seq-length", type: "number", value: "N", help: "truncate longer sequences (default 512)" },
  { name: "limit", type: "number", value: "N", help: "evaluate the first N examples only (a quick check)" },
  seed,
  backend
]

export const generateFlags: ReadonlyArray<FlagSpec> = [
  model,
  adapterPath,
  { name: "no-adapter", type: "boolean", help: "generate with the base model only" },
  { name: "prompt", type: "string", value: "TEXT", help: "the prompt" },
  { name: "max-tokens", type: "number", value: "N", help: "new tokens at most (default 100)" },
  { name: "temp", type: "number", value: "T", help: "sampling temperature, 0 = greedy (default 0)" },
  { name: "top-k", type: "number", value: "K", help: "sample from the K most likely tokens" },
  { name: "top-p", type: "number", value: "P", help: "nucleus sampling threshold" },
  { name: "chat", type: "boolean", help: "wrap the prompt with the tokenizer's chat template" },
  seed,
  backend
]

export const mergeFlags: ReadonlyArray<FlagSpec> = [
  model,
  adapterPath,
  { name: "save-path", type: "string", value: "DIR", help: "where to write the merged model (HF directory)" },
  backend
]

export const exportFlags: ReadonlyArray<FlagSpec> = [
  adapterPath,
  { name: "save-path", type: "string", value: "DIR", help: "where to write the single PEFT LoRA adapter" },
  { name: "rank", type: "number", value: "R", help: "compress to this rank by truncated SVD (reports the error)" },
  backend
]

/**
 * A task of the COLA paper's benchmark (the MeZO suite): where its official files are, how to read
 * them, MeZO's prompt template and verbalizer, the metrics, and the default sample sizes.
 */
import type { MetricName } from "./Metrics.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

/** How many examples MeZO's protocol samples: train and dev from the official train split, eval (test) from validation. */
export interface SamplingSizes {
  readonly numTrain: number
  readonly numDev: number
  readonly numEval: number
}

/** MeZO's `finetune.sh` defaults: `TRAIN=1000 DEV=500 EVAL=1000` (CB overrides DEV=100). */
export const mezoSampling: SamplingSizes = { numTrain: 1000, numDev: 500, numEval: 1000 }

export interface Task<F> {
  /** The dataset's usual name: "SST-2", "RTE", "CB", "BoolQ", "WiC", "WSC", "MultiRC". */
  readonly name: string
  /** MeZO's `--task_name` for the same task ("SST2", "WIC", ...). */
  readonly mezoName: string
  /** The official files, relative to the data directory (`../shared/data` in this repository). */
  readonly files: { readonly train: string; readonly validation: string }
  /** Parses one official file; throws a `FileError` naming the line and field of a malformed row. */
  parse(text: string, split: SplitName, file: string): ReadonlyArray<TaskExample<F>>
  /**
   * The example pool a split of the protocol samples from: `"train"` (MeZO's train and dev) or
   * `"test"`. The identity on `train.jsonl` / `validation` for every task but BoolQ, whose only file
   * here is split in two (see `BoolQ.ts`).
   */
  pool?(examples: ReadonlyArray<TaskExample<F>>, purpose: "train" | "test"): ReadonlyArray<TaskExample<F>>
  /** The verbalizer: `labelWords[c]` is candidate c's word, in MeZO's candidate order. */
  readonly labelWords: ReadonlyArray<string>
  /** MeZO's `Template.encode`: the prompt without the answer. */
  prompt(fields: F): string
  /** MeZO's `Template.verbalize`: the prompt followed by candidate `candidate`'s label word. */
  verbalize(fields: F, candidate: number): string
  /** Metrics reported for this task; `accuracy` (what MeZO and the COLA paper report) comes first. */
  readonly metrics: ReadonlyArray<MetricName>
  /** Default sample sizes (MeZO's `finetune.sh`). */
  readonly sampling: SamplingSizes
}

/**
 * CB, CommitmentBank (SuperGLUE): three-way entailment. `superglue/CB/{train,val}.jsonl`, fields
 * `premise`, `hypothesis`, `label` in {entailment, contradiction, neutral} (Hugging Face's
 * `super_glue/cb` labels 0 / 1 / 2, MeZO's candidates 0 / 1 / 2).
 */
import { jsonl, Row } from "./internal/rows.js"
import type { Task } from "./Task.js"
import { mezoSampling } from "./Task.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

export interface CbFields {
  readonly premise: string
  readonly hypothesis: string
}

const parse = (text: string, split: SplitName, file: string): ReadonlyArray<TaskExample<CbFields>> =>
  jsonl(text, file).map(({ line, row }) => {
    const r = new Row(file, line, row)
    return {
      id: `${split}/${r.integer("idx")}`,
      label: r.oneOf("label", ["entailment", "contradiction", "neutral"]),
      fields: { premise: r.string("premise"), hypothesis: r.string("hypothesis") }
    }
  })

/**
 * MeZO's template, literally (princeton-nlp/MeZO, large_models/templates.py, class CBTemplate,
 * "From PromptSource 1"):
 *
 *     verbalizer = {0: "Yes", 1: "No", 2: "Maybe"}
 *     def encode(self, sample):
 *         return f"Suppose {premise} Can we infer that \"{hypothesis}\"? Yes, No, or Maybe?\n"
 *     def verbalize(self, sample, candidate):
 *         return f"Suppose {premise} Can we infer that \"{hypothesis}\"? Yes, No, or Maybe?\n{self.verbalizer[candidate]}"
 *
 * Sampling: MeZO's `finetune.sh` sets `DEV=100` for CB ("It has <1000 training examples. Only use
 * 100 for dev"), so its 250 training examples become 150 train + 100 dev.
 */
export const cb: Task<CbFields> = {
  name: "CB",
  mezoName: "CB",
  files: { train: "superglue/CB/train.jsonl", validation: "superglue/CB/val.jsonl" },
  parse,
  labelWords: ["Yes", "No", "Maybe"],
  prompt: ({ premise, hypothesis }) => `Suppose ${premise} Can we infer that "${hypothesis}"? Yes, No, or Maybe?\n`,
  verbalize: ({ premise, hypothesis }, candidate) => `Suppose ${premise} Can we infer that "${hypothesis}"? Yes, No, or Maybe?\n${cb.labelWords[candidate]}`,
  metrics: ["accuracy", "macroF1"],
  sampling: { ...mezoSampling, numDev: 100 }
}

/**
 * RTE (SuperGLUE): does the premise entail the hypothesis? `superglue/RTE/{train,val}.jsonl`,
 * fields `premise`, `hypothesis`, `label` in {entailment, not_entailment} (Hugging Face's
 * `super_glue/rte` label 0 / 1, MeZO's candidates 0 / 1).
 */
import { jsonl, Row } from "./internal/rows.js"
import type { Task } from "./Task.js"
import { mezoSampling } from "./Task.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

export interface RteFields {
  readonly premise: string
  readonly hypothesis: string
}

const parse = (text: string, split: SplitName, file: string): ReadonlyArray<TaskExample<RteFields>> =>
  jsonl(text, file).map(({ line, row }) => {
    const r = new Row(file, line, row)
    return {
      id: `${split}/${r.integer("idx")}`,
      label: r.oneOf("label", ["entailment", "not_entailment"]),
      fields: { premise: r.string("premise"), hypothesis: r.string("hypothesis") }
    }
  })

/**
 * MeZO's template, literally (princeton-nlp/MeZO, large_models/templates.py, class RTETemplate,
 * "From PromptSource 1"):
 *
 *     verbalizer={0: "Yes", 1: "No"}
 *     def encode(self, sample):
 *         return f"{premise}\nDoes this mean that \"{hypothesis}\" is true? Yes or No?\n"
 *     def verbalize(self, sample, candidate):
 *         return f"{premise}\nDoes this mean that \"{hypothesis}\" is true? Yes or No?\n{self.verbalizer[candidate]}"
 */
export const rte: Task<RteFields> = {
  name: "RTE",
  mezoName: "RTE",
  files: { train: "superglue/RTE/train.jsonl", validation: "superglue/RTE/val.jsonl" },
  parse,
  labelWords: ["Yes", "No"],
  prompt: ({ premise, hypothesis }) => `${premise}\nDoes this mean that "${hypothesis}" is true? Yes or No?\n`,
  verbalize: ({ premise, hypothesis }, candidate) => `${premise}\nDoes this mean that "${hypothesis}" is true? Yes or No?\n${rte.labelWords[candidate]}`,
  metrics: ["accuracy"],
  sampling: mezoSampling
}

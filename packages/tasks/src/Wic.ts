/**
 * WiC, Word-in-Context (SuperGLUE): is `word` used with the same meaning in both sentences?
 * `superglue/WiC/{train,val}.jsonl`, fields `word`, `sentence1`, `sentence2`, `start1/end1/
 * start2/end2`, `label` bool. MeZO (via Hugging Face's `super_glue/wic`) uses the three text
 * fields as they are; the character offsets are kept for users but unused by the prompt.
 */
import { jsonl, Row } from "./internal/rows.js"
import type { Task } from "./Task.js"
import { mezoSampling } from "./Task.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

export interface WicFields {
  readonly word: string
  readonly sentence1: string
  readonly sentence2: string
  readonly start1: number
  readonly end1: number
  readonly start2: number
  readonly end2: number
}

const parse = (text: string, split: SplitName, file: string): ReadonlyArray<TaskExample<WicFields>> =>
  jsonl(text, file).map(({ line, row }) => {
    const r = new Row(file, line, row)
    return {
      id: `${split}/${r.integer("idx")}`,
      label: r.binary("label"),
      fields: {
        word: r.string("word"),
        sentence1: r.string("sentence1"),
        sentence2: r.string("sentence2"),
        start1: r.integer("start1"),
        end1: r.integer("end1"),
        start2: r.integer("start2"),
        end2: r.integer("end2")
      }
    }
  })

/**
 * MeZO's template, literally (princeton-nlp/MeZO, large_models/templates.py, class WICTemplate,
 * "From PromptSource 1"):
 *
 *     verbalizer = {0: "No", 1: "Yes"}
 *     def encode(self, sample):
 *         return f"Does the word \"{word}\" have the same meaning in these two sentences? Yes, No?\n{sent1}\n{sent2}\n"
 *     def verbalize(self, sample, candidate):
 *         return f"Does the word \"{word}\" have the same meaning in these two sentences? Yes, No?\n{sent1}\n{sent2}\n{self.verbalizer[candidate]}"
 */
export const wic: Task<WicFields> = {
  name: "WiC",
  mezoName: "WIC",
  files: { train: "superglue/WiC/train.jsonl", validation: "superglue/WiC/val.jsonl" },
  parse,
  labelWords: ["No", "Yes"],
  prompt: ({ word, sentence1, sentence2 }) => `Does the word "${word}" have the same meaning in these two sentences? Yes, No?\n${sentence1}\n${sentence2}\n`,
  verbalize: ({ word, sentence1, sentence2 }, candidate) =>
    `Does the word "${word}" have the same meaning in these two sentences? Yes, No?\n${sentence1}\n${sentence2}\n${wic.labelWords[candidate]}`,
  metrics: ["accuracy"],
  sampling: mezoSampling
}

/**
 * SST-2 (GLUE): binary sentiment of movie-review sentences. Files: `glue/SST-2/train.tsv` and
 * `dev.tsv` (the labelled validation split), TSV with header `sentence\tlabel`, unquoted (as
 * Hugging Face's `glue/sst2` reads them), 0 = negative, 1 = positive.
 */
import { stripWhitespace } from "./internal/python.js"
import { lines, rowError } from "./internal/rows.js"
import type { Task } from "./Task.js"
import { mezoSampling } from "./Task.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

export interface Sst2Fields {
  readonly sentence: string
}

const parse = (text: string, split: SplitName, file: string): ReadonlyArray<TaskExample<Sst2Fields>> => {
  const rows = lines(text)
  const header = rows[0]
  if (header === undefined || header.text !== "sentence\tlabel") throw rowError(file, 1, `expected the header "sentence<TAB>label", got ${JSON.stringify(header?.text ?? "")}`)
  return rows.slice(1).map(({ line, text: t }, idx) => {
    const tab = t.lastIndexOf("\t")
    const label = tab < 0 ? "" : t.slice(tab + 1)
    if (label !== "0" && label !== "1") throw rowError(file, line, `'label' must be 0 or 1, got ${JSON.stringify(label)}`)
    return { id: `${split}/${idx}`, label: Number(label), fields: { sentence: t.slice(0, tab) } }
  })
}

/**
 * MeZO's template, literally (princeton-nlp/MeZO, large_models/templates.py, class SST2Template):
 *
 *     verbalizer = {0: "terrible", 1: "great"}
 *     def encode(self, sample):
 *         text = sample.data["sentence"].strip()
 *         return f"{text} It was"
 *     def verbalize(self, sample, candidate):
 *         text = sample.data["sentence"].strip()
 *         return f"{text} It was {self.verbalizer[candidate]}"
 *
 * (`strip()` is reproduced with Python's definition of whitespace.)
 */
export const sst2: Task<Sst2Fields> = {
  name: "SST-2",
  mezoName: "SST2",
  files: { train: "glue/SST-2/train.tsv", validation: "glue/SST-2/dev.tsv" },
  parse,
  labelWords: ["terrible", "great"],
  prompt: ({ sentence }) => `${stripWhitespace(sentence)} It was`,
  verbalize: ({ sentence }, candidate) => `${stripWhitespace(sentence)} It was ${sst2.labelWords[candidate]}`,
  metrics: ["accuracy"],
  sampling: mezoSampling
}

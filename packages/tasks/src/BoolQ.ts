/**
 * BoolQ (SuperGLUE): a yes/no question about a Wikipedia passage. Only the official validation
 * file `superglue/BoolQ/val.jsonl` (3270 rows; fields `question`, `passage` = "Title -- text",
 * `label` bool) is available here, so it is split into two disjoint pools by a fixed rule that
 * does not depend on the seed:
 *
 *   title = the passage up to its first " -- " (the whole passage when absent);
 *   the row is in the TRAIN pool iff FNV-1a-32(UTF-8 bytes of title) mod 100 < 55, else in the TEST pool.
 *
 * Splitting by article title keeps every passage (and every article, some of which have several
 * passages and questions) on one side, so no passage is seen in training and at test time. On the
 * shared file this gives 1797 train-pool rows (MeZO's 1000 train + 500 dev are sampled from them)
 * and 1473 test-pool rows (1000 sampled). MeZO itself trains on Hugging Face's `boolq` train split
 * (9427 rows) and tests on its validation split, so BoolQ numbers from these pools are NOT
 * comparable to published ones: say so wherever they are reported.
 */
import { upperFirst } from "./internal/python.js"
import { jsonl, Row } from "./internal/rows.js"
import type { Task } from "./Task.js"
import { mezoSampling } from "./Task.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

export interface BoolQFields {
  readonly passage: string
  readonly question: string
}

/** FNV-1a, 32 bit, over the UTF-8 bytes of `text`. */
export const fnv1a32 = (text: string): number => {
  let h = 0x811c9dc5
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

/** The percentage of BoolQ titles (by hash) that go to the train pool. */
export const BOOLQ_TRAIN_PERCENT = 55

/** The fixed BoolQ pool rule: true when the row belongs to the train pool. */
export const boolqInTrainPool = (passage: string): boolean => {
  const cut = passage.indexOf(" -- ")
  const title = cut < 0 ? passage : passage.slice(0, cut)
  return fnv1a32(title) % 100 < BOOLQ_TRAIN_PERCENT
}

const parse = (text: string, split: SplitName, file: string): ReadonlyArray<TaskExample<BoolQFields>> =>
  jsonl(text, file).map(({ line, row }) => {
    const r = new Row(file, line, row)
    // MeZO (tasks.py, BoolQDataset): candidates=["Yes", "No"], correct_candidate="Yes" if answer else "No".
    return { id: `${split}/${r.integer("idx")}`, label: r.boolean("label") ? 0 : 1, fields: { passage: r.string("passage"), question: r.string("question") } }
  })

/** MeZO's question normalisation: append "?" when missing, upper-case the first character. */
const question = (q: string): string => upperFirst(q.endsWith("?") ? q : `${q}?`)

/**
 * MeZO's template, literally (princeton-nlp/MeZO, large_models/templates.py, class BoolQTemplateV3,
 * which `BoolQDataset.get_template(template_version=2)` in tasks.py selects by default):
 *
 *     def encode(self, sample):
 *         if not question.endswith("?"): question = question + "?"
 *         question = question[0].upper() + question[1:]
 *         return f"{passage} {question}\n"
 *     def verbalize(self, sample, candidate):
 *         return f"{passage} {question}\n{candidate}"      # candidates ["Yes", "No"]
 *
 * (DESIGN.md's `{passage} {question}?` is `BoolQTemplate`, MeZO's version 0, which is not the default.)
 */
export const boolq: Task<BoolQFields> = {
  name: "BoolQ",
  mezoName: "BoolQ",
  files: { train: "superglue/BoolQ/val.jsonl", validation: "superglue/BoolQ/val.jsonl" },
  parse,
  pool: (examples, purpose) => examples.filter((e) => boolqInTrainPool(e.fields.passage) === (purpose === "train")),
  labelWords: ["Yes", "No"],
  prompt: (f) => `${f.passage} ${question(f.question)}\n`,
  verbalize: (f, candidate) => `${f.passage} ${question(f.question)}\n${boolq.labelWords[candidate]}`,
  metrics: ["accuracy"],
  sampling: mezoSampling
}

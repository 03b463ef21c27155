/**
 * MultiRC (SuperGLUE): multi-sentence reading comprehension; each question has several candidate
 * answers, each true or false. `superglue/MultiRC/{train,val}.jsonl` nest `passage: {text,
 * questions: [{question, idx, answers: [{text, idx, label}]}]}`; like Hugging Face's
 * `super_glue/multirc` (which MeZO loads) they are flattened to one example per answer, in file
 * order, keeping the paragraph/question ids (`group`) for F1a and exact match.
 */
import { jsonl, Row } from "./internal/rows.js"
import type { Task } from "./Task.js"
import { mezoSampling } from "./Task.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

export interface MultiRcFields {
  readonly paragraph: string
  readonly question: string
  readonly answer: string
  readonly paragraphIdx: number
  readonly questionIdx: number
  readonly answerIdx: number
}

const parse = (text: string, split: SplitName, file: string): ReadonlyArray<TaskExample<MultiRcFields>> =>
  jsonl(text, file).flatMap(({ line, row }) => {
    const r = new Row(file, line, row)
    const paragraphIdx = r.integer("idx")
    const passage = r.object("passage")
    const paragraph = passage.string("text")
    return passage.array("questions").flatMap((q) => {
      const questionIdx = q.integer("idx")
      const question = q.string("question")
      const group = `${split}/${paragraphIdx}/${questionIdx}`
      return q.array("answers").map((a) => {
        const answerIdx = a.integer("idx")
        return {
          id: `${group}/${answerIdx}`,
          label: a.binary("label"),
          group,
          fields: { paragraph, question, answer: a.string("text"), paragraphIdx, questionIdx, answerIdx }
        }
      })
    })
  })

/**
 * MeZO's template, literally (princeton-nlp/MeZO, large_models/templates.py, class MultiRCTemplate,
 * "From PromptSource 1"):
 *
 *     verbalizer = {0: "No", 1: "Yes"}
 *     def encode(self, sample):
 *         return f"{paragraph}\nQuestion: {question}\nI found this answer \"{answer}\". Is that correct? Yes or No?\n"
 *     def verbalize(self, sample, candidate):
 *         return f"{paragraph}\nQuestion: {question}\nI found this answer \"{answer}\". Is that correct? Yes or No?\n{self.verbalizer[candidate]}"
 *
 * MeZO samples answers, not questions (1000 of the 4848 validation answers), and reports accuracy
 * over them; F1a and exact match here are computed over the sampled answers.
 */
export const multirc: Task<MultiRcFields> = {
  name: "MultiRC",
  mezoName: "MultiRC",
  files: { train: "superglue/MultiRC/train.jsonl", validation: "superglue/MultiRC/val.jsonl" },
  parse,
  labelWords: ["No", "Yes"],
  prompt: ({ paragraph, question, answer }) => `${paragraph}\nQuestion: ${question}\nI found this answer "${answer}". Is that correct? Yes or No?\n`,
  verbalize: ({ paragraph, question, answer }, candidate) =>
    `${paragraph}\nQuestion: ${question}\nI found this answer "${answer}". Is that correct? Yes or No?\n${multirc.labelWords[candidate]}`,
  metrics: ["accuracy", "f1a", "exactMatch"],
  sampling: mezoSampling
}

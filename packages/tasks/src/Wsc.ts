/**
 * WSC, Winograd Schema Challenge (SuperGLUE): does the pronoun (span 2) refer to the noun phrase
 * (span 1)? `superglue/WSC/{train,val}.jsonl`, fields `text`, `target: {span1_text, span1_index,
 * span2_text, span2_index}`, `label` bool.
 *
 * MeZO loads Hugging Face's `super_glue/wsc.fixed`, whose loader rewrites span texts that are not
 * substrings of the text (88 of 554 training rows here: "the lawyer" for "The lawyer", trailing
 * periods, newlines). `fixWscSpans` reproduces that rewrite (`_fix_wst` in the `super_glue`
 * loading script), so the spans in the prompt are the ones MeZO saw.
 */
import { isLowerChar, lowerFirst, rstripChar, splitWhitespace, upperFirst } from "./internal/python.js"
import { jsonl, Row } from "./internal/rows.js"
import type { Task } from "./Task.js"
import { mezoSampling } from "./Task.js"
import type { SplitName, TaskExample } from "./TaskExample.js"

export interface WscFields {
  readonly text: string
  readonly span1Text: string
  readonly span1Index: number
  readonly span2Text: string
  readonly span2Index: number
}

/**
 * Hugging Face's `wsc.fixed` span repair (`_fix_wst`, "Fixes most cases where spans are not
 * actually substrings of text"), step for step: a span already in the text, or one of the two
 * unfixable Kamenev spans, is kept; otherwise its first letter takes the case of the word at the
 * span's index, trailing periods go and newlines become spaces. (The original also calls
 * `text.replace("theyscold", ...)` without keeping the result and sets `span2_index = 10` for a
 * span containing "theyscold"; the index change is reproduced, the no-op is not needed.)
 */
export const fixWscSpans = (fields: WscFields): WscFields => {
  let out = { ...fields }
  const fix = (textKey: "span1Text" | "span2Text", indexKey: "span1Index" | "span2Index") => {
    let text = out[textKey]
    const index = out[indexKey]
    if (out.text.includes(text)) return
    if (text === "Kamenev and Zinoviev" || text === "Kamenev, Zinoviev, and Stalin") return
    if (text.includes("theyscold")) out = { ...out, span2Index: 10 }
    const firstWord = splitWhitespace(out.text)[index]
    if (firstWord !== undefined && firstWord !== "") {
      text = isLowerChar(String.fromCodePoint(firstWord.codePointAt(0)!)) ? lowerFirst(text) : upperFirst(text)
    }
    text = rstripChar(text, ".")
    text = text.replaceAll("\n", " ")
    out = textKey === "span1Text" ? { ...out, span1Text: text } : { ...out, span2Text: text }
  }
  fix("span1Text", "span1Index")
  fix("span2Text", "span2Index")
  return out
}

const parse = (text: string, split: SplitName, file: string): ReadonlyArray<TaskExample<WscFields>> =>
  jsonl(text, file).map(({ line, row }) => {
    const r = new Row(file, line, row)
    const t = r.object("target")
    const fields = fixWscSpans({
      text: r.string("text"),
      span1Text: t.string("span1_text"),
      span1Index: t.integer("span1_index"),
      span2Text: t.string("span2_text"),
      span2Index: t.integer("span2_index")
    })
    return { id: `${split}/${r.integer("idx")}`, label: r.binary("label"), fields }
  })

/**
 * MeZO's template, literally (princeton-nlp/MeZO, large_models/templates.py, class WSCTemplate,
 * "From PromptSource 1"):
 *
 *     verbalizer = {0: "No", 1: "Yes"}
 *     def encode(self, sample):
 *         return f"{text}\nIn the previous sentence, does the pronoun \"{span2.lower()}\" refer to {span1}? Yes or No?\n"
 *     def verbalize(self, sample, candidate):
 *         return f"{text}\nIn the previous sentence, does the pronoun \"{span2.lower()}\" refer to {span1}? Yes or No?\n{self.verbalizer[candidate]}"
 *
 * Sampling: WSC has 554 training examples; MeZO's protocol (1000 train + 500 dev, dev taken from
 * the END of the shuffled pool) leaves 54 for training. That is what `finetune.sh` does for WSC;
 * pass a smaller `numDev` to `sampleTask` for a more useful split.
 */
export const wsc: Task<WscFields> = {
  name: "WSC",
  mezoName: "WSC",
  files: { train: "superglue/WSC/train.jsonl", validation: "superglue/WSC/val.jsonl" },
  parse,
  labelWords: ["No", "Yes"],
  prompt: ({ text, span1Text, span2Text }) => `${text}\nIn the previous sentence, does the pronoun "${span2Text.toLowerCase()}" refer to ${span1Text}? Yes or No?\n`,
  verbalize: ({ text, span1Text, span2Text }, candidate) =>
    `${text}\nIn the previous sentence, does the pronoun "${span2Text.toLowerCase()}" refer to ${span1Text}? Yes or No?\n${wsc.labelWords[candidate]}`,
  metrics: ["accuracy"],
  sampling: mezoSampling
}

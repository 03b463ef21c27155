/**
 * Every task's prompt and label words, literally as MeZO renders them (princeton-nlp/MeZO,
 * large_models/templates.py). Each expected string below was printed by MeZO's template code
 * run in Python on the same row; the rows are copied from the official files.
 */
import { describe, expect, it } from "vitest"
import { allTasks, boolq, cb, fixWscSpans, multirc, rte, sst2, taskByName, wic, wsc } from "../src/index.js"
import type { Task, TaskExample } from "../src/index.js"

const one = <F>(task: Task<F>, line: string, split: "train" | "validation" = "validation"): TaskExample<F> => {
  const parsed = task.parse(line, split, "inline")
  expect(parsed).toHaveLength(1)
  return parsed[0]!
}

describe("MeZO templates, literally", () => {
  it("SST-2: '{sentence.strip()} It was' -> terrible / great", () => {
    const [e] = sst2.parse("sentence\tlabel\nit 's a charming and often affecting journey . \t1\n", "validation", "dev.tsv")
    expect(e).toEqual({ id: "validation/0", label: 1, fields: { sentence: "it 's a charming and often affecting journey . " } })
    expect(sst2.labelWords).toEqual(["terrible", "great"])
    expect(sst2.prompt(e!.fields)).toBe("it 's a charming and often affecting journey . It was")
    expect(sst2.verbalize(e!.fields, 1)).toBe("it 's a charming and often affecting journey . It was great")
    expect(sst2.verbalize(e!.fields, 0)).toBe("it 's a charming and often affecting journey . It was terrible")
  })

  it("RTE: premise, 'Does this mean that \"...\" is true? Yes or No?' -> Yes (entailment) / No", () => {
    const e = one(rte, `{"premise": "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the Christopher Reeve Foundation.", "hypothesis": "Christopher Reeve had an accident.", "label": "not_entailment", "idx": 0}`)
    expect(e.id).toBe("validation/0")
    expect(e.label).toBe(1)
    expect(rte.labelWords).toEqual(["Yes", "No"])
    expect(rte.prompt(e.fields)).toBe(
      "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the Christopher Reeve Foundation.\nDoes this mean that \"Christopher Reeve had an accident.\" is true? Yes or No?\n"
    )
    expect(rte.verbalize(e.fields, e.label)).toBe(
      "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the Christopher Reeve Foundation.\nDoes this mean that \"Christopher Reeve had an accident.\" is true? Yes or No?\nNo"
    )
  })

  it("CB: 'Suppose {premise} Can we infer that \"{hypothesis}\"? Yes, No, or Maybe?' -> Yes / No / Maybe", () => {
    const e = one(cb, `{"premise": "Valence the void-brain, Valence the virtuous valet. Why couldn't the figger choose his own portion of titanic anatomy to shaft? Did he think he was helping?", "hypothesis": "Valence was helping", "label": "contradiction", "idx": 0}`)
    expect(e.label).toBe(1)
    expect(cb.labelWords).toEqual(["Yes", "No", "Maybe"])
    expect(cb.prompt(e.fields)).toBe(
      "Suppose Valence the void-brain, Valence the virtuous valet. Why couldn't the figger choose his own portion of titanic anatomy to shaft? Did he think he was helping? Can we infer that \"Valence was helping\"? Yes, No, or Maybe?\n"
    )
    expect(cb.verbalize(e.fields, 2)).toBe(
      "Suppose Valence the void-brain, Valence the virtuous valet. Why couldn't the figger choose his own portion of titanic anatomy to shaft? Did he think he was helping? Can we infer that \"Valence was helping\"? Yes, No, or Maybe?\nMaybe"
    )
    expect(cb.parse(`{"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 3}`, "train", "x")[0]!.label).toBe(2)
    expect(cb.parse(`{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 3}`, "train", "x")[0]!.label).toBe(0)
  })

  it("BoolQ: MeZO's default BoolQTemplateV3 '{passage} {Question}?\\n' -> Yes / No", () => {
    const e = one(boolq, `{"question": "can u drive in canada with us license", "passage": "American entry into Canada by land -- Persons driving into Canada must have their vehicle's registration document and proof of insurance.", "idx": 8, "label": true}`)
    expect(e).toMatchObject({ id: "validation/8", label: 0 }) // candidates ["Yes", "No"]: true -> "Yes" = 0
    expect(boolq.labelWords).toEqual(["Yes", "No"])
    expect(boolq.prompt(e.fields)).toBe(
      "American entry into Canada by land -- Persons driving into Canada must have their vehicle's registration document and proof of insurance. Can u drive in canada with us license?\n"
    )
    expect(boolq.verbalize(e.fields, 0)).toBe(
      "American entry into Canada by land -- Persons driving into Canada must have their vehicle's registration document and proof of insurance. Can u drive in canada with us license?\nYes"
    )
    // A question that already ends with "?" gets no second one.
    expect(boolq.prompt({ passage: "P.", question: "is it?" })).toBe("P. Is it?\n")
  })

  it("WiC: 'Does the word \"{word}\" have the same meaning in these two sentences? Yes, No?' -> No / Yes", () => {
    const e = one(wic, `{"word": "class", "sentence1": "An emerging professional class.", "sentence2": "Apologizing for losing your temper, even though you were badly provoked, showed real class.", "idx": 0, "label": false, "start1": 25, "start2": 85, "end1": 30, "end2": 90, "version": 1.1}`)
    expect(e.label).toBe(0)
    expect(wic.labelWords).toEqual(["No", "Yes"])
    expect(wic.prompt(e.fields)).toBe(
      "Does the word \"class\" have the same meaning in these two sentences? Yes, No?\nAn emerging professional class.\nApologizing for losing your temper, even though you were badly provoked, showed real class.\n"
    )
    expect(wic.verbalize(e.fields, 0)).toBe(`${wic.prompt(e.fields)}No`)
  })

  it("WSC: '{text}\\nIn the previous sentence, does the pronoun \"{span2.lower()}\" refer to {span1}? Yes or No?' with wsc.fixed spans", () => {
    const e = one(wsc, `{"text": "The lawyer asked the witness a question, but he was reluctant to answer it.", "target": {"span2_index": 8, "span1_index": 0, "span1_text": "the lawyer", "span2_text": "he"}, "idx": 13, "label": false}`, "train")
    // Hugging Face's wsc.fixed (which MeZO loads) rewrites "the lawyer" to the text's "The lawyer".
    expect(e.fields.span1Text).toBe("The lawyer")
    expect(wsc.labelWords).toEqual(["No", "Yes"])
    expect(wsc.prompt(e.fields)).toBe(
      "The lawyer asked the witness a question, but he was reluctant to answer it.\nIn the previous sentence, does the pronoun \"he\" refer to The lawyer? Yes or No?\n"
    )
    expect(wsc.verbalize(e.fields, 1)).toBe(`${wsc.prompt(e.fields)}Yes`)
    // span2 is lower-cased in the prompt only.
    expect(wsc.prompt({ text: "It fell.", span1Text: "The vase", span1Index: 0, span2Text: "It", span2Index: 0 })).toBe(
      "It fell.\nIn the previous sentence, does the pronoun \"it\" refer to The vase? Yes or No?\n"
    )
  })

  it("WSC span repair reproduces _fix_wst: case from the indexed word, trailing periods, newlines, unfixable Kamenev spans", () => {
    const base = { text: "I put the cake away in the refrigerator . It has a lot of leftovers in it.", span1Index: 2, span2Index: 9 }
    expect(fixWscSpans({ ...base, span1Text: "The cake", span2Text: "It" })).toEqual({ ...base, span1Text: "the cake", span2Text: "It" })
    expect(fixWscSpans({ ...base, span1Text: "the cake.", span2Text: "It" }).span1Text).toBe("the cake")
    expect(fixWscSpans({ ...base, text: "a b c", span1Index: 0, span1Text: "X\ny.", span2Text: "b" }).span1Text).toBe("x y")
    const kamenev = { text: "Kamenev, Zinoviev and Stalin met.", span1Index: 0, span2Index: 1, span1Text: "Kamenev and Zinoviev", span2Text: "met" }
    expect(fixWscSpans(kamenev)).toEqual(kamenev)
  })

  it("MultiRC: '{paragraph}\\nQuestion: {question}\\nI found this answer \"{answer}\". Is that correct? Yes or No?' -> No / Yes, one example per answer", () => {
    const line = `{"idx": 7, "version": 1.1, "passage": {"text": "Sent one. Sent two.", "questions": [{"question": "What is it?", "answers": [{"text": "A test", "idx": 30, "label": 1}, {"text": "Nothing", "idx": 31, "label": 0}], "idx": 5}, {"question": "Why?", "answers": [{"text": "Because", "idx": 32, "label": 0}], "idx": 6}]}}`
    const examples = multirc.parse(line, "validation", "inline")
    expect(examples.map((e) => [e.id, e.group, e.label])).toEqual([
      ["validation/7/5/30", "validation/7/5", 1],
      ["validation/7/5/31", "validation/7/5", 0],
      ["validation/7/6/32", "validation/7/6", 0]
    ])
    expect(multirc.labelWords).toEqual(["No", "Yes"])
    expect(multirc.prompt(examples[0]!.fields)).toBe("Sent one. Sent two.\nQuestion: What is it?\nI found this answer \"A test\". Is that correct? Yes or No?\n")
    expect(multirc.verbalize(examples[0]!.fields, 1)).toBe("Sent one. Sent two.\nQuestion: What is it?\nI found this answer \"A test\". Is that correct? Yes or No?\nYes")
  })

  it("every template's verbalize is its prompt plus the label word (after a space for SST-2 only)", () => {
    const fields: Record<string, unknown> = {
      "SST-2": { sentence: "fine" },
      RTE: { premise: "p", hypothesis: "h" },
      CB: { premise: "p", hypothesis: "h" },
      BoolQ: { passage: "p", question: "q" },
      WiC: { word: "w", sentence1: "a", sentence2: "b", start1: 0, end1: 1, start2: 0, end2: 1 },
      WSC: { text: "t", span1Text: "a", span1Index: 0, span2Text: "b", span2Index: 0 },
      MultiRC: { paragraph: "p", question: "q", answer: "a", paragraphIdx: 0, questionIdx: 0, answerIdx: 0 }
    }
    for (const task of allTasks) {
      const f = fields[task.name]
      task.labelWords.forEach((word, c) => expect(task.verbalize(f, c)).toBe(`${task.prompt(f)}${task.name === "SST-2" ? " " : ""}${word}`))
    }
  })

  it("metrics: accuracy everywhere (MeZO), plus macro-F1 for CB and F1a / exact match for MultiRC", () => {
    expect(Object.fromEntries(allTasks.map((t) => [t.name, t.metrics]))).toEqual({
      "SST-2": ["accuracy"],
      WSC: ["accuracy"],
      CB: ["accuracy", "macroF1"],
      WiC: ["accuracy"],
      BoolQ: ["accuracy"],
      MultiRC: ["accuracy", "f1a", "exactMatch"],
      RTE: ["accuracy"]
    })
  })

  it("looks tasks up by dataset or MeZO name; an unknown name is a ConfigError on 'task'", () => {
    expect(taskByName("sst2")).toBe(sst2)
    expect(taskByName("SST-2")).toBe(sst2)
    expect(taskByName("WIC")).toBe(wic)
    expect(taskByName("multirc")).toBe(multirc)
    expect(() => taskByName("COPA")).toThrow(expect.objectContaining({ _tag: "ConfigError", field: "task" }))
  })

  it("a malformed row is a FileError naming the file, line and field", () => {
    expect(() => rte.parse(`{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0}\n{"premise": "p", "hypothesis": "h", "label": "yes", "idx": 1}`, "train", "RTE/train.jsonl")).toThrow(
      expect.objectContaining({ _tag: "FileError", path: "RTE/train.jsonl", message: expect.stringContaining("line 2: 'label' must be one of \"entailment\", \"not_entailment\"") })
    )
    expect(() => wsc.parse(`{"text": "t", "target": {"span1_text": "a"}, "idx": 0, "label": true}`, "train", "WSC/train.jsonl")).toThrow(
      expect.objectContaining({ message: expect.stringContaining("'target.span1_index' must be an integer") })
    )
    expect(() => sst2.parse("text\tlabel\nx\t1", "train", "train.tsv")).toThrow(expect.objectContaining({ _tag: "FileError", message: expect.stringContaining("line 1") }))
    expect(() => sst2.parse("sentence\tlabel\nx\t2", "train", "train.tsv")).toThrow(expect.objectContaining({ message: expect.stringContaining("line 2: 'label' must be 0 or 1") }))
    expect(() => multirc.parse("{not json", "train", "m.jsonl")).toThrow(expect.objectContaining({ message: expect.stringContaining("line 1: not valid JSON") }))
  })
})

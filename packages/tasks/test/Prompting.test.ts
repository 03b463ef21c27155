/**
 * Training examples and candidate encodings: the loss mask covers exactly the label word's tokens,
 * found as MeZO finds them (len(encode(full)) - len(encode(prompt))), whatever the tokenizer does
 * with the space before the word.
 */
import type { Tokenizer } from "@peftkit/tokenizers"
import { describe, expect, it } from "vitest"
import { allTasks, candidateText, encodeCandidate, encodeCandidates, encodeTrainingExample, promptText, rte, sst2 } from "../src/index.js"
import type { TaskExample } from "../src/index.js"
import { BOS, charTokenizer, wordTokenizer } from "./helpers.js"

const sstExample: TaskExample<{ sentence: string }> = { id: "train/0", label: 1, fields: { sentence: "a gorgeous film . " } }

const masked = (ids: ReadonlyArray<number>, mask: ReadonlyArray<number>) => ids.filter((_, i) => mask[i] === 1)

describe("training examples (loss on the label word only)", () => {
  it("BPE-like tokenizer: the space merges into ' great', which is the single masked token", () => {
    const tok = wordTokenizer()
    const ex = encodeTrainingExample(sst2, sstExample, tok)
    expect(tok.pieces(ex.inputIds)).toEqual(["<s>", "a", " gorgeous", " film", " .", " It", " was", " great"])
    expect(ex.lossMask).toEqual([0, 0, 0, 0, 0, 0, 0, 1])
    expect(tok.pieces(masked(ex.inputIds, ex.lossMask))).toEqual([" great"])
  })

  it("character tokenizer: the separating space is a token of its own and belongs to the option, as in MeZO", () => {
    const tok = charTokenizer()
    const ex = encodeTrainingExample(sst2, sstExample, tok)
    expect(ex.inputIds).toEqual(tok.encode("a gorgeous film . It was great"))
    expect(ex.lossMask.reduce((a, b) => a + b, 0)).toBe(6)
    expect(tok.decode(masked(ex.inputIds, ex.lossMask))).toBe(" great")
    expect(ex.lossMask.slice(0, -6).every((m) => m === 0)).toBe(true)
  })

  it("for every task the masked tokens are exactly the gold label word (word tokenizer)", () => {
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
      for (let label = 0; label < task.labelWords.length; label++) {
        const tok = wordTokenizer()
        const ex = encodeTrainingExample(task, { id: "x", label, fields: fields[task.name] }, tok)
        expect(ex.inputIds[0]).toBe(BOS)
        expect(ex.lossMask).toHaveLength(ex.inputIds.length)
        expect(tok.pieces(masked(ex.inputIds, ex.lossMask)), task.name).toEqual([`${task.name === "SST-2" ? " " : ""}${task.labelWords[label]}`])
        expect(ex.lossMask.at(-1)).toBe(1)
      }
    }
  })

  it("the full text is tokenized once: a merge across the prompt/answer boundary keeps the merged token as the answer", () => {
    // A tokenizer that glues a newline to the next word ("\nYes"): encode(prompt) ends with "\n",
    // encode(full) ends with "\nYes", the same length, so MeZO's option_len would be 0; we keep 1.
    const byId: Array<string> = ["<pad>", "<s>", "</s>"]
    const merging: Tokenizer = {
      vocabSize: 1000,
      bosTokenId: 1,
      eosTokenId: 2,
      padTokenId: 0,
      encode: (text) => [1, ...(text.match(/\n[^\s]+| ?[^\s]+|\s/g) ?? []).map((p) => (byId.includes(p) ? byId.indexOf(p) : byId.push(p) - 1))],
      decode: (ids) => ids.map((i) => byId[i]).join("")
    }
    const ex = encodeTrainingExample(rte, { id: "x", label: 0, fields: { premise: "P.", hypothesis: "H." } }, merging)
    expect(ex.lossMask.reduce((a, b) => a + b, 0)).toBe(1)
    expect(merging.decode(masked(ex.inputIds, ex.lossMask))).toBe("\nYes")
  })

  it("prompt and candidate text strip spaces like MeZO (strip(' ') then lstrip())", () => {
    const fields = { premise: "  P.", hypothesis: "H" }
    expect(promptText(rte, fields)).toBe("P.\nDoes this mean that \"H\" is true? Yes or No?\n")
    expect(candidateText(rte, fields, 1)).toBe("P.\nDoes this mean that \"H\" is true? Yes or No?\nNo")
    // lstrip() on the full text also removes a leading newline; the prompt keeps it (MeZO's asymmetry).
    expect(candidateText(rte, { premise: "\nP.", hypothesis: "H" }, 0).startsWith("P.")).toBe(true)
    expect(promptText(rte, { premise: "\nP.", hypothesis: "H" }).startsWith("\nP.")).toBe(true)
  })

  it("candidates come in label-word order and share the prompt", () => {
    const tok = wordTokenizer()
    const [terrible, great] = encodeCandidates(sst2, sstExample, tok)
    expect(tok.pieces(terrible!.inputIds.slice(-terrible!.optionLength))).toEqual([" terrible"])
    expect(tok.pieces(great!.inputIds.slice(-great!.optionLength))).toEqual([" great"])
    expect(terrible!.inputIds.slice(0, -1)).toEqual(great!.inputIds.slice(0, -1))
    expect(() => encodeCandidate(sst2, sstExample.fields, 2, tok)).toThrow(RangeError)
  })

  it("truncation keeps BOS and the last maxLength - 1 tokens, so the answer survives", () => {
    const tok = charTokenizer()
    const full = tok.encode("a gorgeous film . It was great")
    const ex = encodeTrainingExample(sst2, sstExample, tok, { maxLength: 10 })
    expect(ex.inputIds).toEqual([BOS, ...full.slice(-9)])
    expect(tok.decode(masked(ex.inputIds, ex.lossMask))).toBe(" great")
    const noBos: Tokenizer = { ...tok, encode: (text) => tok.encode(text, { addSpecialTokens: false }) }
    expect(encodeCandidate(sst2, sstExample.fields, 1, noBos, { maxLength: 10 }).inputIds).toEqual(full.slice(-10))
  })
})

/**
 * Scoring and evaluation with fake models whose logits we set: log-likelihoods against float64
 * hand computation, batching and padding, the argmax, MeZO's mean vs the sum, one read per batch,
 * no leaked tensors.
 */
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest"
import { argmax, cb, encodeCandidates, evaluate, multirc, optionLogProbs, rte, scoreOptions, sst2 } from "../src/index.js"
import type { EncodedCandidate, TaskExample } from "../src/index.js"
import { BigramModel, charTokenizer, FirstTokenModel, PAD, randomTable, wordTokenizer, zeros } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

afterEach(() => {
  vi.restoreAllMocks()
})

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

/** Expected sum of log p(answer tokens) in float64 under a bigram model. */
const expectedSum = (model: BigramModel, s: EncodedCandidate): number => {
  let sum = 0
  for (let t = s.inputIds.length - s.optionLength; t < s.inputIds.length; t++) sum += model.logProb(s.inputIds[t - 1]!, s.inputIds[t]!)
  return sum
}

describe("scoreOptions", () => {
  it("equals the float64 log-likelihood of the answer tokens given everything before them", async () => {
    const tok = charTokenizer()
    const model = new BigramModel(randomTable(131, 131, 7))
    const examples: Array<TaskExample<{ premise: string; hypothesis: string }>> = [
      { id: "a", label: 0, fields: { premise: "A cat sat.", hypothesis: "A cat exists." } },
      { id: "b", label: 1, fields: { premise: "It rained all day long in the town.", hypothesis: "Dry." } }
    ]
    const sequences = examples.flatMap((e) => encodeCandidates(rte, e, tok))
    expect(sequences.map((s) => s.optionLength)).toEqual([3, 2, 3, 2]) // "Yes", "No" after "\n"
    const scores = await run(scoreOptions(model, sequences, { padTokenId: PAD }))
    scores.forEach((score, i) => {
      const want = expectedSum(model, sequences[i]!)
      expect(score.tokens).toBe(sequences[i]!.optionLength)
      expect(score.sum).toBeCloseTo(want, 4)
      expect(score.mean).toBeCloseTo(want / sequences[i]!.optionLength, 4)
    })
  })

  it("pads on the right with an attention mask, in one forward pass; batched equals one at a time", async () => {
    const tok = charTokenizer()
    const model = new BigramModel(randomTable(131, 131, 11))
    const sequences = [
      ...encodeCandidates(sst2, { id: "a", label: 0, fields: { sentence: "ok" } }, tok),
      ...encodeCandidates(sst2, { id: "b", label: 0, fields: { sentence: "a much longer sentence" } }, tok)
    ]
    const batched = await run(scoreOptions(model, sequences, { padTokenId: PAD }))
    expect(model.calls).toEqual([[4, Math.max(...sequences.map((s) => s.inputIds.length))]])
    const mask = model.masks[0]!
    sequences.forEach((s, b) => expect(mask[b]).toEqual(Array.from({ length: mask[b]!.length }, (_, t) => (t < s.inputIds.length ? 1 : 0))))
    for (let i = 0; i < sequences.length; i++) {
      const [alone] = await run(scoreOptions(model, [sequences[i]!], { padTokenId: PAD }))
      expect(batched[i]!.sum).toBeCloseTo(alone!.sum, 5)
    }
  })

  it("uses a stable log-softmax: huge logits give finite log-probabilities", () => {
    const table = zeros(131, 131).map((row) => row.map((_, v) => (v === 70 ? 1e4 : v === 71 ? 1e4 - 2 : -1e4)))
    const model = new BigramModel(table)
    const logp = optionLogProbs(model, [{ inputIds: [1, 70, 71], optionLength: 2 }], PAD)
    const values = Array.from(logp.dataSync())
    logp.dispose()
    // Every row: 1e4 at token 70, 1e4 - 2 at token 71, -1e4 elsewhere (exp underflows to 0).
    const logZ = Math.log(1 + Math.exp(-2))
    expect(values[0]).toBeCloseTo(-logZ, 4) // token 70 after BOS
    expect(values[1]).toBeCloseTo(-2 - logZ, 4) // token 71 after 70
    expect(values.every(Number.isFinite)).toBe(true)
  })

  it("rejects logits of the wrong shape as ShapeMismatch and no sequences as no work", async () => {
    const bad = { forward: (ids: tf.Tensor2D) => tf.zeros([ids.shape[0] + 1, ids.shape[1], 5]) as tf.Tensor3D }
    const result = await Effect.runPromise(Effect.either(scoreOptions(bad, [{ inputIds: [1, 2, 3], optionLength: 1 }], { padTokenId: 0 })))
    expect(result._tag === "Left" && result.left._tag).toBe("ShapeMismatch")
    expect(await run(scoreOptions(bad, [], { padTokenId: 0 }))).toEqual([])
  })
})

describe("evaluate", () => {
  /** SST-2 examples whose first word decides the sentiment the fake model prefers. */
  const setup = () => {
    const tok = wordTokenizer(64)
    const texts = ["good", "bad", " It", " was", " great", " terrible"]
    for (const t of texts) tok.encode(t, { addSpecialTokens: false })
    const id = (piece: string) => tok.encode(piece, { addSpecialTokens: false })[0]!
    const bias = zeros(64, 64)
    bias[id("good")]![id(" great")] = 4
    bias[id("bad")]![id(" terrible")] = 4
    const model = new FirstTokenModel(zeros(64, 64), bias)
    const examples: Array<TaskExample<{ sentence: string }>> = [
      { id: "0", label: 1, fields: { sentence: "good film" } },
      { id: "1", label: 0, fields: { sentence: "bad film" } },
      { id: "2", label: 0, fields: { sentence: "good plot , bad end" } }, // the model says great: wrong
      { id: "3", label: 1, fields: { sentence: "good" } },
      { id: "4", label: 0, fields: { sentence: "bad bad bad" } }
    ]
    return { tok, model, examples }
  }

  it("predicts the candidate with the higher log-likelihood and computes accuracy", async () => {
    const { tok, model, examples } = setup()
    const result = await run(evaluate(sst2, model, tok, examples, { batchSize: 2 }))
    expect(result.predictions.map((p) => p.predicted)).toEqual([1, 0, 1, 1, 0])
    expect(result.metrics).toEqual({ accuracy: 0.8 })
    expect(model.forwards).toBe(3) // ceil(5 / 2) batches, each with all candidates
    // Scores are the log-probabilities of " terrible" and " great" after " was": softmax over 64 logits.
    const lse = Math.log(63 + Math.exp(4))
    expect(result.predictions[0]!.scores[0]).toBeCloseTo(-lse, 4)
    expect(result.predictions[0]!.scores[1]).toBeCloseTo(4 - lse, 4)
  })

  it("reads back once per batch and leaks no tensors", async () => {
    const { tok, model, examples } = setup()
    await run(evaluate(sst2, model, tok, examples.slice(0, 1), { batchSize: 2 })) // warm up the backend
    const before = tf.memory().numTensors
    const data = vi.spyOn(tf.Tensor.prototype, "data")
    const dataSync = vi.spyOn(tf.Tensor.prototype, "dataSync")
    const progress: Array<[number, number]> = []
    await run(evaluate(sst2, model, tok, examples, { batchSize: 2, onBatch: (done, total) => progress.push([done, total]) }))
    expect(data).toHaveBeenCalledTimes(3)
    expect(dataSync).not.toHaveBeenCalled()
    expect(progress).toEqual([[2, 5], [4, 5], [5, 5]])
    expect(tf.memory().numTensors).toBe(before)
  })

  it("ranks by the mean log-probability like MeZO by default, by the sum on request (CB: Yes/No/Maybe differ in length)", async () => {
    const tok = charTokenizer()
    const c = (ch: string) => ch.codePointAt(0)! + 3
    const table = zeros(131, 131)
    table[c("\n")]![c("M")] = 3
    table[c("\n")]![c("N")] = 5
    for (const [a, b] of [["M", "a"], ["a", "y"], ["y", "b"], ["b", "e"]] as const) table[c(a)]![c(b)] = 10
    table[c("N")]![c("o")] = 5
    const model = new BigramModel(table)
    const example = { id: "x", label: 2, fields: { premise: "P.", hypothesis: "H" } }
    const sequences = encodeCandidates(cb, example, tok)
    const sums = sequences.map((s) => expectedSum(model, s))
    const means = sums.map((s, i) => s / sequences[i]!.optionLength)
    expect([argmax(means), argmax(sums)]).toEqual([2, 1]) // the table is built so that they disagree
    const byMean = await run(evaluate(cb, model, tok, [example]))
    const bySum = await run(evaluate(cb, model, tok, [example], { score: "sum" }))
    expect(byMean.predictions[0]!.predicted).toBe(2)
    expect(bySum.predictions[0]!.predicted).toBe(1)
    byMean.predictions[0]!.scores.forEach((s, i) => expect(s).toBeCloseTo(means[i]!, 4))
    expect(byMean.metrics).toEqual({ accuracy: 1, macroF1: 1 })
    expect(bySum.metrics).toEqual({ accuracy: 0, macroF1: 0 })
  })

  it("MultiRC predictions carry their question, and F1a / exact match are computed from them", async () => {
    const tok = wordTokenizer(64)
    for (const t of ["yes", "no", "\n", "Yes", "No"]) tok.encode(t, { addSpecialTokens: false })
    const id = (p: string) => tok.encode(p, { addSpecialTokens: false })[0]!
    const bias = zeros(64, 64)
    bias[id("yes")]![id("Yes")] = 4
    bias[id("no")]![id("No")] = 4
    const model = new FirstTokenModel(zeros(64, 64), bias)
    const ex = (i: number, paragraph: string, q: string, label: number) => ({
      id: `v/${i}`,
      label,
      group: q,
      fields: { paragraph, question: "Q?", answer: "A", paragraphIdx: 0, questionIdx: 0, answerIdx: i }
    })
    // Predicted: yes -> 1, no -> 0.
    const examples = [ex(0, "yes", "q1", 1), ex(1, "no", "q1", 0), ex(2, "yes", "q2", 0), ex(3, "yes", "q2", 1), ex(4, "no", "q3", 1)]
    const result = await run(evaluate(multirc, model, tok, examples, { batchSize: 3 }))
    expect(result.predictions.map((p) => [p.predicted, p.group])).toEqual([[1, "q1"], [0, "q1"], [1, "q2"], [1, "q2"], [0, "q3"]])
    // tp = 2, fp = 1, fn = 1 -> F1a = 2/3; only q1 is all right -> EM = 1/3; 3 of 5 right.
    expect(result.metrics.accuracy).toBeCloseTo(0.6, 12)
    expect(result.metrics.f1a).toBeCloseTo(2 / 3, 12)
    expect(result.metrics.exactMatch).toBeCloseTo(1 / 3, 12)
  })

  it("a bad batch size is a ConfigError", async () => {
    const { tok, model, examples } = setup()
    const result = await Effect.runPromise(Effect.either(evaluate(sst2, model, tok, examples, { batchSize: 0 })))
    expect(result._tag === "Left" && result.left).toMatchObject({ _tag: "ConfigError", field: "batchSize" })
  })
})

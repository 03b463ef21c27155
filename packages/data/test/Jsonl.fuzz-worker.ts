// Fuzz targets for jsonl reading and tokenising, run in a worker by Jsonl.fuzz.test.ts.
import { Cause, Effect, Exit, Option } from "effect"
import fc from "fast-check"
import { runFuzzTargets, type Outcome } from "../../core/test/fuzz/worker.js"
import { decodeJsonlBytes, parseJsonl, tokenizeRecords } from "../src/index.js"
import { wordTokenizer } from "./helpers.js"

const tokenizer = wordTokenizer({ chat: true })

const load = (bytes: Uint8Array, maxSeqLength: number | undefined) =>
  Effect.gen(function* () {
    const text = yield* decodeJsonlBytes(bytes, "fuzz.jsonl")
    const file = yield* parseJsonl(text, "fuzz.jsonl")
    return yield* tokenizeRecords(file.records, tokenizer, maxSeqLength === undefined ? {} : { maxSeqLength, maskPrompt: true }, { path: "fuzz.jsonl", lines: file.lines })
  })

const outcome = async (bytes: Uint8Array, maxSeqLength: number | undefined): Promise<Outcome> => {
  const exit = await Effect.runPromiseExit(load(bytes, maxSeqLength))
  if (Exit.isSuccess(exit)) {
    if (maxSeqLength !== undefined && exit.value.examples.some((e) => e.inputIds.length > maxSeqLength)) throw new Error("an example is longer than maxSeqLength")
    return { ok: true }
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) return { ok: false, tag: failure.value._tag }
  throw new Error(`defect: ${Cause.pretty(exit.cause).split("\n")[0]}`)
}

const words = fc.array(fc.constantFrom("the", "cat", "sat", "on", "a", "mat", "hi", "ok", "\u00e9", "\u{1f600}", "\n", "\\", '"'), { maxLength: 12 }).map((w) => w.join(" "))
const record = fc.oneof(
  fc.record({ text: words }),
  fc.record({ prompt: words, completion: words }),
  fc.record({ messages: fc.array(fc.record({ role: fc.constantFrom("user", "assistant", "system", "bad"), content: words }), { maxLength: 3 }) }),
  fc.jsonValue({ maxDepth: 2 })
)
const maxSeq = fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined })

void runFuzzTargets({
  // Well-formed lines of every shape (and other JSON), with a huge line now and then.
  records: {
    arbitrary: fc.tuple(fc.array(record, { maxLength: 6 }), fc.option(fc.integer({ min: 10_000, max: 400_000 }), { nil: undefined }), maxSeq),
    run: ([records, huge, maxSeqLength]) => {
      const lines = records.map((r) => JSON.stringify(r))
      if (huge !== undefined) lines.push(JSON.stringify({ text: "the cat sat ".repeat(huge / 12) }))
      return outcome(new TextEncoder().encode(lines.join("\n")), maxSeqLength ?? (huge === undefined ? undefined : 64))
    },
    typed: ["InvalidDataset", "ConfigError"]
  },
  // Raw bytes: byte edits of a valid file (invalid UTF-8, broken JSON, stray newlines).
  bytes: {
    arbitrary: fc.tuple(fc.array(fc.tuple(fc.nat(200), fc.nat(255)), { maxLength: 6 }), maxSeq),
    run: ([edits, maxSeqLength]) => {
      const bytes = new TextEncoder().encode('{"prompt": "hi the cat", "completion": " sat on a mat \u00e9"}\n{"prompt": "ok", "completion": " yes \u{1f600}"}\n')
      for (const [at, value] of edits) if (at < bytes.length) bytes[at] = value
      return outcome(bytes, maxSeqLength)
    },
    typed: ["InvalidDataset", "ConfigError"]
  }
})

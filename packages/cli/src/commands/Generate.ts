/** `peftkit generate`: text from a model (optionally with an adapter), streamed to stdout. */
import { NonNegativeInt, PositiveInt } from "@peftkit/core"
import { generate } from "@peftkit/models"
import { Effect, Schema } from "effect"
import { generateFlags } from "../CommandFlags.js"
import { baseLayers, loadModelAndTokenizer, say } from "../Runtime.js"
import { applyAdapter, BackendFlag, decodeFlags, missingAdapter } from "./Shared.js"

const GenerateOptions = Schema.Struct({
  model: Schema.String,
  adapterPath: Schema.optionalWith(Schema.String, { default: () => "adapters" }),
  noAdapter: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  prompt: Schema.optionalWith(Schema.String, { default: () => "" }),
  maxTokens: Schema.optionalWith(PositiveInt, { default: () => 100 }),
  temp: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => 0 }),
  topK: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  topP: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), { default: () => 1 }),
  chat: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  seed: Schema.optionalWith(Schema.Int, { default: () => 0 }),
  backend: BackendFlag
})

export const runGenerate = (options: typeof GenerateOptions.Type, write: (text: string) => void) =>
  Effect.gen(function* () {
    // Before the model loads: a missing adapter is a usage error, said at once.
    const missing = !options.noAdapter ? missingAdapter(options.adapterPath, "generate", true) : undefined
    if (missing !== undefined) return yield* missing
    const { model, tokenizer } = yield* loadModelAndTokenizer(options.model)
    yield* applyAdapter(model, options.adapterPath, !options.noAdapter, "generate", true)
    const text = options.chat && tokenizer.applyChatTemplate !== undefined
      ? tokenizer.applyChatTemplate([{ role: "user", content: options.prompt }], { addGenerationPrompt: true })
      : options.prompt
    const promptIds = tokenizer.encode(text, { addSpecialTokens: !options.chat })
    const started = performance.now()
    const ids: Array<number> = []
    // Decode prompt + continuation and print what is new: decoders treat a sequence's first token
    // specially (llama2.c strips its leading space), so the continuation alone decodes wrong.
    const promptText = tokenizer.decode(promptIds, { skipSpecialTokens: true })
    let shown = promptText
    write(promptText)
    const eos = tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId]
    yield* Effect.promise(() =>
      generate(model, promptIds, {
        maxNewTokens: options.maxTokens,
        temperature: options.temp,
        topK: options.topK,
        topP: options.topP,
        seed: options.seed,
        eosTokenIds: eos,
        onToken: (id) => {
          if (eos.includes(id)) return
          ids.push(id)
          const decoded = tokenizer.decode([...promptIds, ...ids], { skipSpecialTokens: true })
          // A token that ends inside a multi-byte character decodes to U+FFFD: wait for the rest.
          if (decoded.endsWith("\uFFFD")) return
          write(decoded.slice(shown.length))
          shown = decoded
        }
      })
    )
    write("\n")
    const seconds = (performance.now() - started) / 1000
    yield* say(`generated ${ids.length} tokens in ${seconds.toFixed(2)} s (${(ids.length / Math.max(seconds, 1e-9)).toFixed(1)} tokens/s, prompt ${promptIds.length} tokens)`)
    return shown.slice(promptText.length)
  })

export const generateCommand = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const options = yield* decodeFlags(argv, generateFlags, GenerateOptions, "generate")
    yield* Effect.asVoid(runGenerate(options, (text) => void process.stdout.write(text))).pipe(Effect.provide(baseLayers(options.backend)))
  })

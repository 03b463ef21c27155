/**
 * `peftkit merge`: fuse an adapter into the base weights (in float32) and write a Hugging Face
 * model directory that transformers (and peftkit) load without PEFT. Tokenizer files are copied.
 */
import { ConfigError } from "@peftkit/core"
import { saveHfModel } from "@peftkit/models"
import { Effect, Schema } from "effect"
import { copyFileSync, existsSync, readdirSync, statSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { mergeFlags } from "../CommandFlags.js"
import { baseLayers, loadModelAndTokenizer, say } from "../Runtime.js"
import { applyAdapter, BackendFlag, decodeFlags, missingAdapter } from "./Shared.js"

const MergeOptions = Schema.Struct({
  model: Schema.String,
  adapterPath: Schema.optionalWith(Schema.String, { default: () => "adapters" }),
  savePath: Schema.String,
  backend: BackendFlag
})

const TOKENIZER_FILES = /^(tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|chat_template\.jinja|tokenizer\.bin|tok.*\.bin)$/

export const runMerge = (options: typeof MergeOptions.Type) =>
  Effect.gen(function* () {
    if (resolve(options.savePath) === resolve(options.model)) {
      return yield* new ConfigError({ field: "merge.savePath", reason: "must differ from --model (the base model is not overwritten)" })
    }
    // Before the model loads: a missing adapter is a usage error, said at once.
    const missing = missingAdapter(options.adapterPath, "merge", false)
    if (missing !== undefined) return yield* missing
    const { model, config } = yield* loadModelAndTokenizer(options.model)
    const adapters = yield* applyAdapter(model, options.adapterPath, true, "merge", false)
    adapters!.merge()
    adapters!.remove()
    const tensors = model.stateDict()
    const saved = yield* saveHfModel(options.savePath, config, tensors).pipe(Effect.ensuring(Effect.sync(() => Object.values(tensors).forEach((t) => t.dispose()))))
    // The tokenizer travels with the model: from the model directory, or next to a llama2.c file.
    const source = existsSync(options.model) && statSync(options.model).isDirectory() ? options.model : dirname(options.model)
    for (const file of readdirSync(source)) if (TOKENIZER_FILES.test(file)) copyFileSync(join(source, file), join(options.savePath, file))
    yield* say(`merged model written to ${options.savePath} (${saved.files.length} file(s), ${(saved.totalBytes / 1e6).toFixed(1)} MB)`)
  })

export const mergeCommand = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const options = yield* decodeFlags(argv, mergeFlags, MergeOptions, "merge")
    yield* runMerge(options).pipe(Effect.provide(baseLayers(options.backend)))
  })

/** Pieces shared by the commands that use a trained adapter. */
import { attempt, decodeConfig, loadAdapter, type ThrownError } from "@peftkit/core"
import type { CausalLM } from "@peftkit/models"
import { Effect, Schema } from "effect"
import { type FlagSpec, parseFlags } from "../Flags.js"
import { say } from "../Runtime.js"
import { BackendName } from "../TrainOptions.js"
import { installedVariants } from "../Variants.js"

/** Parses flags and decodes them with `schema`; errors name the flag. */
export const decodeFlags = <A, I>(argv: ReadonlyArray<string>, specs: ReadonlyArray<FlagSpec>, schema: Schema.Schema<A, I>, command: string) =>
  Effect.gen(function* () {
    const raw = yield* attempt(() => parseFlags(argv, specs)) as Effect.Effect<Record<string, unknown>, ThrownError>
    const { verbose: _verbose, help: _help, ...rest } = raw
    return yield* decodeConfig(schema, rest, command)
  })

/** Loads the PEFT adapter at `dir` onto `model` unless disabled. */
export const applyAdapter = (model: CausalLM, dir: string, enabled: boolean) =>
  Effect.gen(function* () {
    if (!enabled) return undefined
    const adapters = yield* loadAdapter(dir, model, installedVariants)
    const { r, alpha } = adapters.config as { readonly r?: unknown; readonly alpha?: unknown }
    const shape = typeof r === "number" ? ` r=${r}${typeof alpha === "number" ? `, alpha ${alpha}` : ""},` : ""
    yield* say(`adapter: ${dir} (${adapters.variant.name}${shape} ${adapters.entries.length} layers)`)
    return adapters
  })

export const BackendFlag = Schema.optionalWith(BackendName, { default: () => "auto" as const })

/** Pieces shared by the commands that use a trained adapter. */
import { attempt, ConfigError, decodeConfig, loadAdapter, type ThrownError } from "@peftkit/core"
import type { CausalLM } from "@peftkit/models"
import { Effect, Schema } from "effect"
import { existsSync, statSync } from "node:fs"
import { join } from "node:path"
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

/**
 * Why `dir` cannot hold an adapter (missing, a file, no adapter_config.json), or undefined. The
 * default `--adapter-path adapters` is the usual miss: a merged model has no adapter to load, so
 * the message says how to run without one where the command can (`noAdapterFlag`).
 */
export const missingAdapter = (dir: string, command: string, noAdapterFlag: boolean): ConfigError | undefined => {
  const without = noAdapterFlag ? "; to use the model without an adapter, pass --no-adapter" : ""
  const give = `give --adapter-path DIR with an adapter_config.json${without}`
  let reason: string | undefined
  if (!existsSync(dir)) reason = `adapter directory ${dir} does not exist (${give})`
  else if (!statSync(dir).isDirectory()) reason = `${dir} is not a directory (${give})`
  else if (!existsSync(join(dir, "adapter_config.json"))) reason = `${dir} holds no adapter_config.json, so no adapter (${give})`
  return reason === undefined ? undefined : new ConfigError({ field: `${command}.adapterPath`, reason })
}

/**
 * Loads the PEFT adapter at `dir` onto `model` unless disabled. `command` names the flags in
 * errors; `noAdapterFlag` says whether the command has `--no-adapter` to suggest.
 */
export const applyAdapter = (model: CausalLM, dir: string, enabled: boolean, command = "generate", noAdapterFlag = true) =>
  Effect.gen(function* () {
    if (!enabled) return undefined
    const missing = missingAdapter(dir, command, noAdapterFlag)
    if (missing !== undefined) return yield* missing
    const adapters = yield* loadAdapter(dir, model, installedVariants)
    const { r, alpha } = adapters.config as { readonly r?: unknown; readonly alpha?: unknown }
    const shape = typeof r === "number" ? ` r=${r}${typeof alpha === "number" ? `, alpha ${alpha}` : ""},` : ""
    yield* say(`adapter: ${dir} (${adapters.variant.name}${shape} ${adapters.entries.length} layers)`)
    return adapters
  })

export const BackendFlag = Schema.optionalWith(BackendName, { default: () => "auto" as const })

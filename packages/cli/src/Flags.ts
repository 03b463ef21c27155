/**
 * Command-line flags: `--kebab-case` flags parsed with `node:util`'s parseArgs into camelCase keys,
 * numbers and lists converted by declared type, and `--config FILE` (JSON with the same keys, camel
 * or kebab case) merged underneath. Every failure is a `ConfigError` whose field is the flag.
 */
import { ConfigError } from "@peftkit/core"
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"

export type FlagType = "string" | "number" | "boolean" | "list"

export interface FlagSpec {
  readonly name: string
  readonly type: FlagType
  readonly help: string
  /** Shown in help as the value placeholder. */
  readonly value?: string
}

const camel = (kebab: string) => kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
export const kebab = (camelName: string) => camelName.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/** `train.learningRate` -> `--learning-rate`, for error messages in flag terms. */
export const flagOf = (field: string) => `--${kebab(field.replace(/^[a-z]+\./, "").split(".")[0]!)}`

const convert = (spec: FlagSpec, raw: string | boolean): unknown => {
  if (spec.type === "boolean" || typeof raw === "boolean") return raw
  if (spec.type === "number") {
    const value = Number(raw)
    if (raw.trim() === "" || Number.isNaN(value)) throw new ConfigError({ field: spec.name, reason: `'${raw}' is not a number` })
    return value
  }
  if (spec.type === "list") return raw.split(",").map((item) => item.trim()).filter((item) => item !== "")
  return raw
}

/** Parses `argv` against `specs`; returns camelCase options (config file values underneath flags). */
export const parseFlags = (argv: ReadonlyArray<string>, specs: ReadonlyArray<FlagSpec>): Record<string, unknown> => {
  const byName = new Map(specs.map((spec) => [spec.name, spec]))
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({
      args: [...argv],
      options: Object.fromEntries([
        ...specs.map((spec) => [spec.name, { type: spec.type === "boolean" ? ("boolean" as const) : ("string" as const) }]),
        ["config", { type: "string" as const }],
        ["verbose", { type: "boolean" as const }],
        ["help", { type: "boolean" as const, short: "h" }]
      ]),
      allowPositionals: false,
      strict: true
    })
  } catch (error) {
    const message = (error as Error).message.split("\n")[0]!
    const flag = /'(--?[^']+)'/.exec(message)?.[1] ?? ""
    const reason = /ambiguous/.test(message)
      ? "needs a value (for a negative number write --flag=-N)"
      : message.split(". ")[0]!.replace(/^Unknown option/, "unknown flag")
    throw new ConfigError({ field: flag.replace(/^-+/, ""), reason })
  }
  const fromFile = parsed.values.config === undefined ? {} : readConfigFile(String(parsed.values.config), byName)
  const fromFlags: Record<string, unknown> = {}
  for (const [name, raw] of Object.entries(parsed.values)) {
    if (name === "config" || name === "verbose" || name === "help" || raw === undefined) continue
    fromFlags[camel(name)] = convert(byName.get(name)!, raw as string | boolean)
  }
  return { ...fromFile, ...fromFlags, ...(parsed.values.verbose ? { verbose: true } : {}), ...(parsed.values.help ? { help: true } : {}) }
}

const readConfigFile = (path: string, specs: ReadonlyMap<string, FlagSpec>): Record<string, unknown> => {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(path, "utf8"))
  } catch (error) {
    throw new ConfigError({ field: "config", reason: `cannot read ${path} as JSON: ${(error as Error).message}` })
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new ConfigError({ field: "config", reason: `${path} must hold a JSON object` })
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(json)) {
    const name = key.includes("-") ? key : kebab(key)
    if (!specs.has(name)) throw new ConfigError({ field: name, reason: `unknown key in ${path}` })
    out[camel(name)] = value
  }
  return out
}

/** The help block listing flags. */
export const flagHelp = (specs: ReadonlyArray<FlagSpec>): string =>
  specs
    .map((spec) => {
      const left = `  --${spec.name}${spec.type === "boolean" ? "" : ` ${spec.value ?? spec.type.toUpperCase()}`}`
      return `${left.padEnd(34)} ${spec.help}`
    })
    .join("\n")

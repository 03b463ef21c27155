/**
 * Command-line flags: `--kebab-case` flags parsed with `node:util`'s parseArgs into camelCase keys,
 * numbers and lists converted by declared type, and `--config FILE` (JSON with the same keys, camel
 * or kebab case) merged underneath. Every failure is a `ConfigError` whose field is the flag.
 */
import { ConfigError } from "@peftkit/core"
import { readFileSync, statSync } from "node:fs"
import { dirname } from "node:path"
import { parseArgs } from "node:util"

export type FlagType = "string" | "number" | "boolean" | "list"

export interface FlagSpec {
  readonly name: string
  readonly type: FlagType
  readonly help: string
  /** Shown in help as the value placeholder. */
  readonly value?: string
  /** A list flag's words that stand alone, not as a one-item list (`--target-modules all-linear`). */
  readonly keywords?: ReadonlyArray<string>
  /** Checks the value (from a flag or the config file); returns why it is wrong, or undefined. */
  readonly check?: (value: unknown) => string | undefined
}

/**
 * A check for flags that name a directory holding data files (`--data`): a file there is the
 * common slip (`--data data/train.jsonl`), answered with the directory to give instead.
 */
export const directoryHolding = (files: string) => (value: unknown): string | undefined => {
  if (typeof value !== "string") return undefined
  let isFile: boolean
  try {
    isFile = !statSync(value).isDirectory()
  } catch {
    return undefined // missing or unreadable: the loader says which, naming the path
  }
  if (!isFile) return undefined
  return /\.jsonl$/i.test(value)
    ? `takes a directory holding ${files}, not a file; give the file's directory: --data ${dirname(value)}`
    : `takes a directory holding ${files}, but ${value} is a file`
}

/** `-1`, `-0.5`, `-1e-3`, `-.5`, `-Infinity`: a value after a flag, not a flag. */
const NEGATIVE_NUMBER = /^-(\d|\.\d|Infinity$)/

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
  if (spec.type === "list") {
    if (spec.keywords?.includes(raw.trim())) return raw.trim()
    return raw.split(",").map((item) => item.trim()).filter((item) => item !== "")
  }
  return raw
}

/** `--rank -1` as `--rank=-1`: parseArgs reads a value that starts with a dash as a missing value. */
const joinNegativeValues = (argv: ReadonlyArray<string>, byName: ReadonlyMap<string, FlagSpec>): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--") {
      out.push(...argv.slice(i))
      break
    }
    const spec = arg.startsWith("--") && !arg.includes("=") ? byName.get(arg.slice(2)) : undefined
    const next = argv[i + 1]
    if (spec !== undefined && spec.type !== "boolean" && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${arg}=${next}`)
      i++
    } else out.push(arg)
  }
  return out
}

const checked = (spec: FlagSpec | undefined, value: unknown): unknown => {
  const problem = spec?.check?.(value)
  if (problem !== undefined) throw new ConfigError({ field: spec!.name, reason: problem })
  return value
}

/** Parses `argv` against `specs`; returns camelCase options (config file values underneath flags). */
export const parseFlags = (argv: ReadonlyArray<string>, specs: ReadonlyArray<FlagSpec>): Record<string, unknown> => {
  const byName = new Map(specs.map((spec) => [spec.name, spec]))
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({
      args: joinNegativeValues(argv, byName),
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
    fromFlags[camel(name)] = checked(byName.get(name), convert(byName.get(name)!, raw as string | boolean))
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
    const spec = specs.get(name)
    if (spec === undefined) throw new ConfigError({ field: name, reason: `unknown key in ${path}` })
    // ["all-linear"] means what "all-linear" means, as on the command line.
    const keyword = Array.isArray(value) && value.length === 1 && spec.keywords?.includes(value[0]) ? value[0] : value
    out[camel(name)] = checked(spec, keyword)
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

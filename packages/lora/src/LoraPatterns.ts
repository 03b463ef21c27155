/**
 * PEFT's `rank_pattern` / `alpha_pattern`: per-module rank and alpha. PEFT 0.21 resolves them in
 * `LoraModel._create_and_replace` with `get_pattern_key` (peft/utils/other.py): the FIRST key, in
 * the dict's order, for which `re.match(rf"(.*\.)?({key})$", module_name)` succeeds wins; no match
 * means `r` / `lora_alpha`. The key is a regex, so "q_proj" matches `...self_attn.q_proj` but
 * "proj" does not (the part before it must end with a dot), and "^model.layers.0.*v_proj" only
 * matches from the start.
 */
import { Schema } from "effect"

/** A pattern: key (a Python-compatible regex) -> value, in the order the adapter_config.json lists them. */
export type Pattern = Readonly<Record<string, number>>

const compiled = new Map<string, RegExp>()

/** PEFT's full-name match for `key`, compiled once. Throws a SyntaxError for a key that is no regex. */
const patternRegex = (key: string): RegExp => {
  let regex = compiled.get(key)
  if (regex === undefined) {
    regex = new RegExp(`^(.*\\.)?(${key})$`)
    compiled.set(key, regex)
  }
  return regex
}

/** The pattern key that decides `moduleName` (PEFT's `get_pattern_key`), or undefined. */
export const patternKey = (pattern: Pattern, moduleName: string): string | undefined =>
  Object.keys(pattern).find((key) => patternRegex(key).test(moduleName))

/** The value of the winning key for `moduleName`, else `fallback`. */
export const resolvePattern = (pattern: Pattern, moduleName: string, fallback: number): number => {
  const key = patternKey(pattern, moduleName)
  return key === undefined ? fallback : pattern[key]!
}

/** A pattern key must compile as a regex here (PEFT compiles it in Python: keep to the common syntax). */
export const PatternKey = Schema.String.pipe(
  Schema.filter((key) => {
    try {
      patternRegex(key)
      return true
    } catch (error) {
      return `is not a regular expression: ${(error as Error).message}`
    }
  })
)

/** Escapes a module name so that, as a pattern key, it matches that module only. */
export const exactPatternKey = (moduleName: string): string => moduleName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

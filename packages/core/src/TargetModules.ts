/**
 * PEFT's `target_modules` semantics, so configs written for Python mean the same thing here:
 * - a string is a regular expression that must match the WHOLE module name (`re.fullmatch`);
 * - a list matches a name exactly, or as a dotted suffix (`"q_proj"` matches `model.layers.0.self_attn.q_proj`);
 * - `"all-linear"` is every linear layer except the output head.
 */
import { Schema } from "effect"
import { ConfigError } from "./Errors.js"

export type TargetModules = string | ReadonlyArray<string>

/** Schema of a `targetModules` config value. */
export const TargetModulesSchema = Schema.Union(Schema.String, Schema.Array(Schema.String))

export const ALL_LINEAR = "all-linear"

/** Compiles `targetModules` into a predicate over module names. Throws `ConfigError` on a bad regex. */
export const targetMatcher = (
  targetModules: TargetModules,
  outputHeads: ReadonlyArray<string> = []
): ((moduleName: string) => boolean) => {
  if (typeof targetModules === "string") {
    if (targetModules === ALL_LINEAR) return (name) => !outputHeads.includes(name)
    let pattern: RegExp
    try {
      pattern = new RegExp(`^(?:${targetModules})$`)
    } catch (error) {
      throw new ConfigError({ field: "targetModules", reason: `not a valid regular expression: ${(error as Error).message}` })
    }
    return (name) => pattern.test(name)
  }
  const keys = [...targetModules]
  return (name) => keys.some((key) => name === key || name.endsWith(`.${key}`))
}

/** The names among `moduleNames` that `targetModules` selects; none at all is a `ConfigError`, as in PEFT. */
export const selectTargets = (
  moduleNames: ReadonlyArray<string>,
  targetModules: TargetModules,
  outputHeads: ReadonlyArray<string> = []
): ReadonlyArray<string> => {
  const matches = targetMatcher(targetModules, outputHeads)
  const selected = moduleNames.filter(matches)
  if (selected.length === 0) {
    const shown = typeof targetModules === "string" ? targetModules : `[${targetModules.join(", ")}]`
    throw new ConfigError({
      field: "targetModules",
      reason: `${shown} matches none of the model's linear layers (e.g. ${moduleNames.slice(0, 3).join(", ")})`
    })
  }
  return selected
}

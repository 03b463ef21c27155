/**
 * Chain policies by name, for command lines and config files: `cola` (the default), `rac`
 * (RAC-LoRA) and `xgb` (XGBLoRA), each with its own options, decoded strictly.
 */
import { ConfigError } from "@peftkit/core"
import { colaPolicy, type LinkPolicy } from "./LinkPolicy.js"
import { type FreezableConfig, racPolicy, type RacOptionsInput } from "./policies/RacLora.js"
import { xgbPolicy, type XgbOptionsInput } from "./policies/XgbLora.js"

export const CHAIN_POLICIES = ["cola", "rac", "xgb"] as const
export type ChainPolicyName = (typeof CHAIN_POLICIES)[number]

/** The options each named policy takes (COLA takes none). */
export interface ChainPolicyOptions {
  readonly cola: Record<string, never>
  readonly rac: RacOptionsInput
  readonly xgb: XgbOptionsInput
}

/**
 * The policy called `name` with its `options`; throws `ConfigError` on an unknown name (`policy`) or
 * a bad or foreign option (`policy.<field>`). Pass the result as `Chain.make({ ..., policy })`; RAC
 * needs a variant with LoRA's `freeze`.
 */
export function chainPolicy<Name extends ChainPolicyName>(name: Name, options?: ChainPolicyOptions[Name]): LinkPolicy<FreezableConfig>
export function chainPolicy(name: string, options?: Readonly<Record<string, unknown>>): LinkPolicy<FreezableConfig>
export function chainPolicy(name: string, options: Readonly<Record<string, unknown>> = {}): LinkPolicy<FreezableConfig> {
  switch (name) {
    case "cola": {
      const [unknown] = Object.keys(options)
      if (unknown !== undefined) throw new ConfigError({ field: `policy.${unknown}`, reason: "unknown key (cola takes no options)" })
      return colaPolicy
    }
    case "rac":
      return racPolicy(options as RacOptionsInput)
    case "xgb":
      return xgbPolicy(options as XgbOptionsInput)
    default:
      throw new ConfigError({ field: "policy", reason: `expected one of ${CHAIN_POLICIES.map((n) => JSON.stringify(n)).join(", ")} (got ${JSON.stringify(name)})` })
  }
}

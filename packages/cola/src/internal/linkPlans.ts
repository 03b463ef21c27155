/** Every link's plan (config, trained modules, merge step size), derived once from the policy and the seed. */
import { ConfigError } from "@peftkit/core"
import type { ChainableConfig } from "../Chain.js"
import type { ChainConfig } from "../ChainConfig.js"
import { CONFIG_STREAM, type LinkPolicy, linkRandom, MODULES_STREAM } from "../LinkPolicy.js"

export interface LinkPlan<Config extends ChainableConfig> {
  readonly config: Config
  /** The modules this link trains (the others keep a disabled, untrained adapter). */
  readonly modules: ReadonlySet<string>
  /** True when the link trains every targeted module. */
  readonly everyModule: boolean
  readonly mergeScale: number
}

/** Throws `ConfigError` when the policy asks for something the chain cannot do. */
export const planLinks = <Config extends ChainableConfig>(
  policy: LinkPolicy<Config>,
  config: ChainConfig,
  adapterConfig: Config,
  targets: ReadonlyArray<string>,
  links: number
): ReadonlyArray<LinkPlan<Config>> =>
  Array.from({ length: links }, (_, link) => {
    const r = config.ranks?.[link] ?? adapterConfig.r
    const base = r === adapterConfig.r ? adapterConfig : { ...adapterConfig, r }
    const linkConfig = policy.configFor(link, base, linkRandom(config.seed, link, CONFIG_STREAM))
    const modules = new Set(policy.modulesFor(link, targets, linkRandom(config.seed, link, MODULES_STREAM)))
    const foreign = [...modules].find((name) => !targets.includes(name))
    if (foreign !== undefined) throw new ConfigError({ field: "policy", reason: `link ${link}: '${foreign}' is not a module the adapter config targets` })
    if (modules.size === 0) throw new ConfigError({ field: "policy", reason: `link ${link} trains no module` })
    const mergeScale = policy.mergeScale(link)
    if (!Number.isFinite(mergeScale) || mergeScale <= 0) throw new ConfigError({ field: "policy", reason: `link ${link}: merge step size ${mergeScale} must be a positive number` })
    return { config: linkConfig, modules, everyModule: modules.size === targets.length, mergeScale }
  })

/** Same adapter shapes and settings: the next link can re-initialise in place instead of re-injecting. */
export const sameConfig = (left: object, right: object): boolean => {
  const a = left as Record<string, unknown>
  const b = right as Record<string, unknown>
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  return [...keys].every((key) => a[key] === b[key])
}

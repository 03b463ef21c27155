/**
 * XGBLoRA, eXtreme Gradient Boosting LoRA (Zhang, Zhu, Liu, Yu, Koniusz, King 2024, "Less is More:
 * Extreme Gradient Boost Rank-1 Adaption for Efficient Finetuning of LLMs", arXiv 2410.19694), as a
 * chain policy. Each boosting iteration (a link) trains a weak learner, a rank-1 LoRA on a random
 * subset of L_s layers, then merges it with the boosting learning rate, W_{t+1} = W_t + eta_t delta_t
 * (the paper's Eq. 8, constant eta_t = 1 there), and the next iteration starts fresh on a new subset.
 * The paper tunes L_s per model (L_s = 11 of LLaMA3-8B's 32 layers was best on MMLU, its Table 6);
 * the default here is that fraction of the model's layers.
 *
 * A "layer" is a transformer block: every targeted module under the same `layers.<n>` (or `h.<n>`,
 * `blocks.<n>`) in its Hugging Face name; a module outside any block is a layer of its own. With
 * `unit: "module"` each linear module is drawn on its own.
 */
import { ConfigError, decodeConfigSync, PositiveInt } from "@peftkit/core"
import { Schema } from "effect"
import type { ChainableConfig } from "../Chain.js"
import type { LinkPolicy, LinkRandom } from "../LinkPolicy.js"

/** L_s / L of the paper's best LLaMA3-8B setting (Table 6). */
export const XGB_DEFAULT_LAYER_FRACTION = 11 / 32

export const XgbOptions = Schema.Struct({
  /** Rank of each weak learner (1 in the paper). */
  rank: Schema.optionalWith(PositiveInt, { default: () => 1 }),
  /** Layers trained per link (L_s); when absent, `layerFraction` of them. */
  layers: Schema.optional(PositiveInt),
  /** Fraction of the layers trained per link when `layers` is absent (at least one layer). */
  layerFraction: Schema.optionalWith(
    Schema.Number.pipe(Schema.greaterThan(0, { message: () => "must be in (0, 1]" }), Schema.lessThanOrEqualTo(1, { message: () => "must be in (0, 1]" })),
    { default: () => XGB_DEFAULT_LAYER_FRACTION }
  ),
  /** The boosting learning rate eta: each link is merged as W <- W + eta delta. */
  stepSize: Schema.optionalWith(Schema.Number.pipe(Schema.positive({ message: () => "must be a positive number" }), Schema.finite()), { default: () => 1 }),
  /** What one drawn "layer" is: a transformer block (default) or a single linear module. */
  unit: Schema.optionalWith(Schema.Literal("block", "module"), { default: () => "block" as const })
})
export type XgbOptions = typeof XgbOptions.Type
export type XgbOptionsInput = typeof XgbOptions.Encoded

const BLOCK = /^(.*?(?:^|\.)(?:layers|h|blocks)\.\d+)\./

/** Groups module names (kept in order) into the layers XGBLoRA draws from. */
export const xgbLayers = (modules: ReadonlyArray<string>, unit: XgbOptions["unit"]): ReadonlyArray<ReadonlyArray<string>> => {
  const groups = new Map<string, Array<string>>()
  for (const name of modules) {
    const key = unit === "block" ? (BLOCK.exec(name)?.[1] ?? name) : name
    const group = groups.get(key)
    if (group === undefined) groups.set(key, [name])
    else group.push(name)
  }
  return [...groups.values()]
}

/** `count` distinct indices below `n`, drawn uniformly (a partial Fisher-Yates shuffle). */
export const sampleIndices = (n: number, count: number, random: LinkRandom): ReadonlyArray<number> => {
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (n - i))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return order.slice(0, count)
}

/** The XGBLoRA policy; throws `ConfigError` (`policy.<field>`) on bad options. */
export const xgbPolicy = (input: XgbOptionsInput = {}): LinkPolicy<ChainableConfig> => {
  const options = decodeConfigSync(XgbOptions, input, "policy")
  return {
    name: "xgb",
    configFor: (_link, base) => ({ ...base, r: options.rank }),
    modulesFor: (_link, all, random) => {
      const layers = xgbLayers(all, options.unit)
      const wanted = options.layers ?? Math.max(1, Math.round(options.layerFraction * layers.length))
      if (wanted > layers.length) {
        throw new ConfigError({ field: "policy.layers", reason: `${wanted} layers per link, but the chain adapts only ${layers.length}` })
      }
      const chosen = new Set(sampleIndices(layers.length, wanted, random).flatMap((i) => layers[i]!))
      return all.filter((name) => chosen.has(name))
    },
    mergeScale: () => options.stepSize
  }
}

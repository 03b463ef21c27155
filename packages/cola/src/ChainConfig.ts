/**
 * Configuration of a chain, decoded with Schema. The budget is the LoRA baseline's: `totalSteps`
 * is split across the links, so a chain costs no extra compute.
 */
import { ConfigError, decodeConfigSync, NonNegativeInt, PositiveInt, Probability } from "@peftkit/core"
import { Schema } from "effect"

export const OptimizerAtKnot = Schema.Union(
  /** Zero all optimizer state (COLA: a new optimizer per link). */
  Schema.Literal("reset"),
  /** Keep the state (an ablation; usually worse). */
  Schema.Literal("keep"),
  /** Zero a fraction of the state, by magnitude or at random (ReLoRA keeps the top 1%). */
  Schema.Struct({ prune: Probability, mode: Schema.optionalWith(Schema.Literal("magnitude", "random"), { default: () => "magnitude" as const }) })
)
export type OptimizerAtKnot = typeof OptimizerAtKnot.Type

export const DEFAULT_LINKS = 3

export const ChainConfig = Schema.Struct({
  /** Total optimizer steps of the chain (the LoRA baseline's budget). */
  totalSteps: PositiveInt,
  /** Number of links (default 3); knots split `totalSteps` evenly. Give `links` or `knots`, not both. */
  links: Schema.optional(PositiveInt),
  /** Explicit knot steps: at each, the current link is merged and a new one starts. */
  knots: Schema.optional(Schema.Array(PositiveInt)),
  /** Rank of each link (the paper's rank step-down); defaults to the adapter config's rank. */
  ranks: Schema.optional(Schema.Array(PositiveInt)),
  optimizerAtKnot: Schema.optionalWith(OptimizerAtKnot, { default: () => "reset" as const }),
  /** Per-link learning-rate warm-up after each knot (ReLoRA's jagged schedule); 0 = off. */
  warmupSteps: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /** Seed for the links' initialisations. */
  seed: Schema.optionalWith(Schema.Int, { default: () => 0 })
})
export type ChainConfig = typeof ChainConfig.Type
export type ChainConfigInput = typeof ChainConfig.Encoded

/** Decodes and cross-checks a chain config; throws `ConfigError` naming the field. */
export const chainConfig = (input: ChainConfigInput): ChainConfig => {
  const config = decodeConfigSync(ChainConfig, input, "chain")
  const knots = config.knots
  if (knots !== undefined && config.links !== undefined && config.links !== knots.length + 1) {
    throw new ConfigError({ field: "chain.links", reason: `${config.links} links do not match ${knots.length} knots; give one of them` })
  }
  if (knots !== undefined) {
    knots.forEach((knot, i) => {
      if (knot >= config.totalSteps) throw new ConfigError({ field: `chain.knots.${i}`, reason: `must be below totalSteps (${config.totalSteps})` })
      if (i > 0 && knot <= knots[i - 1]!) throw new ConfigError({ field: `chain.knots.${i}`, reason: "knots must be strictly increasing" })
    })
  } else if ((config.links ?? DEFAULT_LINKS) > config.totalSteps) {
    throw new ConfigError({ field: "chain.links", reason: `more links than steps (${config.totalSteps})` })
  }
  const links = knots === undefined ? (config.links ?? DEFAULT_LINKS) : knots.length + 1
  if (config.ranks !== undefined && config.ranks.length !== links) {
    throw new ConfigError({ field: "chain.ranks", reason: `needs one rank per link (${links}), got ${config.ranks.length}` })
  }
  return config
}

/** The steps at which a new link starts (L - 1 interior knots for L links). */
export const knotSteps = (config: ChainConfig): ReadonlyArray<number> => {
  const links = config.links ?? DEFAULT_LINKS
  return config.knots ?? Array.from({ length: links - 1 }, (_, i) => Math.round(((i + 1) * config.totalSteps) / links))
}

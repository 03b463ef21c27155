/**
 * RAC-LoRA, Randomized Asymmetric Chain of LoRA (Malinovsky, Michieli, Hammoud, Ceritli, Elesedy,
 * Ozay, Richtárik 2024, arXiv 2410.08305), as a chain policy. Each link t keeps one factor fixed at a
 * fresh random draw (the paper's "sketch") and trains only the other, which starts at zero; the link
 * is then merged, W_{t+1} = W_t + (alpha / r) B_t A_t, and the next link draws again. Freezing A
 * (right sketch) trains B; freezing B (left sketch) trains A. The paper analyses both sides; a coin
 * per link with probability p, the form implemented by `"random"`, is Bernoulli-LoRA's (Sokolov et al.
 * 2025, arXiv 2508.03820) generalisation of the choice.
 *
 * With LoRA this is only the `freeze` setting per link: `"A"` keeps A at its kaiming draw and B at 0
 * (FFA-LoRA), `"B"` keeps B at the random draw and A at 0. Frozen factors are saved and recorded like
 * trained ones, so a RAC chain exports as one PEFT LoRA exactly as COLA does.
 */
import { ConfigError, decodeConfigSync } from "@peftkit/core"
import type { LoraFreeze } from "@peftkit/lora"
import { Schema } from "effect"
import type { ChainableConfig } from "../Chain.js"
import { colaPolicy, type LinkPolicy } from "../LinkPolicy.js"

/** A config whose adapter can keep one factor frozen (LoRA's `freeze`). */
export type FreezableConfig = ChainableConfig & { readonly freeze: LoraFreeze }

export const RacOptions = Schema.Struct({
  /**
   * Which factor each link freezes: `"random"` (a coin per link), `"alternate"` (A on even links,
   * B on odd), or always `"A"` (a chain of FFA-LoRA links) or always `"B"`.
   */
  freeze: Schema.optionalWith(Schema.Literal("random", "alternate", "A", "B"), { default: () => "random" as const }),
  /** With `"random"`: the probability that a link freezes A (else B). */
  probability: Schema.optionalWith(
    Schema.Number.pipe(Schema.between(0, 1, { message: () => "must be in [0, 1]" })),
    { default: () => 0.5 }
  )
})
export type RacOptions = typeof RacOptions.Type
export type RacOptionsInput = typeof RacOptions.Encoded

/** The factor link `link` freezes under `options`, from the link's own uniform draw `u`. */
export const racFrozenFactor = (options: RacOptions, link: number, u: number): "A" | "B" => {
  switch (options.freeze) {
    case "random":
      return u < options.probability ? "A" : "B"
    case "alternate":
      return link % 2 === 0 ? "A" : "B"
    default:
      return options.freeze
  }
}

/** The RAC-LoRA policy; throws `ConfigError` (`policy.<field>`) on bad options. */
export const racPolicy = (input: RacOptionsInput = {}): LinkPolicy<FreezableConfig> => {
  const options = decodeConfigSync(RacOptions, input, "policy")
  return {
    name: "rac",
    configFor: (link, base, random) => {
      // A config without `freeze` (another variant, reached through `chainPolicy`) would ignore the draw.
      if (!("freeze" in base)) throw new ConfigError({ field: "policy", reason: "rac freezes a factor per link: it needs a variant with LoRA's `freeze` setting" })
      return { ...base, freeze: racFrozenFactor(options, link, random()) }
    },
    modulesFor: colaPolicy.modulesFor,
    mergeScale: colaPolicy.mergeScale
  }
}

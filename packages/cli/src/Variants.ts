/**
 * The adapter variants of the CLI. `trainableVariants` are what `peftkit train --variant` trains, each
 * with the config it builds from `train`'s options; `installedVariants` are what `eval`, `generate`
 * and `merge` load from a PEFT directory, by dispatching its config to the first variant whose
 * format accepts it (so a more specific format, DoRA's `use_dora`, comes before plain LoRA's).
 */
import { type AdapterVariant, ConfigError } from "@peftkit/core"
import type { ChainableConfig } from "@peftkit/cola"
import { dora, lora, loraConfig } from "@peftkit/lora"
import { vera, veraConfig } from "@peftkit/vera"
import type { TrainOptions } from "./TrainOptions.js"

export interface TrainableVariant {
  readonly variant: AdapterVariant<any>
  /** The adapter config from `train`'s options; throws `ConfigError` naming a bad field. */
  readonly config: (options: TrainOptions) => ChainableConfig
  /** One line for the log, e.g. "lora r=8 alpha=16". */
  readonly describe: (options: TrainOptions) => string
}

const loraOptions = (options: TrainOptions) => ({
  r: options.rank,
  alpha: options.alpha,
  dropout: options.dropout,
  useRslora: options.rslora,
  freeze: options.freeze,
  targetModules: options.targetModules,
  rankPattern: options.rankPattern,
  alphaPattern: options.alphaPattern,
  ...(options.loraPlusRatio === undefined ? {} : { loraPlusRatio: options.loraPlusRatio })
})

const pissaInit = (options: TrainOptions) => (options.pissaNiter < 0 ? ("pissa" as const) : (`pissa_niter_${options.pissaNiter}` as const))

/** LoRA's own options on a variant without them are refused, not ignored. */
const refuseLoraOnly = (options: TrainOptions, variant: string): void => {
  const given = [
    options.rslora ? "rslora" : "",
    options.freeze !== "none" ? "freeze" : "",
    options.loraPlusRatio !== undefined ? "loraPlusRatio" : "",
    Object.keys(options.rankPattern).length > 0 ? "rankPattern" : "",
    Object.keys(options.alphaPattern).length > 0 ? "alphaPattern" : ""
  ].find((name) => name !== "")
  if (given !== undefined) throw new ConfigError({ field: `train.${given}`, reason: `is a LoRA option; --variant ${variant} does not take it` })
}

const describeLora = (options: TrainOptions): string =>
  [
    `r=${options.rank} alpha=${options.alpha}`,
    options.rslora ? "rsLoRA" : "",
    options.freeze === "none" ? "" : `${options.freeze} frozen`,
    options.loraPlusRatio === undefined ? "" : `LoRA+ ratio ${options.loraPlusRatio}`,
    Object.keys(options.rankPattern).length + Object.keys(options.alphaPattern).length === 0 ? "" : "rank/alpha patterns"
  ]
    .filter((part) => part !== "")
    .join(", ")

/** The names `--variant` accepts (declared apart from the table, which `TrainOptions` types depend on). */
export const variantNames = ["lora", "dora", "pissa", "vera"] as const
export type VariantName = (typeof variantNames)[number]

export const trainableVariants: Readonly<Record<VariantName, TrainableVariant>> = {
  lora: { variant: lora, config: (options) => loraConfig(loraOptions(options)), describe: (options) => `lora ${describeLora(options)}` },
  // DoRA: LoRA's config; a magnitude per output row on top of LoRA's direction update.
  dora: { variant: dora, config: (options) => loraConfig(loraOptions(options)), describe: (options) => `dora ${describeLora(options)}` },
  // PiSSA: LoRA initialised from W's top-r singular triplets, W the residual; saved converted to a
  // plain rank-2r LoRA for the original base. The randomised SVD unless --pissa-niter is -1 (exact).
  pissa: {
    variant: lora,
    config: (options) => loraConfig({ ...loraOptions(options), init: pissaInit(options) }),
    describe: (options) => `pissa (${pissaInit(options)}) ${describeLora(options)}`
  },
  // VeRA: shared frozen random projections of rank r (PEFT's default 256), trained scaling vectors.
  vera: {
    variant: vera,
    config: (options) => {
      refuseLoraOnly(options, "vera")
      return veraConfig({ r: options.rank, dropout: options.dropout, projectionPrngKey: options.seed, targetModules: options.targetModules })
    },
    describe: (options) => `vera r=${options.rank} (projections from seed ${options.seed})`
  }
}

// DoRA before LoRA: both are peft_type LORA, and LoRA's format refuses `use_dora` files.
export const installedVariants: ReadonlyArray<AdapterVariant<any>> = [dora, vera, lora]

/**
 * The adapter variants the bench times beside LoRA, with the recipe's rank, alpha and targets:
 * their step time and memory are reported as ratios to LoRA's on the same shape and steps, and the
 * PyTorch reference times PEFT's own DoRA and VeRA with the same settings.
 */
import type { AdapterVariant } from "@peftkit/core"
import type { ChainableConfig } from "@peftkit/cola"
import { dora, loraConfig } from "@peftkit/lora"
import { vera, veraConfig } from "@peftkit/vera"
import { recipe } from "./Shapes.js"

export interface BenchVariant {
  readonly name: string
  /** As in the report's tables, e.g. "DoRA". */
  readonly label: string
  readonly variant: AdapterVariant<any>
  readonly config: () => ChainableConfig
}

export const benchVariants: ReadonlyArray<BenchVariant> = [
  {
    name: "dora",
    label: "DoRA",
    variant: dora,
    config: () => loraConfig({ r: recipe.rank, alpha: recipe.alpha, dropout: recipe.dropout, targetModules: [...recipe.targetModules] })
  },
  // VeRA at LoRA's rank (PEFT's default is 256): the same r, so the ratio is the method's own overhead.
  { name: "vera", label: "VeRA", variant: vera, config: () => veraConfig({ r: recipe.rank, dropout: recipe.dropout, targetModules: [...recipe.targetModules] }) }
]

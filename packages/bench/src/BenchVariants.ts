/**
 * The adapter variants the bench times beside LoRA, with the recipe's rank, alpha and targets:
 * their step time and memory are reported as ratios to LoRA's on the same shape and steps.
 */
import type { AdapterVariant } from "@peftkit/core"
import type { ChainableConfig } from "@peftkit/cola"

export interface BenchVariant {
  readonly name: string
  /** As in the report's tables, e.g. "DoRA". */
  readonly label: string
  readonly variant: AdapterVariant<any>
  readonly config: () => ChainableConfig
}

export const benchVariants: ReadonlyArray<BenchVariant> = []

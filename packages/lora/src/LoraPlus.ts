/**
 * LoRA+ (Hayou et al. 2024): train B with a larger learning rate than A (ratio lambda, 16 in the
 * paper). Expressed as two optimizer parameter groups, so any optimizer supports it.
 */
import type { Parameter, ParameterGroup } from "@peftkit/core"

export const loraPlusGroups = (params: ReadonlyArray<Parameter>, ratio: number): ReadonlyArray<ParameterGroup> => [
  { params: params.filter((param) => !param.name.endsWith("lora_B.weight")) },
  { params: params.filter((param) => param.name.endsWith("lora_B.weight")), lrScale: ratio }
]

/**
 * Schema pieces shared by the optimizer configs.
 */
import { Schema } from "effect"
import { FiniteNumber, Probability } from "@peftkit/core"

/** A finite number >= 0 (learning rates, weight decay, momentum). */
export const NonNegativeNumber = FiniteNumber.pipe(Schema.nonNegative({ message: () => "must be a non-negative finite number" }))

/** A finite number > 0 (epsilon). */
export const PositiveNumber = FiniteNumber.pipe(Schema.positive({ message: () => "must be a positive finite number" }))

/** `[beta1, beta2]`, each in [0, 1). */
export const Betas = Schema.Tuple(Probability, Probability)

/**
 * VeRA configuration, decoded with Schema. camelCase here, snake_case in PEFT's
 * `adapter_config.json` (`VeraFormat.ts` maps them); defaults follow PEFT 0.21's `VeraConfig`.
 */
import { FiniteNumber, PositiveInt, Probability, TargetModulesSchema } from "@peftkit/core"
import { Schema } from "effect"

/** The largest rank a config may ask for, so an absurd `r` in a file fails before anything is allocated. */
export const MAX_VERA_RANK = 16384

export const VeraConfig = Schema.Struct({
  /** Rank of the shared projections (PEFT's default 256: VeRA trains only r + out numbers per layer). */
  r: Schema.optionalWith(PositiveInt.pipe(Schema.lessThanOrEqualTo(MAX_VERA_RANK, { message: () => `must be at most ${MAX_VERA_RANK}` })), { default: () => 256 }),
  /** Seed of the projections, drawn exactly as PEFT draws them (torch's generator, kaiming-uniform). */
  projectionPrngKey: Schema.optionalWith(Schema.Int, { default: () => 0 }),
  /**
   * Whether the projections come from the file (true, PEFT's default) or are re-drawn from
   * `projectionPrngKey` (a file saved with `save_projection: false`). peftkit always saves them.
   */
  saveProjection: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** Dropout on the adapter's input during training. */
  dropout: Schema.optionalWith(Probability, { default: () => 0 }),
  /** Initial value of every `lambda_d` entry (`lambda_b` starts at zero, so a fresh adapter changes nothing). */
  dInitial: Schema.optionalWith(FiniteNumber, { default: () => 0.1 }),
  /** Which linear layers to adapt (PEFT semantics: regex string, list of names/suffixes, or "all-linear"). */
  targetModules: Schema.optionalWith(TargetModulesSchema, { default: () => ["q_proj", "v_proj"] })
})
export type VeraConfig = typeof VeraConfig.Type
export type VeraConfigInput = typeof VeraConfig.Encoded

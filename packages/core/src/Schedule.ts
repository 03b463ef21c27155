/**
 * Learning-rate schedules, as pure functions of the (0-based) optimizer step. The formulas follow
 * Hugging Face `transformers` (`get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup`):
 * during warm-up the rate is `peak * step / warmupSteps` (so step 0 runs at 0), then
 * - constant: `peak`;
 * - linear:   decays linearly to `minRatio * peak` at `totalSteps`;
 * - cosine:   follows half a cosine down to `minRatio * peak` at `totalSteps`.
 */
import { Schema } from "effect"
import { decodeConfigSync, FiniteNumber, NonNegativeInt, PositiveInt } from "./Config.js"
import { ConfigError } from "./Errors.js"

/** A learning rate for each step. */
export type Schedule = (step: number) => number

export const ScheduleKind = Schema.Literal("constant", "linear", "cosine")
export type ScheduleKind = typeof ScheduleKind.Type

export const ScheduleConfig = Schema.Struct({
  kind: ScheduleKind,
  peak: FiniteNumber.pipe(Schema.nonNegative({ message: () => "must be >= 0" })),
  totalSteps: PositiveInt,
  warmupSteps: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /** Final rate as a fraction of `peak` (linear and cosine). */
  minRatio: Schema.optionalWith(FiniteNumber.pipe(Schema.between(0, 1)), { default: () => 0 })
})
export type ScheduleConfig = typeof ScheduleConfig.Encoded

/** Builds a schedule; throws `ConfigError` naming the field on bad input. */
export const makeSchedule = (input: ScheduleConfig): Schedule => {
  const config = decodeConfigSync(ScheduleConfig, input, "schedule")
  const { kind, peak, totalSteps, warmupSteps, minRatio } = config
  if (warmupSteps > totalSteps) {
    throw new ConfigError({ field: "schedule.warmupSteps", reason: `must not exceed totalSteps (${totalSteps})` })
  }
  const decaySteps = Math.max(1, totalSteps - warmupSteps)
  return (step) => {
    if (step < warmupSteps) return (peak * step) / warmupSteps
    const progress = Math.min(1, (step - warmupSteps) / decaySteps)
    switch (kind) {
      case "constant":
        return peak
      case "linear":
        return peak * (minRatio + (1 - minRatio) * (1 - progress))
      case "cosine":
        return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress)))
    }
  }
}

/**
 * Restarts warm-up at each of `restarts` (ReLoRA's "jagged" schedule): for `warmupSteps` steps after
 * a restart the rate is scaled by `(step - restart) / warmupSteps`, so it drops to 0 at the restart.
 */
export const withWarmupRestarts = (base: Schedule, restarts: ReadonlyArray<number>, warmupSteps: number): Schedule => {
  if (warmupSteps <= 0 || restarts.length === 0) return base
  const sorted = [...restarts].sort((a, b) => a - b)
  return (step) => {
    let last = -1
    for (const restart of sorted) if (restart <= step) last = restart
    const since = last < 0 ? Number.POSITIVE_INFINITY : step - last
    return since < warmupSteps ? (base(step) * since) / warmupSteps : base(step)
  }
}

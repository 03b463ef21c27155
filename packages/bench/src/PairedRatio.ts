/**
 * A ratio of two step times with a 95% confidence interval, from paired rounds: each round times a
 * block of steps of each method back to back (in alternating order), so slow drifts of a noisy machine
 * hit both sides of a pair alike. The per-round log ratios are averaged and a Student t interval is
 * taken on them; the ratio and its bounds are the exponentials (a geometric mean, symmetric in which
 * method is on top).
 */
import { median } from "./Median.js"

export interface PairedRatio {
  /** Geometric mean of the per-round ratios of median step times (numerator / denominator). */
  readonly ratio: number
  readonly low: number
  readonly high: number
  readonly rounds: number
  /** Timed steps per method per round. */
  readonly blockSteps: number
}

/** Two-sided 95% Student t quantiles by degrees of freedom (1..30); the normal 1.96 beyond. */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042]
export const tQuantile975 = (df: number): number => (df < 1 ? Number.NaN : (T975[df - 1] ?? 1.96))

/** `numerator[r]` and `denominator[r]`: the step times (ms) of round r. Needs two rounds at least. */
export const pairedRatio = (numerator: ReadonlyArray<ReadonlyArray<number>>, denominator: ReadonlyArray<ReadonlyArray<number>>): PairedRatio => {
  if (numerator.length !== denominator.length || numerator.length < 2) throw new RangeError(`pairedRatio needs the same number (>= 2) of rounds on both sides, got ${numerator.length} and ${denominator.length}`)
  const logs = numerator.map((steps, round) => Math.log(median(steps) / median(denominator[round]!)))
  const n = logs.length
  const mean = logs.reduce((sum, x) => sum + x, 0) / n
  const sd = Math.sqrt(logs.reduce((sum, x) => sum + (x - mean) ** 2, 0) / (n - 1))
  const half = tQuantile975(n - 1) * (sd / Math.sqrt(n))
  return { ratio: Math.exp(mean), low: Math.exp(mean - half), high: Math.exp(mean + half), rounds: n, blockSteps: numerator[0]!.length }
}

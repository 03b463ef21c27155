/**
 * The metrics of the benchmark. MeZO (large_models/metrics.py, `calculate_metric`) and the COLA
 * paper report accuracy for every classification task; CB's macro-F1 and MultiRC's F1a and exact
 * match are the SuperGLUE leaderboard metrics, reported alongside.
 *
 * All take parallel arrays of gold and predicted candidate indices; an empty input gives NaN
 * (numpy's mean of nothing).
 */

export type MetricName = "accuracy" | "macroF1" | "f1a" | "exactMatch"

export interface TaskMetrics {
  readonly accuracy: number
  readonly macroF1?: number
  readonly f1a?: number
  readonly exactMatch?: number
}

/** What the metrics need of a prediction. */
export interface LabelledPrediction {
  readonly label: number
  readonly predicted: number
  readonly group?: string
}

const sameLength = (gold: ReadonlyArray<number>, predicted: ReadonlyArray<number>): void => {
  if (gold.length !== predicted.length) throw new RangeError(`gold has ${gold.length} labels, predicted ${predicted.length}`)
}

/** Fraction of predictions equal to the gold label. */
export const accuracy = (gold: ReadonlyArray<number>, predicted: ReadonlyArray<number>): number => {
  sameLength(gold, predicted)
  if (gold.length === 0) return Number.NaN
  let correct = 0
  for (let i = 0; i < gold.length; i++) if (gold[i] === predicted[i]) correct++
  return correct / gold.length
}

/** F1 of one class from its counts; 0 where precision or recall is undefined (scikit-learn's zero_division). */
const f1FromCounts = (tp: number, fp: number, fn: number): number => {
  const precision = tp + fp === 0 ? 0 : tp / (tp + fp)
  const recall = tp + fn === 0 ? 0 : tp / (tp + fn)
  return precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall)
}

/**
 * Macro-averaged F1 (SuperGLUE's CB F1): the unweighted mean of the per-class F1 over the classes
 * that occur in gold or predicted labels, as scikit-learn's `f1_score(average="macro")`.
 */
export const macroF1 = (gold: ReadonlyArray<number>, predicted: ReadonlyArray<number>): number => {
  sameLength(gold, predicted)
  if (gold.length === 0) return Number.NaN
  const classes = [...new Set([...gold, ...predicted])].sort((a, b) => a - b)
  let total = 0
  for (const c of classes) {
    let tp = 0
    let fp = 0
    let fn = 0
    for (let i = 0; i < gold.length; i++) {
      if (predicted[i] === c && gold[i] === c) tp++
      else if (predicted[i] === c) fp++
      else if (gold[i] === c) fn++
    }
    total += f1FromCounts(tp, fp, fn)
  }
  return total / classes.length
}

/**
 * MultiRC's F1a: binary F1 of the positive class ("this answer is correct", candidate 1) over all
 * answer options pooled together, as SuperGLUE defines it.
 */
export const f1a = (gold: ReadonlyArray<number>, predicted: ReadonlyArray<number>, positive = 1): number => {
  sameLength(gold, predicted)
  if (gold.length === 0) return Number.NaN
  let tp = 0
  let fp = 0
  let fn = 0
  for (let i = 0; i < gold.length; i++) {
    if (predicted[i] === positive && gold[i] === positive) tp++
    else if (predicted[i] === positive) fp++
    else if (gold[i] === positive) fn++
  }
  return f1FromCounts(tp, fp, fn)
}

/**
 * MultiRC's exact match (EM): the fraction of questions (`groups[i]` names answer i's question)
 * whose answers are all predicted correctly.
 */
export const exactMatch = (gold: ReadonlyArray<number>, predicted: ReadonlyArray<number>, groups: ReadonlyArray<string>): number => {
  sameLength(gold, predicted)
  if (groups.length !== gold.length) throw new RangeError(`gold has ${gold.length} labels, groups ${groups.length}`)
  if (gold.length === 0) return Number.NaN
  const allRight = new Map<string, boolean>()
  for (let i = 0; i < gold.length; i++) allRight.set(groups[i]!, (allRight.get(groups[i]!) ?? true) && gold[i] === predicted[i])
  let exact = 0
  for (const ok of allRight.values()) if (ok) exact++
  return exact / allRight.size
}

/** The named metrics over a list of predictions (accuracy is always included). */
export const computeMetrics = (names: ReadonlyArray<MetricName>, predictions: ReadonlyArray<LabelledPrediction>): TaskMetrics => {
  const gold = predictions.map((p) => p.label)
  const predicted = predictions.map((p) => p.predicted)
  const out: { accuracy: number; macroF1?: number; f1a?: number; exactMatch?: number } = { accuracy: accuracy(gold, predicted) }
  if (names.includes("macroF1")) out.macroF1 = macroF1(gold, predicted)
  if (names.includes("f1a")) out.f1a = f1a(gold, predicted)
  if (names.includes("exactMatch")) out.exactMatch = exactMatch(gold, predicted, predictions.map((p, i) => p.group ?? `#${i}`))
  return out
}

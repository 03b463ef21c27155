/** The settings form as `TrainSettings`, checked: a bad number is named, not sent. */
import type { MethodName, TrainSettings, VariantName } from "../protocol.js"

const value = (id: string) => (document.getElementById(id) as HTMLInputElement | HTMLSelectElement).value

const number = (id: string, label: string, check: (n: number) => boolean, rule: string): number => {
  const n = Number(value(id))
  if (value(id).trim() === "" || !Number.isFinite(n) || !check(n)) throw new Error(`${label} must be ${rule}, got '${value(id)}'`)
  return n
}
const positiveInt = (id: string, label: string) => number(id, label, (n) => Number.isInteger(n) && n >= 1, "a whole number of at least 1")
const nonNegativeInt = (id: string, label: string) => number(id, label, (n) => Number.isInteger(n) && n >= 0, "a whole number of at least 0")

export const readSettings = (): TrainSettings => {
  const targets = value("targets").trim()
  const steps = positiveInt("steps", "Steps")
  return {
    method: value("method") as MethodName,
    variant: value("variant") as VariantName,
    rank: positiveInt("rank", "Rank"),
    alpha: number("alpha", "Alpha", (n) => n > 0, "a positive number"),
    targetModules: targets === "all-linear" || targets === "" ? "all-linear" : targets.split(/[\s,]+/).filter((t) => t !== ""),
    links: positiveInt("links", "Links"),
    linkWarmup: nonNegativeInt("link-warmup", "Warm-up per link"),
    optimizerAtKnot: value("knot-optimizer") as TrainSettings["optimizerAtKnot"],
    learningRate: number("lr", "Learning rate", (n) => n > 0 && n < 10, "a positive number below 10"),
    schedule: value("schedule") as TrainSettings["schedule"],
    warmup: nonNegativeInt("warmup", "Warm-up steps"),
    steps,
    batchSize: positiveInt("batch", "Batch size"),
    maxSeqLength: positiveInt("max-length", "Max length"),
    seed: number("seed", "Seed", Number.isInteger, "a whole number"),
    evalEvery: positiveInt("eval-every", "Validate every"),
    checkpointEvery: positiveInt("checkpoint-every", "Checkpoint every")
  }
}

/** Chain-only fields show only for chains. */
export const showChainFields = () => {
  const chain = value("method") !== "lora"
  for (const element of Array.from(document.querySelectorAll<HTMLElement>(".chain-only"))) element.classList.toggle("hidden", !chain)
}

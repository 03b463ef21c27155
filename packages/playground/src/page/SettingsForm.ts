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
    maxSeqLength: number("max-length", "Max length", (n) => Number.isInteger(n) && n >= 16, "a whole number of at least 16"),
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

const set = (id: string, value: string | number) => {
  ;(document.getElementById(id) as HTMLInputElement | HTMLSelectElement).value = String(value)
}

/** Shows a run's settings (a resumed run's, which the form did not start). */
export const fillSettings = (settings: TrainSettings) => {
  set("method", settings.method)
  set("variant", settings.variant)
  set("rank", settings.rank)
  set("alpha", settings.alpha)
  set("targets", settings.targetModules === "all-linear" ? "all-linear" : settings.targetModules.join(", "))
  set("links", settings.links)
  set("link-warmup", settings.linkWarmup)
  set("knot-optimizer", settings.optimizerAtKnot)
  set("lr", settings.learningRate)
  set("schedule", settings.schedule)
  set("warmup", settings.warmup)
  set("steps", settings.steps)
  set("batch", settings.batchSize)
  set("max-length", settings.maxSeqLength)
  set("seed", settings.seed)
  set("eval-every", settings.evalEvery)
  set("checkpoint-every", settings.checkpointEvery)
  showChainFields()
  showVariantHint()
}

const hints: Record<string, string> = {
  lora: "",
  dora: "LoRA plus a trained magnitude per output row; about a third slower per step.",
  pissa: "LoRA started from the weights' top singular directions (the weights keep the rest).",
  vera: "Shared frozen random projections, trained scaling vectors: needs about 10x LoRA's learning rate (e.g. 0.1) and a larger rank (e.g. 64)."
}

/** One line on what the chosen variant is, and what it needs that LoRA does not. */
export const showVariantHint = () => {
  const hint = document.getElementById("variant-hint")
  if (hint !== null) hint.textContent = hints[value("variant")] ?? ""
}

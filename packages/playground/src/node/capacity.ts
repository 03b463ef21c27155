/**
 * What the playground can do on this machine, measured in headless Chromium through the page itself
 * (the numbers the README quotes):
 *
 * 1. Throughput: tokens/s of training (COLA, the page's default method; batch 8) on each backend
 *    asked for (`wasm`, and `webgpu`, which on a machine without a GPU is SwiftShader: software,
 *    slow), for the built-in tiny Llama on the built-in data, and for llama2.c's stories260K (from
 *    `<repo>/../shared/data/models/stories260K`, skipped with a note when absent) on the CLI's
 *    `apples` fixture. 20 steps on wasm, 6 on webgpu. tokens/s is the median of the page's
 *    per-step ProgressPoints' tokensPerSecond (each point covers exactly one step here) after the
 *    first 2 steps (compilation and warm-up); s/step is the median time between the steps' points
 *    arriving on the page, over the same steps.
 *
 * 2. Capacity: the largest model that trains in a tab on wasm. Random-weight Llama-architecture
 *    Hugging Face directories of growing size (`ladder`: SmolLM-135M's shape, two sizes between
 *    it and SmolLM-360M's, SmolLM-360M's, TinyLlama's width at 10 layers, TinyLlama-1.1B's shape,
 *    a 1.6B) are written to a temp directory (float32 safetensors streamed to disk, with the
 *    built-in model's tokenizer) and dropped on the page one at a time; each is trained for 3
 *    steps at batch 1 with Max length 64 and targets q_proj,v_proj, on ~60-token examples made of
 *    the built-in facts (a train.jsonl alone: no validation pass). A refusal by the page's memory
 *    estimate (made before the weights are read), an error in the worker, a crashed tab, a step
 *    that stalls (10 times the first step's time, at least 2 minutes) or a timeout ends the
 *    growth. s/step and tokens/s are the medians over the steps after the first.
 *
 * 3. Prints a Markdown table and the machine (CPUs, memory, Chromium's version as the browser
 *    reports it, the backends' devices).
 *
 * One Chromium at a time (Debian's /usr/bin/chromium through playwright-core), one fresh tab per
 * measurement, the site served by `serveSite` with its COOP/COEP headers (threaded wasm).
 *
 *   npx tsc -b && node packages/playground/dist/node/build.js   # the site, once
 *   node packages/playground/dist/node/capacity.js [--backends wasm,webgpu] [--max-params 2e9]
 *        [--budget-minutes 25] [--only throughput|capacity] [--method cola|lora] [--sizes 1,2]
 *        [--site DIR] [--chromium PATH]
 */
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs"
import { cpus, loadavg, tmpdir, totalmem } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import type { DataInfo, ModelInfo, ProgressPoint, RunSummary } from "../protocol.js"
import { serveSite } from "./SiteServer.js"

// ------------------------------------------------------------------ options

const packageDir = fileURLToPath(new URL("../..", import.meta.url))
const repoDir = resolve(packageDir, "../..")

interface Options {
  readonly backends: ReadonlyArray<"wasm" | "webgpu">
  readonly maxParams: number
  readonly budgetSeconds: number
  readonly only: "throughput" | "capacity" | undefined
  /** The capacity ladder's method: the page's default `cola` (3 links: every step of 3 is a knot) or `lora` (one adapter). */
  readonly method: "cola" | "lora"
  /** Which rungs of the capacity ladder (1-based); all by default. */
  readonly sizes: ReadonlyArray<number> | undefined
  readonly site: string
  readonly chromium: string
}

const parseCount = (text: string): number => {
  const match = /^([\d.]+(?:e\d+)?)\s*([kKmMbBgG]?)$/.exec(text.trim())
  if (match === null) throw new Error(`--max-params: not a number: ${text} (e.g. 5e8, 500M, 1.2B)`)
  const scale: Record<string, number> = { "": 1, k: 1e3, m: 1e6, b: 1e9, g: 1e9 }
  return Number(match[1]) * scale[match[2]!.toLowerCase()]!
}

const parseOptions = (argv: ReadonlyArray<string>): Options => {
  const value = (flag: string): string | undefined => {
    const at = argv.indexOf(flag)
    return at < 0 ? undefined : argv[at + 1]
  }
  const backends = (value("--backends") ?? "wasm,webgpu").split(",").map((name) => name.trim())
  for (const name of backends) if (name !== "wasm" && name !== "webgpu") throw new Error(`--backends: ${name} is not wasm or webgpu`)
  const only = value("--only")
  if (only !== undefined && only !== "throughput" && only !== "capacity") throw new Error(`--only: throughput or capacity, got ${only}`)
  const method = value("--method") ?? "cola"
  if (method !== "cola" && method !== "lora") throw new Error(`--method: cola or lora, got ${method}`)
  const sizes = value("--sizes")?.split(",").map(Number)
  if (sizes?.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--sizes: rungs of the ladder counted from 1, e.g. 2,3`)
  return {
    method,
    sizes,
    backends: backends as ReadonlyArray<"wasm" | "webgpu">,
    maxParams: parseCount(value("--max-params") ?? "2e9"),
    budgetSeconds: 60 * Number(value("--budget-minutes") ?? "25"),
    only,
    site: resolve(value("--site") ?? join(packageDir, "dist/site")),
    chromium: value("--chromium") ?? "/usr/bin/chromium"
  }
}

// ------------------------------------------------------------------ progress and the table

const startedAt = performance.now()
const elapsed = () => (performance.now() - startedAt) / 1000
const say = (line: string) => console.log(`[${elapsed().toFixed(0).padStart(4)} s] ${line}`)

interface Row {
  readonly model: string
  readonly parameters: number | undefined
  readonly backend: string
  readonly steps: string
  readonly secondsPerStep: number | undefined
  readonly tokensPerSecond: number | undefined
  readonly result: string
}

const rows: Array<Row> = []
const notes: Array<string> = []

const formatCount = (n: number | undefined) => (n === undefined ? "-" : n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : `${n}`)
const formatNumber = (n: number | undefined, digits: number) => (n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits))
const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(2)} GiB`
const median = (values: ReadonlyArray<number>): number | undefined => {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const printTable = () => {
  const header = ["model", "parameters", "backend", "steps", "s/step", "tokens/s", "result"]
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map(
      (row) =>
        `| ${[row.model, formatCount(row.parameters), row.backend, row.steps, formatNumber(row.secondsPerStep, row.secondsPerStep !== undefined && row.secondsPerStep < 1 ? 3 : 1), formatNumber(row.tokensPerSecond, row.tokensPerSecond !== undefined && row.tokensPerSecond < 100 ? 1 : 0), row.result].join(" | ")} |`
    )
  ]
  console.log(`\n${lines.join("\n")}\n`)
  for (const note of notes) console.log(`- ${note}`)
}

// ------------------------------------------------------------------ the page

/** What `window.playground` holds (main.ts's PageState), as far as this script reads it. */
interface PlaygroundState {
  readonly backend?: { readonly name: string; readonly device: string; readonly reason: string; readonly isolated: boolean }
  readonly model?: ModelInfo
  readonly data?: DataInfo
  readonly training: boolean
  readonly busy: string | undefined
  readonly points: ReadonlyArray<ProgressPoint>
  readonly trained?: RunSummary
  readonly errors: ReadonlyArray<string>
}

/** The page's window with the step clock this script installs: [step, ms] when each step's point arrived (step 0: train-start). */
interface PlaygroundWindow {
  playground: PlaygroundState
  stepClock?: Array<readonly [number, number]>
}

class PageCrashed extends Error {}
class TimedOut extends Error {}

/** One tab; every wait also ends when the tab crashes. */
class Tab {
  private crashed = false
  private readonly crash: Promise<never>

  private constructor(readonly page: Page) {
    this.crash = new Promise<never>((_, reject) => page.once("crash", () => ((this.crashed = true), reject(new PageCrashed("the tab crashed")))))
    this.crash.catch(() => undefined)
    // Warnings and errors from the page and its worker (tfjs's XNNPACK says here when it runs out of memory).
    const note = (line: string) => say(`    console ${line}`)
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warning") note(`${message.type()}: ${message.text().slice(0, 300)}`)
    })
    page.on("pageerror", (error) => note(`pageerror: ${error.message.slice(0, 300)}`))
  }

  static async open(context: BrowserContext, url: string, timeoutMs: number): Promise<Tab> {
    const tab = new Tab(await context.newPage())
    await tab.page.goto(url)
    await tab.until(() => (window as unknown as PlaygroundWindow).playground.busy === undefined, undefined, timeoutMs, "the backend to start")
    return tab
  }

  state(): Promise<PlaygroundState> {
    return this.page.evaluate(() => {
      const s = (window as unknown as PlaygroundWindow).playground
      // Only the fields read here (the trained summary's adapter files and the like stay in the page).
      return { backend: s.backend, model: s.model, data: s.data, training: s.training, busy: s.busy, points: s.points, trained: s.trained, errors: s.errors } as PlaygroundState
    })
  }

  /** Waits for `predicate` in the page (polled every 250 ms), the tab's crash, or the timeout. */
  async until<A>(predicate: (arg: A) => boolean, arg: A, timeoutMs: number, what: string): Promise<void> {
    try {
      await Promise.race([this.page.waitForFunction(predicate as (arg: unknown) => boolean, arg as unknown, { timeout: Math.max(1, timeoutMs), polling: 250 }), this.crash])
    } catch (error) {
      if (this.crashed) throw new PageCrashed("the tab crashed")
      if (error instanceof Error && error.name === "TimeoutError") throw new TimedOut(`no ${what} after ${(timeoutMs / 1000).toFixed(0)} s`)
      throw error
    }
  }

  /** Records when each step's ProgressPoint reaches the page (the page's thread is idle while the worker trains, so 10 ms is the resolution). */
  installStepClock(): Promise<void> {
    return this.page.evaluate(() => {
      const w = window as unknown as PlaygroundWindow
      const clock: Array<readonly [number, number]> = []
      w.stepClock = clock
      let list = w.playground.points
      let seen = list.length
      setInterval(() => {
        const points = w.playground.points
        if (points !== list) {
          // train-start replaced the list: the run begins.
          list = points
          seen = 0
          clock.length = 0
          clock.push([0, performance.now()])
        }
        while (seen < points.length) {
          const point = points[seen++]!
          if (point.loss !== undefined) clock.push([point.step, performance.now()])
        }
      }, 10)
    })
  }

  stepClock(): Promise<ReadonlyArray<readonly [number, number]>> {
    return this.page.evaluate(() => (window as unknown as PlaygroundWindow).stepClock ?? [])
  }

  async close() {
    await this.page.close().catch(() => undefined)
  }
}

// ------------------------------------------------------------------ one measurement

type Source = { readonly kind: "builtin" } | { readonly kind: "files"; readonly paths: ReadonlyArray<string> }

interface Measurement {
  readonly label: string
  readonly backend: "wasm" | "webgpu"
  readonly model: Source
  readonly data: Source
  readonly steps: number
  readonly batch: number
  readonly maxLength?: number
  readonly targets?: string
  readonly method?: "cola" | "lora"
  /** Steps left out of the medians (warm-up). */
  readonly skip: number
  readonly loadTimeoutMs: number
  readonly trainTimeoutMs: number
  /** A step after the first that takes longer than this many times the first step (and at least 2 minutes) has stalled. */
  readonly stallFactor?: number
}

interface Outcome {
  readonly ok: boolean
  /** A limit was met (refused, crashed, out of memory, too slow): the capacity ladder stops. */
  readonly stop: boolean
  readonly parameters: number | undefined
  readonly stepsDone: number
  readonly secondsPerStep: number | undefined
  readonly tokensPerSecond: number | undefined
  readonly result: string
  readonly device: string | undefined
}

const setField = (page: Page, id: string, value: string) => page.fill(`#${id}`, value)

const measure = async (context: BrowserContext, siteUrl: string, m: Measurement): Promise<Outcome> => {
  const started = performance.now()
  const seconds = () => ((performance.now() - started) / 1000).toFixed(0)
  let tab: Tab | undefined
  let parameters: number | undefined
  let device: string | undefined
  let stepsDone = 0
  const fail = (result: string, stop = true): Outcome => ({ ok: false, stop, parameters, stepsDone, secondsPerStep: undefined, tokensPerSecond: undefined, result, device })
  try {
    tab = await Tab.open(context, `${siteUrl}?backend=${m.backend}`, 180_000)
    const ready = await tab.state()
    device = ready.backend?.device
    if (ready.backend?.name !== m.backend) return fail(`page fell back to ${ready.backend?.name ?? "nothing"}: ${ready.backend?.reason ?? ready.errors.join("; ")}`)
    say(`  ${m.label} on ${m.backend} (${ready.backend.device}${ready.backend.isolated ? ", cross-origin isolated" : ", NOT isolated"}): loading the model...`)

    let errorCount = ready.errors.length
    const newError = async () => {
      const s = await tab!.state()
      const error = s.errors.slice(errorCount).join("; ")
      errorCount = s.errors.length
      return error
    }

    // Model.
    if (m.model.kind === "builtin") await tab.page.click("#use-builtin-model")
    else await tab.page.setInputFiles("#model-files", [...m.model.paths])
    await tab.until((n: number) => (window as unknown as PlaygroundWindow).playground.model !== undefined || (window as unknown as PlaygroundWindow).playground.errors.length > n, errorCount, m.loadTimeoutMs, "model info")
    const loaded = await tab.state()
    if (loaded.model === undefined) {
      const error = await newError()
      return fail(/needs about .* to train in this tab/.test(error) ? `refused by the estimate: ${error}` : `load failed: ${error}`)
    }
    parameters = loaded.model.parameters
    say(`  loaded: ${loaded.model.source}, ${loaded.model.parameters.toLocaleString("en")} parameters, page estimate ${gib(loaded.model.estimatedTrainingBytes)}, ${loaded.model.loadSeconds.toFixed(1)} s`)

    // Data.
    if (m.data.kind === "builtin") await tab.page.click("#use-builtin-data")
    else await tab.page.setInputFiles("#data-files", [...m.data.paths])
    await tab.until((n: number) => (window as unknown as PlaygroundWindow).playground.data !== undefined || (window as unknown as PlaygroundWindow).playground.errors.length > n, errorCount, 120_000, "data info")
    const withData = await tab.state()
    if (withData.data === undefined) return fail(`data failed: ${await newError()}`)

    // Settings: the page's defaults (COLA, rank 4, 3 links) except these; no validation or checkpoint mid-run.
    await setField(tab.page, "steps", String(m.steps))
    await setField(tab.page, "batch", String(m.batch))
    await setField(tab.page, "eval-every", "1000")
    await setField(tab.page, "checkpoint-every", "1000")
    if (m.maxLength !== undefined) await setField(tab.page, "max-length", String(m.maxLength))
    if (m.targets !== undefined) await setField(tab.page, "targets", m.targets)
    if (m.method !== undefined) await tab.page.selectOption("#method", m.method)
    await tab.installStepClock()
    await tab.until(() => !(document.getElementById("train") as HTMLButtonElement).disabled, undefined, 30_000, "enabled Train button")
    say(`  data: ${withData.data.describe}; training ${m.steps} steps at batch ${m.batch}...`)
    await tab.page.click("#train")

    // Training, with a line per step as it goes.
    const clickedAt = performance.now()
    const deadline = clickedAt + m.trainTimeoutMs
    let lastStepAt = clickedAt
    let firstStepSeconds: number | undefined
    for (;;) {
      try {
        await tab.until(
          (seen: { readonly errors: number; readonly steps: number }) => {
            const s = (window as unknown as PlaygroundWindow).playground
            return s.trained !== undefined || s.errors.length > seen.errors || s.points.filter((p) => p.loss !== undefined).length > seen.steps
          },
          { errors: errorCount, steps: stepsDone },
          Math.min(30_000, deadline - performance.now()),
          "progress"
        )
      } catch (error) {
        if (!(error instanceof TimedOut)) throw error
      }
      const s = await tab.state()
      const points = s.points.filter((p) => p.loss !== undefined)
      for (const point of points.slice(stepsDone)) {
        say(`    step ${point.step}/${m.steps}: loss ${point.loss!.toFixed(3)}, ${point.tokensPerSecond.toFixed(1)} tokens/s${point.peakBytes === undefined ? "" : `, peak ${gib(point.peakBytes)}`} (${seconds()} s)`)
      }
      if (points.length > stepsDone) lastStepAt = performance.now()
      if (points.length >= 1 && firstStepSeconds === undefined) firstStepSeconds = (performance.now() - clickedAt) / 1000
      stepsDone = points.length
      if (s.errors.length > errorCount) return fail(`training failed at step ${stepsDone}: ${await newError()}`)
      if (s.trained !== undefined) break
      if (m.stallFactor !== undefined && firstStepSeconds !== undefined && !s.trained) {
        const stallMs = Math.max(120_000, m.stallFactor * firstStepSeconds * 1000)
        if (performance.now() - lastStepAt > stallMs) {
          throw new TimedOut(`step ${stepsDone + 1} stalled: not done after ${(stallMs / 1000).toFixed(0)} s (step 1 took ${firstStepSeconds.toFixed(0)} s)`)
        }
      }
      if (performance.now() >= deadline) throw new TimedOut(`step ${stepsDone + 1} not done ${(m.trainTimeoutMs / 1000).toFixed(0)} s after Train was clicked`)
    }

    const final = await tab.state()
    const points = final.points.filter((p) => p.loss !== undefined && p.step > m.skip)
    const clock = await tab.stepClock()
    const stepSeconds = clock.slice(1).map(([step, at], i) => [step, (at - clock[i]![1]) / 1000] as const)
    const durations = stepSeconds.flatMap(([step, duration]) => (step > m.skip ? [duration] : []))
    const each = m.steps <= 6 ? `steps ${stepSeconds.map(([, duration]) => duration.toFixed(1)).join(", ")} s` : `first step ${formatNumber(stepSeconds[0]?.[1], 1)} s`
    const loss = points.at(-1)?.loss
    const peaks = final.points.flatMap((p) => (p.peakBytes === undefined ? [] : [p.peakBytes]))
    const peak = peaks.length === 0 ? "" : `; peak tensor memory ${gib(Math.max(...peaks))}`
    return {
      ok: true,
      stop: false,
      parameters,
      stepsDone: final.trained!.step,
      secondsPerStep: median(durations),
      tokensPerSecond: median(points.map((p) => p.tokensPerSecond)),
      result: `trained (${each}; final loss ${formatNumber(loss, 3)}${peak}; run ${final.trained!.seconds.toFixed(0)} s; load ${loaded.model.loadSeconds.toFixed(0)} s; ${seconds()} s in all)`,
      device
    }
  } catch (error) {
    if (error instanceof PageCrashed) return fail(`tab crashed after ${seconds()} s (step ${stepsDone})`)
    if (error instanceof TimedOut) return fail(`too slow: ${error.message}`)
    return fail(`script error: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`)
  } finally {
    await tab?.close()
  }
}

// ------------------------------------------------------------------ random Llama checkpoints

interface LlamaShape {
  readonly name: string
  readonly hidden: number
  readonly intermediate: number
  readonly layers: number
  readonly heads: number
  readonly kvHeads: number
  readonly vocab: number
  readonly tied: boolean
}

const ladder: ReadonlyArray<LlamaShape> = [
  { name: "SmolLM-135M shape", hidden: 576, intermediate: 1536, layers: 30, heads: 9, kvHeads: 3, vocab: 49152, tied: true },
  { name: "768 x 24, MLP 2048", hidden: 768, intermediate: 2048, layers: 24, heads: 12, kvHeads: 4, vocab: 49152, tied: true },
  { name: "SmolLM-360M width, 20 layers", hidden: 960, intermediate: 2560, layers: 20, heads: 15, kvHeads: 5, vocab: 49152, tied: true },
  { name: "SmolLM-360M shape", hidden: 960, intermediate: 2560, layers: 32, heads: 15, kvHeads: 5, vocab: 49152, tied: true },
  { name: "TinyLlama width, 10 layers", hidden: 2048, intermediate: 5632, layers: 10, heads: 32, kvHeads: 4, vocab: 32000, tied: true },
  { name: "TinyLlama-1.1B shape", hidden: 2048, intermediate: 5632, layers: 22, heads: 32, kvHeads: 4, vocab: 32000, tied: false },
  { name: "1.6B (2048 x 24, MLP 8192)", hidden: 2048, intermediate: 8192, layers: 24, heads: 32, kvHeads: 8, vocab: 32000, tied: false }
]

/** The tensors, in Hugging Face Llama names, with shapes ([out, in] for linears) and their initial scale (0: ones, for norms). */
const llamaTensors = (s: LlamaShape): ReadonlyArray<{ readonly name: string; readonly shape: ReadonlyArray<number>; readonly scale: number }> => {
  const headDim = s.hidden / s.heads
  const kv = s.kvHeads * headDim
  const w = 0.02
  const tensors = [{ name: "model.embed_tokens.weight", shape: [s.vocab, s.hidden], scale: w }]
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`
    tensors.push(
      { name: `${p}.input_layernorm.weight`, shape: [s.hidden], scale: 0 },
      { name: `${p}.self_attn.q_proj.weight`, shape: [s.hidden, s.hidden], scale: w },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kv, s.hidden], scale: w },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kv, s.hidden], scale: w },
      { name: `${p}.self_attn.o_proj.weight`, shape: [s.hidden, s.hidden], scale: w },
      { name: `${p}.post_attention_layernorm.weight`, shape: [s.hidden], scale: 0 },
      { name: `${p}.mlp.gate_proj.weight`, shape: [s.intermediate, s.hidden], scale: w },
      { name: `${p}.mlp.up_proj.weight`, shape: [s.intermediate, s.hidden], scale: w },
      { name: `${p}.mlp.down_proj.weight`, shape: [s.hidden, s.intermediate], scale: w }
    )
  }
  tensors.push({ name: "model.norm.weight", shape: [s.hidden], scale: 0 })
  if (!s.tied) tensors.push({ name: "lm_head.weight", shape: [s.vocab, s.hidden], scale: w })
  return tensors
}

const parameterCount = (s: LlamaShape) => llamaTensors(s).reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0)

/**
 * What the page's MemoryBudget would estimate with the real parameter count (batch 8, length 128,
 * as the page assumes at load time): 4 bytes per parameter + the file + the activations.
 */
const intendedEstimate = (s: LlamaShape) => {
  const file = 4 * parameterCount(s)
  const activations = 4 * 8 * 128 * (16 * s.hidden * s.layers + 3 * s.vocab)
  return 4 * parameterCount(s) + file + activations
}

/** xorshift32: uniform values in [-scale, scale), fast enough to fill gigabytes. */
let rngState = 0x2545f491
const fillRandom = (chunk: Float32Array, count: number, scale: number) => {
  let x = rngState
  for (let i = 0; i < count; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    chunk[i] = ((x >>> 0) / 4294967296 - 0.5) * 2 * scale
  }
  rngState = x
}

/** Writes `dir` as a Hugging Face Llama directory: config.json, model.safetensors (float32, streamed in 4 MiB chunks), and the tokenizer files given. */
const writeRandomLlama = (dir: string, s: LlamaShape, tokenizerDir: string): ReadonlyArray<string> => {
  mkdirSync(dir, { recursive: true })
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    vocab_size: s.vocab,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: s.tied,
    hidden_act: "silu",
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32"
  }
  writeFileSync(join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`)
  const tensors = llamaTensors(s)
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } }
  let offset = 0
  for (const t of tensors) {
    const bytes = 4 * t.shape.reduce((a, b) => a * b, 1)
    header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  let json = JSON.stringify(header)
  // The data starts 8-aligned (readers may view it as Float32Array in place).
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8)
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)))
  const fd = openSync(join(dir, "model.safetensors"), "w")
  try {
    writeSync(fd, length)
    writeSync(fd, Buffer.from(json))
    const chunk = new Float32Array(1 << 20)
    const bytes = new Uint8Array(chunk.buffer)
    for (const t of tensors) {
      let left = t.shape.reduce((a, b) => a * b, 1)
      while (left > 0) {
        const n = Math.min(left, chunk.length)
        if (t.scale === 0) chunk.fill(1, 0, n)
        else fillRandom(chunk, n, t.scale)
        writeSync(fd, bytes, 0, 4 * n)
        left -= n
      }
    }
  } finally {
    closeSync(fd)
  }
  for (const name of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(tokenizerDir, name), join(dir, name))
  return ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"].map((name) => join(dir, name))
}

/** ~60-token examples: four of the built-in facts each, as {"text"} lines; a train.jsonl alone (no validation pass). */
const writeCapacityData = (dir: string, builtinData: string): string => {
  const facts = readFileSync(join(builtinData, "train.jsonl"), "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const record = JSON.parse(line) as { prompt: string; completion: string }
      return `${record.prompt}${record.completion}`
    })
  const lines: Array<string> = []
  for (let i = 0; i + 4 <= facts.length; i += 4) lines.push(JSON.stringify({ text: facts.slice(i, i + 4).join(" ") }))
  mkdirSync(dir, { recursive: true })
  const path = join(dir, "train.jsonl")
  writeFileSync(path, `${lines.join("\n")}\n`)
  return path
}

// ------------------------------------------------------------------ main

const main = async () => {
  const options = parseOptions(process.argv.slice(2))
  const budgetEnd = performance.now() + options.budgetSeconds * 1000
  const left = () => budgetEnd - performance.now()
  if (!existsSync(join(options.site, "worker.js"))) throw new Error(`no built site in ${options.site}: run npx tsc -b && node packages/playground/dist/node/build.js first`)
  const work = mkdtempSync(join(tmpdir(), "peftkit-capacity-"))
  const server = await serveSite(options.site, { port: 0 })
  const context = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: options.chromium,
    headless: true,
    viewport: { width: 1280, height: 1400 },
    args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
  })
  const devices = new Map<string, string>()
  try {
    const probe = await context.newPage()
    await probe.goto(server.url)
    const threads = await probe.evaluate(() => navigator.hardwareConcurrency)
    // The user agent's version is reduced (156.0.0.0); the browser's own answer is exact.
    const version = ((await (await context.newCDPSession(probe)).send("Browser.getVersion")) as { product: string }).product
    await probe.close()
    say(`${version}; navigator.hardwareConcurrency ${threads}; site ${options.site}; budget ${options.budgetSeconds / 60} min`)
    const load = loadavg()[0]!
    if (load > 0.5) say(`warning: load average ${load.toFixed(2)} before the first measurement: something else is (or was, within the minute) using the CPUs`)
    notes.push(`Load average (1 min) at the start: ${load.toFixed(2)}.`)
    notes.push(`Machine: ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? "?"}), ${gib(totalmem())} memory; browser: ${version} (${options.chromium}, headless), navigator.hardwareConcurrency ${threads}.`)

    const record = (label: string, backend: string, steps: string, outcome: Outcome, parameters?: number) => {
      if (outcome.device !== undefined) devices.set(backend, outcome.device)
      rows.push({ model: label, parameters: outcome.parameters ?? parameters, backend, steps, secondsPerStep: outcome.secondsPerStep, tokensPerSecond: outcome.tokensPerSecond, result: outcome.result.replaceAll("|", "/") })
      say(`  -> ${outcome.result}`)
    }

    // 1. Throughput.
    if (options.only !== "capacity") {
      const stories = join(repoDir, "../shared/data/models/stories260K")
      const apples = join(repoDir, "packages/cli/test/fixtures/apples")
      const storiesFiles = [join(stories, "stories260K.bin"), join(stories, "tok512.bin")]
      const haveStories = storiesFiles.every((path) => existsSync(path))
      if (!haveStories) notes.push(`stories260K skipped: ${storiesFiles.join(", ")} not found.`)
      for (const backend of options.backends) {
        const steps = backend === "wasm" ? 20 : 6
        const cases: ReadonlyArray<{ label: string; model: Source; data: Source }> = [
          { label: "built-in tiny Llama, built-in facts", model: { kind: "builtin" }, data: { kind: "builtin" } },
          ...(haveStories ? [{ label: "stories260K, apples", model: { kind: "files", paths: storiesFiles } as const, data: { kind: "files", paths: [join(apples, "train.jsonl"), join(apples, "valid.jsonl")] } as const }] : [])
        ]
        for (const c of cases) {
          if (left() < 60_000) {
            notes.push(`${c.label} on ${backend}: skipped, the time budget was spent.`)
            continue
          }
          say(`throughput: ${c.label} on ${backend}, ${steps} steps, batch 8`)
          const outcome = await measure(context, server.url, {
            label: c.label,
            backend,
            model: c.model,
            data: c.data,
            steps,
            batch: 8,
            skip: 2,
            loadTimeoutMs: 120_000,
            trainTimeoutMs: Math.min(backend === "wasm" ? 300_000 : 480_000, left())
          })
          record(c.label, backend, `${outcome.stepsDone}/${steps} (batch 8)`, outcome)
        }
      }
      notes.push("Throughput rows: COLA (3 links, rank 4, all-linear), batch 8; tokens/s is the median of the per-step ProgressPoint tokensPerSecond (each point covers one step; tokens are the batch's unpadded tokens) and s/step the median time between steps, both over the steps after the first 2.")
    }

    // 2. Capacity on wasm.
    if (options.only !== "throughput" && options.backends.includes("wasm")) {
      const builtin = join(options.site, "builtin")
      const dataPath = writeCapacityData(join(work, "data"), join(builtin, "data"))
      for (const [index, shape] of ladder.entries()) {
        if (options.sizes !== undefined && !options.sizes.includes(index + 1)) continue
        const parameters = parameterCount(shape)
        const label = `${shape.name} (random)`
        if (parameters > options.maxParams) {
          notes.push(`Capacity stopped before ${shape.name} (${formatCount(parameters)}): over --max-params ${formatCount(options.maxParams)}.`)
          break
        }
        const fileBytes = 4 * parameters
        // Writing the file and loading it take about a minute a GB here; training as long again at least.
        if (left() < 120_000 + (fileBytes / 1e9) * 120_000) {
          notes.push(`Capacity stopped before ${shape.name} (${formatCount(parameters)}): the ${options.budgetSeconds / 60}-minute budget would not hold it.`)
          rows.push({ model: label, parameters, backend: "wasm", steps: "-", secondsPerStep: undefined, tokensPerSecond: undefined, result: "not tried: time budget spent" })
          break
        }
        say(`capacity: ${shape.name}: ${parameters.toLocaleString("en")} parameters, writing ${gib(fileBytes)} of random float32 weights...`)
        const writeStart = performance.now()
        const dir = join(work, "models", shape.name.replace(/[^A-Za-z0-9.-]+/g, "-"))
        const files = writeRandomLlama(dir, shape, join(builtin, "model"))
        say(`  written in ${((performance.now() - writeStart) / 1000).toFixed(0)} s (estimate with the real parameter count: ${gib(intendedEstimate(shape))})`)
        const outcome = await measure(context, server.url, {
          label: shape.name,
          backend: "wasm",
          model: { kind: "files", paths: files },
          data: { kind: "files", paths: [dataPath] },
          steps: 3,
          batch: 1,
          maxLength: 64,
          targets: "q_proj,v_proj",
          method: options.method,
          skip: 1,
          loadTimeoutMs: Math.min(300_000, left()),
          trainTimeoutMs: Math.min(480_000, left()),
          stallFactor: 10
        })
        rmSync(dir, { recursive: true, force: true })
        record(label, "wasm", `${outcome.stepsDone}/3 (batch 1)`, outcome, parameters)
        if (!outcome.ok || outcome.stop) break
      }
      notes.push(
        `Capacity rows: random-weight Llama checkpoints (float32 safetensors, the built-in tokenizer), ${options.method === "cola" ? "COLA (3 links: knots before steps 2 and 3)" : "one LoRA adapter"}, rank 4, on q_proj,v_proj, batch 1, Max length 64, ~60-token examples, no validation; s/step and tokens/s are medians over steps 2-3; each step's time is in the result (step 1 includes compiling the kernels).`
      )
    }
  } finally {
    await context.close().catch(() => undefined)
    await server.close()
    rmSync(work, { recursive: true, force: true })
  }
  for (const [backend, device] of devices) notes.push(`${backend} device: ${device}`)
  notes.push(`Wall time: ${elapsed().toFixed(0)} s.`)
  printTable()
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error))
  printTable()
  process.exit(1)
})

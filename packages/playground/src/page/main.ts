/**
 * The page: forms, the chart and the outputs, wired to the training worker. It computes nothing; it
 * sends what the person chose and shows what comes back. `window.playground` holds what the page
 * shows as data (for the console, and for the browser test).
 */
import type { BackendChoice, DataInfo, DownloadKind, FromWorker, ModelInfo, ProgressPoint, RunSummary, ToWorker } from "../protocol.js"
import { saveFile } from "./Downloads.js"
import { acceptFiles, fromFileList } from "./FileDrop.js"
import { LossChart } from "./LossChart.js"
import { fillSettings, readSettings, showChainFields, showVariantHint } from "./SettingsForm.js"

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T

interface PageState {
  backend?: { name: string; device: string; reason: string; isolated: boolean }
  model?: ModelInfo
  data?: DataInfo
  training: boolean
  busy: string | undefined
  points: Array<ProgressPoint>
  knots: ReadonlyArray<number>
  trained?: RunSummary
  generated?: { prompt: string; base: string; adapted: string }
  evaluated?: unknown
  errors: Array<string>
  downloads: Array<string>
  checkpoints: Array<number>
}

const state: PageState = { training: false, busy: "starting", points: [], knots: [], errors: [], downloads: [], checkpoints: [] }
;(window as unknown as { playground: PageState }).playground = state

let worker: Worker
const send = (message: ToWorker) => worker.postMessage(message)
const chart = new LossChart($("chart"))

const log = (text: string) => {
  const line = `${new Date().toLocaleTimeString()}  ${text}\n`
  $("log").textContent = line + ($("log").textContent ?? "")
}

/** What an error is about: a later success of the same kind clears it. */
const topicOf = (during: string) =>
  during === "load-model" ? "model" : during === "load-data" ? "data" : during === "train" || during === "resume" || during === "settings" ? "train" : during

const clearErrors = (topic: string) => {
  for (const box of Array.from(document.querySelectorAll<HTMLElement>(`#errors [data-topic="${topic}"]`))) box.remove()
}

const showError = (during: string, message: string) => {
  state.errors.push(`${during}: ${message}`)
  clearErrors(topicOf(during))
  const box = document.createElement("div")
  box.className = "error"
  box.dataset.topic = topicOf(during)
  const text = document.createElement("span")
  const label: Record<string, string> = { model: "Model", data: "Data", train: "Training", generate: "Generate", evaluate: "Evaluate", download: "Download", init: "Backend", worker: "Worker" }
  text.textContent = `${label[topicOf(during)] ?? during}: ${message}`
  const close = document.createElement("button")
  close.textContent = "×"
  close.title = "dismiss"
  close.onclick = () => box.remove()
  box.append(text, close)
  $("errors").append(box)
  log(`error (${during}): ${message}`)
}

const showNote = (message: string) => {
  const box = document.createElement("div")
  box.className = "note"
  box.dataset.topic = "backend"
  box.textContent = message
  $("errors").append(box)
}

const info = (element: HTMLElement, rows: ReadonlyArray<readonly [string, string]>) => {
  element.replaceChildren(
    ...rows.flatMap(([key, value]) => {
      const dt = document.createElement("dt")
      dt.textContent = key
      const dd = document.createElement("dd")
      dd.textContent = value
      return [dt, dd]
    })
  )
}

const refresh = () => {
  const ready = state.model !== undefined && state.data !== undefined && state.busy === undefined
  $<HTMLButtonElement>("train").disabled = !ready || state.training
  $<HTMLButtonElement>("stop").disabled = !state.training
  const idle = state.busy === undefined && !state.training
  for (const id of ["use-builtin-model", "use-builtin-data", "use-pasted", "backend-select"]) $<HTMLButtonElement>(id).disabled = !idle
  $<HTMLButtonElement>("generate").disabled = !idle || state.model === undefined
  $<HTMLButtonElement>("evaluate").disabled = !idle || state.data === undefined
  for (const id of ["download-adapter", "download-zip", "download-merged", "download-report"]) $<HTMLButtonElement>(id).disabled = !idle || state.trained === undefined
}

/** The run's own line (progress, or how it ended): shown again when a busy message ends. */
let runText = "load a model and data to start"
const busy = (what: string | undefined) => {
  state.busy = what
  $("progress-text").textContent = what ?? runText
  refresh()
}

const seconds = (s: number) => (!Number.isFinite(s) ? "?" : s >= 90 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${s.toFixed(0)} s`)

const onProgress = (point: ProgressPoint) => {
  state.points.push(point)
  chart.add(point)
  const last = [...state.points].reverse()
  const loss = last.find((p) => p.loss !== undefined)?.loss
  const valid = last.find((p) => p.validLoss !== undefined)?.validLoss
  $<HTMLProgressElement>("progress").value = point.step / point.totalSteps
  runText =
    `step ${point.step} / ${point.totalSteps} · loss ${loss?.toFixed(4) ?? "-"} · validation ${valid?.toFixed(4) ?? "-"} · ${Math.round(point.tokensPerSecond).toLocaleString("en")} tokens/s · ETA ${seconds(point.etaSeconds)}` +
    (point.peakBytes === undefined ? "" : ` · peak ${(point.peakBytes / 2 ** 20).toFixed(1)} MiB`)
  $("progress-text").textContent = runText
}

/** The prompt, muted, then what the model wrote. */
const showCompletion = (element: HTMLElement, prompt: string, completion: string) => {
  const muted = document.createElement("span")
  muted.className = "muted"
  muted.textContent = prompt
  const written = document.createElement("strong")
  written.textContent = completion.startsWith(" ") ? completion : ` ${completion}`
  element.replaceChildren(muted, written)
}

const onMessage = (message: FromWorker) => {
  switch (message.type) {
    case "ready": {
      state.backend = { name: message.backend, device: message.device, reason: message.reason, isolated: message.isolated }
      $("backend-info").textContent = `${message.reason}${message.isolated ? "" : " (the page is not cross-origin isolated: wasm runs on one thread)"}`
      const chosen = $<HTMLSelectElement>("backend-select").value
      if (chosen === "webgpu" && message.backend !== "webgpu") showNote(`${message.reason} (the page trains on ${message.backend})`)
      if (message.savedRun !== undefined) {
        const run = message.savedRun
        $("resume-text").textContent = `This browser keeps a checkpoint of an unfinished run at step ${run.step} of ${run.totalSteps} (${run.method}; ${run.model}; ${run.data}; saved ${new Date(run.savedAt).toLocaleString()}).`
        $("resume-banner").hidden = false
      }
      if (message.device.includes("software") && message.backend === "webgpu") showNote(`This WebGPU adapter is software (${message.device}): expect training to be much slower than on wasm.`)
      log(`backend ${message.backend} (${message.device}): ${message.reason}`)
      busy(undefined)
      // After a backend switch: the same model and data, on the new backend.
      if (loadedSources.model !== undefined) {
        busy("loading the model again on the new backend...")
        send(loadedSources.model)
        if (loadedSources.data !== undefined) send(loadedSources.data)
      }
      return
    }
    case "status":
      log(message.text)
      if (state.busy !== undefined) $("progress-text").textContent = message.text
      return
    case "model": {
      const m = message.info
      state.model = m
      info($("model-info"), [
        ["model", m.source],
        ["architecture", m.architecture],
        ["parameters", `${m.parameters.toLocaleString("en")} (${(m.parameters / 1e6).toFixed(2)}M)`],
        ["layers x width", `${m.layers} x ${m.hiddenSize}, heads ${m.heads}`],
        ["vocabulary", `${m.vocabSize.toLocaleString("en")} (tokenizer: ${m.tokenizer})`],
        ["context", `${m.contextLength} tokens`],
        ["linear modules", m.linearModules.join(", ")],
        ["memory to train", `about ${(m.estimatedTrainingBytes / 2 ** 20).toFixed(0)} MiB at batch 8 x 128 (estimate)`],
        ["loaded in", `${m.loadSeconds.toFixed(2)} s`]
      ])
      log(`model: ${m.source}, ${m.architecture}, ${m.parameters.toLocaleString("en")} parameters`)
      clearErrors("model")
      state.trained = undefined
      busy(undefined)
      return
    }
    case "data":
      state.data = message.info
      info($("data-info"), [
        ["data", message.info.describe],
        ["examples", `${message.info.train} train, ${message.info.valid} validation, ${message.info.test} test`],
        ...message.info.warnings.map((w) => ["warning", w] as const)
      ])
      log(`data: ${message.info.describe}`)
      clearErrors("data")
      busy(undefined)
      return
    case "train-start":
      state.points = [...message.history]
      state.knots = message.knots
      state.training = true
      state.trained = undefined
      chart.reset(message.knots, message.history)
      $("run-describe").textContent = message.describe + (message.startStep > 0 ? ` · resumed at step ${message.startStep}` : "")
      $("resume-banner").hidden = true
      clearErrors("train")
      fillSettings(message.settings)
      // Outputs of an earlier adapter no longer describe this one.
      state.generated = undefined
      state.evaluated = undefined
      $("base-output").replaceChildren()
      $("adapted-output").replaceChildren()
      $("eval-table").replaceChildren()
      busy(undefined)
      log(`training: ${message.describe}`)
      return
    case "progress":
      onProgress(message.point)
      return
    case "checkpoint":
      state.checkpoints.push(message.step)
      log(`checkpoint at step ${message.step} kept in this browser (a reload can resume)`)
      return
    case "trained": {
      state.training = false
      state.trained = message.summary
      const s = message.summary
      runText = `${s.stopped ? "stopped" : "done"} at step ${s.step} of ${s.totalSteps} in ${seconds(s.seconds)}${s.stopped ? " (checkpoint kept: reload the page to resume)" : ""} · adapter ready to download`
      log(`${s.stopped ? "stopped" : "finished"} at step ${s.step}; adapter files: ${s.adapterFiles.join(", ")}`)
      busy(undefined)
      return
    }
    case "generated":
      clearErrors("generate")
      state.generated = { prompt: message.prompt, base: message.base, adapted: message.adapted }
      showCompletion($("base-output"), message.prompt, message.base)
      showCompletion($("adapted-output"), message.prompt, message.adapted)
      busy(undefined)
      return
    case "evaluated": {
      state.evaluated = message.result
      const keys = Object.keys(message.result.base)
      const row = (label: string, values: Record<string, number>) =>
        `<tr><th>${label}</th>${keys.map((k) => `<td>${values[k] === undefined ? "-" : k === "accuracy" || k.endsWith("F1") || k === "f1a" || k === "exactMatch" ? `${(100 * values[k]!).toFixed(1)}%` : values[k]!.toFixed(4)}</td>`).join("")}</tr>`
      $("eval-table").innerHTML = `<tr><th>${message.result.split}</th>${keys.map((k) => `<th>${k}</th>`).join("")}</tr>${row("base", message.result.base)}${row("with adapter", message.result.adapted)}`
      busy(undefined)
      return
    }
    case "file":
      saveFile(message.name, message.mime, message.bytes)
      state.downloads.push(message.name)
      log(`downloaded ${message.name} (${message.bytes.length.toLocaleString("en")} bytes)`)
      return
    case "error":
      if (message.during === "train" || message.during === "resume") {
        // The worker dropped the earlier adapter when this run began: nothing to download until one trains.
        state.training = false
        state.trained = undefined
        runText = `the run did not finish: ${message.message}`
      }
      showError(message.during, message.message)
      busy(undefined)
      if (message.during === "init") $("backend-info").textContent = `no backend: ${message.message}`
      return
  }
}

/** What was loaded, so a backend switch (a new worker) loads it again. */
const loadedSources: { model?: ToWorker; data?: ToWorker } = {}

const startWorker = (backend: BackendChoice) => {
  worker?.terminate()
  state.points = []
  state.knots = []
  state.generated = undefined
  state.evaluated = undefined
  chart.reset([], [])
  for (const id of ["base-output", "adapted-output", "eval-table", "run-describe"]) $(id).replaceChildren()
  $<HTMLProgressElement>("progress").value = 0
  runText = loadedSources.model === undefined ? "load a model and data to start" : "the backend changed: loading the model and data again"
  for (const box of Array.from(document.querySelectorAll<HTMLElement>("#errors > *"))) box.remove()
  worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" })
  worker.onmessage = (event: MessageEvent<FromWorker>) => onMessage(event.data)
  worker.onerror = (event) => showError("worker", event.message || "the worker crashed (out of memory?)")
  state.model = undefined
  state.data = undefined
  state.trained = undefined
  $("model-info").replaceChildren()
  $("data-info").replaceChildren()
  busy(`starting the ${backend} backend...`)
  send({ type: "init", backend })
}

// ------------------------------------------------------------------ wiring


const loadModel = (message: ToWorker & { type: "load-model" }, what: string) => {
  busy(what)
  loadedSources.model = message
  send(message)
}
$("use-builtin-model").onclick = () => loadModel({ type: "load-model", source: { kind: "builtin" } }, "loading the built-in model...")
const onModelFiles = (files: ReturnType<typeof fromFileList>) => loadModel({ type: "load-model", source: { kind: "files", files } }, `reading ${files.length} model file(s)...`)
acceptFiles($("model-drop"), $<HTMLInputElement>("model-files"), onModelFiles)
$<HTMLInputElement>("model-folder").addEventListener("change", (event) => {
  const input = event.target as HTMLInputElement
  if (input.files !== null && input.files.length > 0) onModelFiles(fromFileList(input.files))
  input.value = ""
})

const loadData = (message: ToWorker) => {
  if (state.model === undefined) return showError("load-data", "load a model first: the data is tokenized with its tokenizer")
  loadedSources.data = message
  busy("reading the data...")
  send(message)
}
$("use-builtin-data").onclick = () => loadData({ type: "load-data", source: { kind: "builtin" } })
acceptFiles($("data-drop"), $<HTMLInputElement>("data-files"), (files) => {
  const task = $<HTMLSelectElement>("task-select").value
  loadData({ type: "load-data", source: task === "" ? { kind: "jsonl", files } : { kind: "task", task, files } })
})
$("use-pasted").onclick = () => loadData({ type: "load-data", source: { kind: "pasted", text: $<HTMLTextAreaElement>("paste-text").value } })

$("method").addEventListener("change", showChainFields)
$("variant").addEventListener("change", showVariantHint)
showChainFields()
showVariantHint()

$("train").onclick = () => {
  try {
    const settings = readSettings()
    $<HTMLProgressElement>("progress").value = 0
    busy("setting up the run...")
    state.training = true
    send({ type: "train", settings })
  } catch (error) {
    showError("settings", error instanceof Error ? error.message : String(error))
  }
}
$("stop").onclick = () => {
  send({ type: "stop" })
  $("progress-text").textContent = "stopping after this step (a checkpoint is kept)..."
}
$("resume").onclick = () => {
  busy("resuming the saved run...")
  state.training = true
  send({ type: "resume" })
}
$("discard").onclick = () => {
  send({ type: "discard-checkpoint" })
  $("resume-banner").hidden = true
}
$("generate").onclick = () => {
  const maxTokens = Number($<HTMLInputElement>("max-tokens").value)
  const temperature = Number($<HTMLInputElement>("temperature").value)
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > 1024) return showError("generate", `Tokens must be a whole number from 1 to 1024, got '${$<HTMLInputElement>("max-tokens").value}'`)
  if (!Number.isFinite(temperature) || temperature < 0) return showError("generate", `Temperature must be 0 (greedy) or more, got '${$<HTMLInputElement>("temperature").value}'`)
  busy("generating with the base model and with the adapter...")
  send({ type: "generate", prompt: $<HTMLInputElement>("prompt").value, maxTokens, temperature })
}
$("evaluate").onclick = () => {
  busy("evaluating the base model and the adapter...")
  send({ type: "evaluate" })
}
const download = (what: DownloadKind) => () => send({ type: "download", what })
$("download-adapter").onclick = download("adapter")
$("download-zip").onclick = download("adapter-zip")
$("download-merged").onclick = download("merged")
$("download-report").onclick = download("report")
$<HTMLSelectElement>("backend-select").onchange = (event) => startWorker((event.target as HTMLSelectElement).value as BackendChoice)

// The backend can be chosen in the URL too (?backend=wasm), e.g. for a link that always uses wasm.
const requested = new URLSearchParams(location.search).get("backend")
if (requested === "webgpu" || requested === "wasm" || requested === "cpu") $<HTMLSelectElement>("backend-select").value = requested
startWorker($<HTMLSelectElement>("backend-select").value as BackendChoice)

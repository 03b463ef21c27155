/**
 * Everything the worker holds between messages: the runtime (backend, in-memory file system,
 * progress), the loaded model and tokenizer, the data, and the trained result. Each method is one
 * thing a person does on the page; each posts what it found and fails with a typed error the page
 * shows. Nothing here touches the DOM.
 */
import { FileSystem } from "@effect/platform"
import {
  Backend,
  ConfigError,
  formatBytes,
  loadAdapter,
  type MemoryFileSystemHandle,
  makeMemoryFileSystem,
  makeSchedule,
  OPTIMIZER_STATE_FILE,
  optimizerStateFile,
  type ProgressEvent,
  restoreOptimizer,
  train,
  TrainingInterrupted,
  writeCheckpoint
} from "@peftkit/core"
import { type Batch, makeBatcher } from "@peftkit/data"
import { dora, lora } from "@peftkit/lora"
import { type CausalLM, causalLmLoss, generate, loadCausalLM, type ModelConfig, saveHfModel } from "@peftkit/models"
import { adamw, type AdamW } from "@peftkit/optimizers"
import { evaluate } from "@peftkit/tasks"
import { loadTokenizer, type Tokenizer } from "@peftkit/tokenizers"
import { vera } from "@peftkit/vera"
import { Effect } from "effect"
import { zipSync } from "fflate"
import type { BackendChoice, DataSource, DownloadKind, FromWorker, ModelInfo, ModelSource, ProgressPoint, TrainSettings } from "../protocol.js"
import { estimateTrainingMemory, tabBudget, TRAINING_WEIGHT_FACTOR } from "./MemoryBudget.js"
import { type ActiveMethod, setupMethod } from "./MethodSetup.js"
import { NOT_A_MODEL, type SortedModelFiles, sortModelFiles } from "./ModelFiles.js"
import { meanLoss, type Probe, probeLogits } from "./ModelMeasures.js"
import { RunStore, type SavedRun } from "./RunStore.js"
import { loadTrainingData, type TrainingData } from "./TrainingData.js"
import { makeWorkerRuntime, pageBackends, type WorkerRuntime, type WorkerServices } from "./WorkerRuntime.js"

type Post = (message: FromWorker, transfer?: ReadonlyArray<Transferable>) => void

const BUILTIN_MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
const EVAL_EXAMPLES = 200
const CHECKPOINT_ROOT = "/run/checkpoints"
const ADAPTER_DIR = "/out/adapter"

interface LoadedModel {
  readonly model: CausalLM
  readonly tokenizer: Tokenizer
  readonly config: ModelConfig
  readonly source: ModelSource
  readonly name: string
  readonly parameters: number
  readonly root: string
  readonly modelPath: string
  readonly tokenizerFiles: ReadonlyArray<string>
}

interface TrainedResult {
  readonly settings: TrainSettings
  readonly method: ActiveMethod
  readonly optimizer: AdamW
  readonly adapterFiles: Readonly<Record<string, Uint8Array>>
  readonly history: ReadonlyArray<ProgressPoint>
  readonly probe: Probe
  readonly step: number
  readonly stopped: boolean
  readonly seconds: number
  readonly trainable: number
}

/**
 * A macrotask boundary: lets the worker see a Stop message between steps (promises alone do not).
 * One channel for the worker's life; each call waits for its own message back.
 */
const stepChannel = new MessageChannel()
const waitingSteps: Array<() => void> = []
stepChannel.port1.onmessage = () => waitingSteps.shift()?.()
const yieldToEvents = () =>
  Effect.async<void>((resume) => {
    waitingSteps.push(() => resume(Effect.void))
    stepChannel.port2.postMessage(undefined)
  })

/** Settings that would run but cannot mean what the person wants, refused with the limit. */
const refuseNonsense = (settings: TrainSettings, model: CausalLM) => {
  const narrowest = Math.min(...model.linears().map((layer) => Math.min(layer.inFeatures, layer.outFeatures)))
  if (settings.variant !== "vera" && settings.rank > narrowest) {
    throw new ConfigError({ field: "rank", reason: `rank ${settings.rank} is more than the narrowest layer's width (${narrowest}): a low-rank update cannot have a higher rank than its matrix` })
  }
  const linkSteps = Math.floor(settings.steps / settings.links)
  if (settings.method !== "lora" && settings.linkWarmup > 0 && settings.linkWarmup >= linkSteps) {
    throw new ConfigError({ field: "linkWarmup", reason: `a warm-up of ${settings.linkWarmup} steps per link leaves nothing of links of ${linkSteps} steps: use fewer warm-up steps or fewer links` })
  }
}

/** Fails with what the run needs and what the tab has, when the estimate exceeds the budget. */
const checkFits = (name: string, config: ModelConfig, parameters: number, batch: number, length: number, advice: string) => {
  const estimate = estimateTrainingMemory(config, parameters, batch, length)
  const budget = tabBudget()
  if (estimate.total <= budget) return
  throw new ConfigError({
    field: "model",
    reason: `${name} (${(parameters / 1e6).toFixed(parameters < 1e7 ? 2 : 0)}M parameters) needs about ${formatBytes(estimate.total)} to train in this tab at batch ${batch} x ${length} tokens (${formatBytes(estimate.weights)} of float32 weights, about ${TRAINING_WEIGHT_FACTOR} times that while training, plus ${formatBytes(estimate.activations)} of activations); the tab has about ${formatBytes(budget)} (a wasm module addresses at most 4 GiB). ${advice}`
  })
}

const messageOf = (error: unknown): { message: string; kind: string } => {
  const tagged = error as { _tag?: string; message?: string; reason?: string; field?: string }
  // A ConfigError's reason is written for the person (its message prefixes "invalid config: 'field'");
  // a reason about a value ("must be ...") gets the field's name.
  const field = tagged.field?.slice(tagged.field.lastIndexOf(".") + 1) ?? ""
  const message =
    tagged._tag === "ConfigError" && typeof tagged.reason === "string" ? (/^must /.test(tagged.reason) ? `${field} ${tagged.reason}` : tagged.reason) : (tagged.message ?? String(error))
  return { message, kind: tagged._tag ?? (error instanceof Error ? error.name : "Error") }
}

export class Session {
  private runtime: WorkerRuntime | undefined
  private readonly files: MemoryFileSystemHandle = makeMemoryFileSystem()
  private backendName = ""
  private loads = 0
  private loaded: LoadedModel | undefined
  private dataSource: DataSource | undefined
  private data: TrainingData | undefined
  /** What the data was tokenized and sampled with (the page's defaults until a run says otherwise). */
  private dataKey = { seed: 0, maxLength: 128 }
  private result: TrainedResult | undefined
  private stopRequested = false
  private training = false
  private onProgress: (event: ProgressEvent) => void = () => {}

  constructor(
    private readonly post: Post,
    private readonly siteUrl: string
  ) {}

  private run<A, E>(effect: Effect.Effect<A, E, WorkerServices>): Promise<A> {
    if (this.runtime === undefined) return Promise.reject(new ConfigError({ field: "backend", reason: "the worker has not started a backend yet" }))
    return this.runtime.runPromise(effect)
  }

  private status(text: string) {
    this.post({ type: "status", text })
  }

  /** Starts the backend. `auto` takes WebGPU only on a hardware adapter (a software one is slower than wasm). */
  async init(choice: BackendChoice): Promise<void> {
    const providers = pageBackends(this.siteUrl)
    const onProgress = (event: ProgressEvent) => this.onProgress(event)
    this.runtime = makeWorkerRuntime(choice, providers, this.files, onProgress)
    let fallback = ""
    const backend = await this.run(Backend).catch(async (error: unknown) => {
      if (choice !== "webgpu") throw error
      // WebGPU missing is not a dead end: the page trains on wasm and says why.
      fallback = `WebGPU is not available here (${messageOf(error).message}); using the best CPU backend instead. `
      await this.runtime?.dispose()
      this.runtime = makeWorkerRuntime("auto", providers.filter((provider) => provider.name !== "webgpu"), this.files, onProgress)
      return this.run(Backend)
    })
    this.backendName = backend.info.name
    const saved = await RunStore.load()
    this.post({
      type: "ready",
      backend: backend.info.name,
      device: backend.info.device,
      reason: fallback + backend.selection.reason,
      isolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
      ...(saved === undefined ? {} : { savedRun: RunStore.info(saved) })
    })
  }

  // ---------------------------------------------------------------- model

  private async removePath(path: string) {
    await Effect.runPromise(Effect.ignore(this.files.fileSystem.remove(path, { recursive: true })))
  }

  private async writeFile(path: string, bytes: Uint8Array) {
    const fs = this.files.fileSystem
    await Effect.runPromise(Effect.orDie(Effect.zipRight(fs.makeDirectory(path.slice(0, path.lastIndexOf("/")), { recursive: true }), fs.writeFile(path, bytes))))
  }

  private async sortSource(source: ModelSource): Promise<SortedModelFiles> {
    if (source.kind === "files") {
      return Effect.runPromise(
        sortModelFiles(source.files).pipe(
          Effect.catchTag("InvalidCheckpoint", (error) => Effect.fail(new ConfigError({ field: "model", reason: `${NOT_A_MODEL} (${error.message})` })))
        )
      )
    }
    const fetched = await Promise.all(
      BUILTIN_MODEL_FILES.map(async (name) => {
        const response = await fetch(new URL(`builtin/model/${name}`, this.siteUrl))
        if (!response.ok) throw new ConfigError({ field: "model", reason: `the built-in model's ${name} did not load (HTTP ${response.status}): was the site built with pnpm playground:build?` })
        return { path: `builtin-llama/${name}`, file: await response.blob() }
      })
    )
    return Effect.runPromise(sortModelFiles(fetched.map((entry) => ({ path: entry.path, file: entry.file as File }))))
  }

  async loadModel(source: ModelSource): Promise<void> {
    if (this.training) throw new ConfigError({ field: "model", reason: "a run is training: stop it first" })
    const started = performance.now()
    const sorted = await this.sortSource(source)
    // Refused before a byte of weights is read, if even the smallest run (batch 1 x 64 tokens) would not fit.
    checkFits(sorted.name, sorted.config, sorted.parameters, 1, 64, "Use peftkit in Node for this model.")
    this.status(`reading ${sorted.files.length} file(s), ${formatBytes(sorted.bytes)}...`)
    // Into a directory of its own: the model loaded now stays whole until this one has loaded.
    const root = `/model-${++this.loads}`
    const modelPath = sorted.modelPath.replace(/^\/model/, root)
    const tokenizerPaths = sorted.files.map((entry) => entry.path.replace(/^\/model/, root))
    try {
      for (const entry of sorted.files) await this.writeFile(entry.path.replace(/^\/model/, root), new Uint8Array(await entry.file.arrayBuffer()))
      await this.loadInto(source, sorted, root, modelPath, tokenizerPaths, started)
    } catch (error) {
      await this.removePath(root)
      throw error
    }
    if (this.dataSource !== undefined) await this.loadData(this.dataSource)
  }

  private async loadInto(source: ModelSource, sorted: SortedModelFiles, root: string, modelPath: string, paths: ReadonlyArray<string>, started: number): Promise<void> {
    this.status(`loading ${sorted.name} on ${this.backendName}...`)
    const { model, config, warnings, tokenizer } = await this.run(
      Effect.gen(function* () {
        const loaded = yield* loadCausalLM(modelPath)
        const tokenizer = yield* loadTokenizer(modelPath).pipe(Effect.tapError(() => Effect.sync(() => loaded.model.dispose())))
        return { model: loaded.model, config: loaded.config, warnings: loaded.warnings, tokenizer }
      })
    )
    if (tokenizer.vocabSize > config.vocabSize) {
      model.dispose()
      throw new ConfigError({
        field: "model",
        reason: `the tokenizer has ${tokenizer.vocabSize} tokens but the model's embedding has ${config.vocabSize} rows: they do not belong together (drop the tokenizer that came with this model)`
      })
    }
    for (const warning of warnings) this.status(`warning: ${warning}`)
    const tokenizerFiles = paths.filter((path) => /\/(tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|chat_template\.jinja|tokenizer\.bin|tok[^/]*\.bin)$/.test(path) && path !== modelPath)
    // The new model is complete: only now does the old one go.
    const previous = this.loaded
    this.disposeModel()
    if (previous !== undefined) await this.removePath(previous.root)
    this.loaded = { model, tokenizer, config, source, root, parameters: model.parameters().reduce((sum, p) => sum + p.variable.size, 0), name: source.kind === "builtin" ? "built-in tiny Llama" : sorted.name, modelPath, tokenizerFiles }
    const info: ModelInfo = {
      source: this.loaded.name,
      architecture: `${config.modelType}${sorted.kind === "llama2c" ? " (llama2.c file)" : ""}`,
      parameters: this.loaded.parameters,
      layers: config.numHiddenLayers,
      hiddenSize: config.hiddenSize,
      heads: "numKeyValueHeads" in config ? `${config.numAttentionHeads} (${config.numKeyValueHeads} kv)` : `${config.numAttentionHeads}`,
      vocabSize: config.vocabSize,
      contextLength: config.maxPositionEmbeddings,
      linearModules: [...new Set(model.linears().map((layer) => layer.name.slice(layer.name.lastIndexOf(".") + 1)))],
      tokenizer: `${tokenizer.vocabSize} tokens`,
      estimatedTrainingBytes: estimateTrainingMemory(sorted.config, sorted.parameters, 8, 128).total,
      loadSeconds: (performance.now() - started) / 1000
    }
    this.post({ type: "model", info })
  }

  private disposeModel() {
    this.disposeResult()
    this.loaded?.model.dispose()
    this.loaded = undefined
  }

  private disposeResult() {
    this.result?.optimizer.dispose()
    this.result = undefined
  }

  private need(): LoadedModel {
    if (this.loaded === undefined) throw new ConfigError({ field: "model", reason: "load a model first" })
    return this.loaded
  }

  // ---------------------------------------------------------------- data

  async loadData(source: DataSource, seed = this.dataKey.seed, maxLength = this.dataKey.maxLength): Promise<void> {
    const loaded = this.need()
    const data = await Effect.runPromise(
      loadTrainingData(source, loaded.tokenizer, { maxLength: Math.min(maxLength, loaded.config.maxPositionEmbeddings), seed, builtinUrl: new URL("builtin/data", this.siteUrl).href })
    )
    this.dataSource = source
    this.data = data
    this.dataKey = { seed, maxLength }
    this.post({ type: "data", info: data.info })
  }

  // ---------------------------------------------------------------- training

  stop() {
    this.stopRequested = true
  }

  async train(settings: TrainSettings, resume?: SavedRun): Promise<void> {
    const loaded = this.need()
    if (this.data === undefined) throw new ConfigError({ field: "data", reason: "choose data first" })
    if (this.training) throw new ConfigError({ field: "train", reason: "already training" })
    if (settings.method !== "lora" && settings.links > settings.steps) {
      throw new ConfigError({ field: "links", reason: `${settings.links} links need at least ${settings.links} steps` })
    }
    refuseNonsense(settings, loaded.model)
    checkFits(loaded.name, loaded.config, loaded.parameters, settings.batchSize, Math.min(settings.maxSeqLength, loaded.config.maxPositionEmbeddings), "Lower the batch size or the max length.")
    // The run's length and seed decide the tokenization and a task's sample.
    if (this.dataSource !== undefined && (this.dataKey.seed !== settings.seed || this.dataKey.maxLength !== settings.maxSeqLength)) {
      await this.loadData(this.dataSource, settings.seed, settings.maxSeqLength)
    }
    const data = this.data!
    // A new run starts from the base weights: a chain merged its links into them.
    if (this.result !== undefined) await this.reloadBase()
    this.disposeResult()
    const { model, tokenizer } = this.need()
    const batcher = makeBatcher(data.train, { batchSize: settings.batchSize, padTokenId: tokenizer.padTokenId, seed: settings.seed })
    const validBatcher = data.valid.length > 0 ? makeBatcher(data.valid.slice(0, 64), { batchSize: settings.batchSize, padTokenId: tokenizer.padTokenId, shuffle: false }) : undefined
    const optimizer = adamw([], { weightDecay: 0 })
    const method = setupMethod(model, settings, optimizer, loaded.name)
    const trainable = optimizer.groups.flatMap((group) => group.params).reduce((sum, param) => sum + param.variable.size, 0)
    const schedule = method.schedule(makeSchedule({ kind: settings.schedule, peak: settings.learningRate, totalSteps: settings.steps, warmupSteps: Math.min(settings.warmup, settings.steps) }))
    let startStep = 0
    const history: Array<ProgressPoint> = []
    if (resume !== undefined) {
      const dir = `${CHECKPOINT_ROOT}/resume`
      for (const [name, bytes] of Object.entries(resume.checkpoint)) await this.writeFile(`${dir}/${name}`, bytes)
      await this.run(Effect.zipRight(method.restore(dir), restoreOptimizer(dir, optimizer)))
      startStep = resume.step
      history.push(...resume.history)
    }
    this.post({ type: "train-start", settings, totalSteps: settings.steps, startStep, knots: method.knots, describe: `${method.describe}; ${trainable.toLocaleString("en")} trainable parameters`, history })

    let lastReport: { tokensPerSec: number; itPerSec: number; peakBytes: number | undefined } = { tokensPerSec: 0, itPerSec: 0, peakBytes: undefined }
    this.onProgress = (event) => {
      if (event._tag === "report") {
        lastReport = { tokensPerSec: event.tokensPerSec, itPerSec: event.itPerSec, peakBytes: event.peakBytes }
        const point: ProgressPoint = {
          step: event.step,
          totalSteps: event.totalSteps,
          loss: event.trainLoss,
          learningRate: event.learningRate,
          tokensPerSecond: event.tokensPerSec,
          etaSeconds: event.itPerSec > 0 ? (event.totalSteps - event.step) / event.itPerSec : Number.NaN,
          ...(event.peakBytes === undefined ? {} : { peakBytes: event.peakBytes })
        }
        history.push(point)
        this.post({ type: "progress", point })
      } else if (event._tag === "evaluation") {
        const point: ProgressPoint = {
          step: event.step,
          totalSteps: settings.steps,
          validLoss: event.valLoss,
          learningRate: Number.NaN,
          tokensPerSecond: lastReport.tokensPerSec,
          etaSeconds: lastReport.itPerSec > 0 ? (settings.steps - event.step) / lastReport.itPerSec : Number.NaN
        }
        history.push(point)
        this.post({ type: "progress", point })
      }
    }
    const saveCheckpoint = (step: number) =>
      Effect.gen(this, function* () {
        const files = { ...(yield* method.checkpointFiles()), [OPTIMIZER_STATE_FILE]: yield* optimizerStateFile(optimizer) }
        const dir = yield* writeCheckpoint(CHECKPOINT_ROOT, { step, method: settings.method }, files, { keep: 1 })
        const fs = yield* FileSystem.FileSystem
        const checkpoint: Record<string, Uint8Array> = {}
        for (const name of yield* Effect.orDie(fs.readDirectory(dir))) checkpoint[name] = yield* Effect.orDie(fs.readFile(`${dir}/${name}`))
        yield* Effect.promise(() =>
          RunStore.save({
            settings,
            model: loaded.source,
            modelName: loaded.name,
            data: this.dataSource!,
            dataName: data.info.describe,
            step,
            checkpoint,
            history: [...history],
            savedAt: new Date().toISOString()
          })
        )
        this.post({ type: "checkpoint", step })
      })

    this.training = true
    this.stopRequested = false
    const started = performance.now()
    let stoppedAt: number | undefined
    try {
      await this.run(
        train<Batch, unknown, FileSystem.FileSystem>({
          label: settings.method,
          loss: (batch: Batch, training) => causalLmLoss(model.forward(batch.inputIds, { attentionMask: batch.attentionMask, training }), batch.inputIds, batch.lossMask),
          batch: (step) => batcher.batchAt(step),
          tokensPerBatch: (step) => batcher.tokensAt(step),
          optimizer,
          steps: settings.steps,
          startStep,
          learningRate: schedule,
          clipNorm: 1,
          reportEvery: Math.max(1, Math.round(settings.steps / 100)),
          hooks: [...method.hooks, { beforeStep: () => yieldToEvents() }],
          ...(validBatcher === undefined ? {} : { evalEvery: settings.evalEvery, evaluate: () => meanLoss(model, validBatcher) }),
          checkpointEvery: settings.checkpointEvery,
          checkpoint: (step) => saveCheckpoint(step),
          stopRequested: () => this.stopRequested
        }).pipe(
          Effect.catchIf(
            (error): error is TrainingInterrupted => error instanceof TrainingInterrupted,
            (error) => Effect.sync(() => void (stoppedAt = error.step))
          )
        )
      )
    } catch (error) {
      this.training = false
      optimizer.dispose()
      throw error
    }
    this.training = false
    const step = stoppedAt ?? settings.steps
    this.status("writing the adapter as PEFT files...")
    await this.run(method.save(ADAPTER_DIR))
    const adapterFiles = this.readDir(ADAPTER_DIR)
    const probe = await probeLogits(model, data)
    this.result = { settings, method, optimizer, adapterFiles, history, probe, step, stopped: stoppedAt !== undefined, seconds: (performance.now() - started) / 1000, trainable }
    // A finished run has nothing to resume; a stopped one keeps its checkpoint.
    if (stoppedAt === undefined) await RunStore.clear()
    this.post({
      type: "trained",
      summary: { step, totalSteps: settings.steps, stopped: stoppedAt !== undefined, seconds: this.result.seconds, trainable, describe: method.describe, adapterFiles: Object.keys(adapterFiles) }
    })
  }

  async resume(): Promise<void> {
    const saved = await RunStore.load()
    if (saved === undefined) throw new ConfigError({ field: "resume", reason: "no saved run in this browser" })
    if (this.loaded === undefined || this.loaded.source !== saved.model) await this.loadModel(saved.model)
    await this.loadData(saved.data, saved.settings.seed, saved.settings.maxSeqLength)
    await this.train(saved.settings, saved)
  }

  private readDir(dir: string): Record<string, Uint8Array> {
    const out: Record<string, Uint8Array> = {}
    for (const [path, bytes] of this.files.files()) if (path.startsWith(`${dir}/`) && !path.slice(dir.length + 1).includes("/")) out[path.slice(dir.length + 1)] = bytes
    return out
  }

  /** A fresh copy of the base model from the files already in memory. */
  private loadBase() {
    const { modelPath } = this.need()
    return this.run(Effect.map(loadCausalLM(modelPath), (loaded) => loaded.model))
  }

  private async reloadBase() {
    const loaded = this.need()
    const base = await this.loadBase()
    loaded.model.dispose()
    this.loaded = { ...loaded, model: base }
  }

  // ---------------------------------------------------------------- compare

  private async generateWith(model: CausalLM, promptIds: ReadonlyArray<number>, maxTokens: number, temperature: number) {
    const { tokenizer } = this.need()
    const ids = await generate(model, promptIds, { maxNewTokens: maxTokens, temperature, seed: 1, eosTokenIds: tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId] })
    return tokenizer.decode(ids, { skipSpecialTokens: true })
  }

  async generate(prompt: string, maxTokens: number, temperature: number): Promise<void> {
    const { tokenizer } = this.need()
    const text = prompt === "" ? (this.data?.samplePrompt ?? "") : prompt
    const promptIds = tokenizer.encode(text)
    if (promptIds.length === 0) throw new ConfigError({ field: "prompt", reason: "the prompt is empty" })
    const base = await this.loadBase()
    let baseText: string
    try {
      baseText = await this.generateWith(base, promptIds, maxTokens, temperature)
    } finally {
      base.dispose()
    }
    const adapted = this.result === undefined ? "(train first: the adapter does not exist yet)" : await this.generateWith(this.need().model, promptIds, maxTokens, temperature)
    this.post({ type: "generated", prompt: text, base: baseText, adapted })
  }

  async evaluate(): Promise<void> {
    const { tokenizer } = this.need()
    const data = this.data
    if (data === undefined) throw new ConfigError({ field: "data", reason: "choose data first" })
    const measure = async (model: CausalLM): Promise<Record<string, number>> => {
      if (data.task !== undefined) {
        const evaluation = await this.run(evaluate(data.task.task, model, tokenizer, data.task.test.slice(0, EVAL_EXAMPLES), { maxLength: Math.min(256, this.need().config.maxPositionEmbeddings) }))
        return { ...evaluation.metrics }
      }
      const split = data.test.length > 0 ? data.test : data.valid.length > 0 ? data.valid : data.train
      const loss = await this.run(meanLoss(model, makeBatcher(split.slice(0, 256), { batchSize: 8, padTokenId: tokenizer.padTokenId, shuffle: false })))
      return { loss, perplexity: Math.exp(loss) }
    }
    const base = await this.loadBase()
    let baseMetrics: Record<string, number>
    try {
      baseMetrics = await measure(base)
    } finally {
      base.dispose()
    }
    const adapted = this.result === undefined ? {} : await measure(this.need().model)
    const split = data.task !== undefined ? `${data.task.task.name} test (first ${Math.min(EVAL_EXAMPLES, data.task.test.length)} of ${data.task.test.length})` : data.test.length > 0 ? "test" : data.valid.length > 0 ? "valid" : "train"
    this.post({ type: "evaluated", result: { split, base: baseMetrics, adapted } })
  }

  // ---------------------------------------------------------------- downloads

  private sendFile(name: string, mime: string, bytes: Uint8Array) {
    const copy = bytes.slice()
    this.post({ type: "file", name, mime, bytes: copy }, [copy.buffer])
  }

  async download(what: DownloadKind): Promise<void> {
    const result = this.result
    if (result === undefined) throw new ConfigError({ field: "download", reason: "train first: there is no adapter yet" })
    switch (what) {
      case "adapter":
        for (const [name, bytes] of Object.entries(result.adapterFiles)) this.sendFile(name, name.endsWith(".json") ? "application/json" : "application/octet-stream", bytes)
        return
      case "adapter-zip":
        this.sendFile("peftkit-adapter.zip", "application/zip", zipSync(Object.fromEntries(Object.entries(result.adapterFiles).map(([name, bytes]) => [`peftkit-adapter/${name}`, bytes]))))
        return
      case "merged":
        return this.downloadMerged()
      case "report":
        this.sendFile("peftkit-report.json", "application/json", new TextEncoder().encode(`${JSON.stringify(this.report(result), null, 2)}\n`))
        return
    }
  }

  private report(result: TrainedResult) {
    const loaded = this.need()
    return {
      tool: "peftkit playground",
      backend: this.backendName,
      model: { name: loaded.name, architecture: loaded.config.modelType, vocabSize: loaded.config.vocabSize },
      data: this.data?.info,
      settings: result.settings,
      method: result.method.describe,
      trainableParameters: result.trainable,
      steps: result.step,
      stopped: result.stopped,
      seconds: result.seconds,
      history: result.history,
      adapterFiles: Object.keys(result.adapterFiles),
      probe: result.probe
    }
  }

  /** The base with the adapter merged in, as a Hugging Face directory (zip): loads the PEFT files just written, as `peftkit merge` does. */
  private async downloadMerged() {
    const loaded = this.need()
    this.status("merging the adapter into a fresh copy of the base...")
    const base = await this.loadBase()
    const dir = "/out/merged"
    try {
      await this.run(
        Effect.gen(function* () {
          const adapters = yield* loadAdapter(ADAPTER_DIR, base, [dora, vera, lora])
          adapters.merge()
          adapters.remove()
          const tensors = base.stateDict()
          yield* saveHfModel(dir, loaded.config, tensors).pipe(Effect.ensuring(Effect.sync(() => Object.values(tensors).forEach((t) => t.dispose()))))
        })
      )
    } finally {
      base.dispose()
    }
    const files: Record<string, Uint8Array> = {}
    for (const [name, bytes] of Object.entries(this.readDir(dir))) files[`peftkit-merged/${name}`] = bytes
    for (const path of loaded.tokenizerFiles) files[`peftkit-merged/${path.slice(path.lastIndexOf("/") + 1)}`] = this.files.files().get(path)!
    this.sendFile("peftkit-merged-model.zip", "application/zip", zipSync(files, { level: 0 }))
  }

  /** What failed, for the page. */
  static describeError(error: unknown) {
    return messageOf(error)
  }
}

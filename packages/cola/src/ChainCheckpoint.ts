/**
 * Saving and resuming a chain mid-training. A chain's state is small: the finished links' factors
 * (already on the host), the current link's adapter tensors and its position. Resuming replays
 * the finished links onto the ORIGINAL base weights with the same float32 ops the knots used, so
 * the weights come back bit for bit, then loads the current link. A PiSSA chain past a knot re-runs
 * its knots off the model instead, since each link's init was drawn from the merged weight
 * (`internal/refoldLink.ts`); it too comes back bit for bit.
 *
 * These files go into a checkpoint directory next to the optimizer state (see core's
 * `writeCheckpoint` / `restoreOptimizer`).
 */
import type { FileSystem } from "@effect/platform"
import { attempt, type BackendOutOfMemory, type CheckpointFiles, type ConfigError, decodeConfig, type FileError, InvalidCheckpoint, readCheckpointFile, Safetensors, ShapeMismatch } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import type { Chain, LinkRecord, LinkUpdate, ChainableConfig } from "./Chain.js"
import { foldsInitialUpdate, resumeRefolded } from "./internal/refoldLink.js"
import { addLink } from "./internal/replayLink.js"

export const CHAIN_STATE_FILE = "chain_state.json"
export const CHAIN_LINKS_FILE = "chain_links.safetensors"
export const CHAIN_ADAPTERS_FILE = "chain_adapters.safetensors"

const ChainStateJson = Schema.Struct({
  link: Schema.Int.pipe(Schema.nonNegative()),
  linkStart: Schema.Int.pipe(Schema.nonNegative()),
  history: Schema.Array(
    Schema.Struct({
      link: Schema.Int,
      startStep: Schema.Int,
      endStep: Schema.Int,
      rank: Schema.Int,
      modules: Schema.Array(Schema.String)
    })
  ),
  /** Per-module adapter random-stream positions (dropout), so masks continue exactly. */
  randomState: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Array(Schema.Number) }), { default: () => ({}) })
})
type ChainStateJson = typeof ChainStateJson.Encoded

const linkKey = (link: number, moduleName: string, part: "a" | "b" | "rowScale" | "delta") => `link.${link}.${moduleName}.${part}`

/** The chain's checkpoint files. Reads the current adapters back asynchronously (GPU-safe). */
export const chainCheckpointFiles = <Config extends ChainableConfig>(chain: Chain<Config>): Effect.Effect<CheckpointFiles> => {
  const inputs: Array<Safetensors.TensorInput> = []
  for (const record of chain.history) {
    for (const [moduleName, update] of record.updates) {
      const layer = chain.adapters.layers.find((l) => l.name === moduleName)!
      if (update.kind === "factors") {
        inputs.push({ name: linkKey(record.link, moduleName, "a"), dtype: "F32", shape: [update.rank, layer.inFeatures], data: update.a })
        inputs.push({ name: linkKey(record.link, moduleName, "b"), dtype: "F32", shape: [layer.outFeatures, update.rank], data: update.b })
        // A row-scaled (DoRA) link: without its scale the replay and the export would be another model.
        if (update.rowScale !== undefined) inputs.push({ name: linkKey(record.link, moduleName, "rowScale"), dtype: "F32", shape: [layer.outFeatures], data: update.rowScale })
      } else {
        inputs.push({ name: linkKey(record.link, moduleName, "delta"), dtype: "F32", shape: [layer.outFeatures, layer.inFeatures], data: update.delta })
      }
    }
  }
  const state: ChainStateJson = {
    link: chain.link,
    linkStart: chain.currentLinkStart,
    history: chain.history.map((record) => ({ link: record.link, startStep: record.startStep, endStep: record.endStep, rank: record.rank, modules: [...record.updates.keys()] })),
    randomState: chain.adapters.randomState()
  }
  return Effect.acquireUseRelease(
    Effect.sync(() => chain.adapters.stateDict()),
    (adapterTensors) =>
      Effect.map(Effect.promise(() => Safetensors.encodeTensorsAsync(adapterTensors)), (adapters) => ({
        [CHAIN_LINKS_FILE]: Safetensors.encode(inputs),
        [CHAIN_ADAPTERS_FILE]: adapters,
        [CHAIN_STATE_FILE]: `${JSON.stringify(state, null, 2)}\n`
      })),
    (adapterTensors) => Effect.sync(() => Object.values(adapterTensors).forEach((tensor) => tensor.dispose()))
  )
}

export type RestoreChainError = FileError | Safetensors.InvalidSafetensors | InvalidCheckpoint | ShapeMismatch | ConfigError | BackendOutOfMemory

/**
 * Restores a chain saved by `chainCheckpointFiles` from `dir`. `chain` must be freshly made with
 * the same options on the ORIGINAL base model (link 0, nothing merged), with its optimizer
 * attached; restore the optimizer state afterwards. Everything is read and checked before any
 * weight changes, so a bad checkpoint leaves the chain and the model untouched.
 */
export const restoreChain = <Config extends ChainableConfig>(chain: Chain<Config>, dir: string): Effect.Effect<void, RestoreChainError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const statePath = `${dir}/${CHAIN_STATE_FILE}`
    if (chain.link !== 0 || chain.history.length > 0) {
      return yield* new InvalidCheckpoint({ path: statePath, reason: "restore into a freshly made chain (it has already advanced)" })
    }
    const stateBytes = yield* readCheckpointFile(dir, CHAIN_STATE_FILE)
    const json = yield* Effect.try({
      try: () => JSON.parse(new TextDecoder().decode(stateBytes)) as unknown,
      catch: () => new InvalidCheckpoint({ path: statePath, reason: "not JSON" })
    })
    const state = yield* decodeConfig(ChainStateJson, json, "chain_state")
    if (state.link >= chain.links || state.history.length !== state.link) {
      return yield* new InvalidCheckpoint({ path: statePath, reason: `link ${state.link} with ${state.history.length} finished does not fit a chain of ${chain.links} links` })
    }
    const linksPath = `${dir}/${CHAIN_LINKS_FILE}`
    const links = yield* Safetensors.decode(yield* readCheckpointFile(dir, CHAIN_LINKS_FILE), linksPath)
    const views = new Map(links.tensors.map((view) => [view.name, view]))
    const layers = new Map(chain.adapters.layers.map((layer) => [layer.name, layer]))

    // 1. Read and check every finished link (host arrays only; nothing touched yet).
    const history: Array<LinkRecord> = []
    for (const record of state.history) {
      const updates = new Map<string, LinkUpdate>()
      for (const moduleName of record.modules) {
        const layer = layers.get(moduleName)
        if (layer === undefined) return yield* new InvalidCheckpoint({ path: linksPath, tensor: linkKey(record.link, moduleName, "a"), reason: `the chain has no adapted layer '${moduleName}'` })
        const a = views.get(linkKey(record.link, moduleName, "a"))
        const b = views.get(linkKey(record.link, moduleName, "b"))
        const delta = views.get(linkKey(record.link, moduleName, "delta"))
        if (a !== undefined && b !== undefined) {
          const rank = a.shape[0]!
          if (a.shape[1] !== layer.inFeatures) return yield* new ShapeMismatch({ what: linkKey(record.link, moduleName, "a"), expected: [rank, layer.inFeatures], actual: a.shape })
          if (b.shape[0] !== layer.outFeatures || b.shape[1] !== rank) return yield* new ShapeMismatch({ what: linkKey(record.link, moduleName, "b"), expected: [layer.outFeatures, rank], actual: b.shape })
          const rowScale = views.get(linkKey(record.link, moduleName, "rowScale"))
          if (rowScale !== undefined && (rowScale.shape.length !== 1 || rowScale.shape[0] !== layer.outFeatures)) {
            return yield* new ShapeMismatch({ what: linkKey(record.link, moduleName, "rowScale"), expected: [layer.outFeatures], actual: rowScale.shape })
          }
          const scale = rowScale === undefined ? {} : { rowScale: Safetensors.toFloat32(rowScale).slice() }
          updates.set(moduleName, { kind: "factors", rank, a: Safetensors.toFloat32(a).slice(), b: Safetensors.toFloat32(b).slice(), ...scale })
        } else if (delta !== undefined) {
          if (delta.shape[0] !== layer.outFeatures || delta.shape[1] !== layer.inFeatures) return yield* new ShapeMismatch({ what: linkKey(record.link, moduleName, "delta"), expected: [layer.outFeatures, layer.inFeatures], actual: delta.shape })
          updates.set(moduleName, { kind: "dense", delta: Safetensors.toFloat32(delta).slice() })
        } else {
          return yield* new InvalidCheckpoint({ path: linksPath, tensor: linkKey(record.link, moduleName, "a"), reason: "missing" })
        }
      }
      history.push({ link: record.link, startStep: record.startStep, endStep: record.endStep, rank: record.rank, updates })
    }
    const adaptersPath = `${dir}/${CHAIN_ADAPTERS_FILE}`
    const current = yield* Safetensors.decode(yield* readCheckpointFile(dir, CHAIN_ADAPTERS_FILE), adaptersPath)
    const moduleOf = (name: string) => [...layers.keys()].find((moduleName) => name.startsWith(`${moduleName}.`))
    const unknown = current.tensors.find((view) => moduleOf(view.name) === undefined)
    if (unknown !== undefined) return yield* new InvalidCheckpoint({ path: adaptersPath, tensor: unknown.name, reason: "no adapted layer has this name" })

    const byModule = new Map<string, Record<string, tf.Tensor>>()
    for (const view of current.tensors) {
      const moduleName = moduleOf(view.name)!
      const entry = byModule.get(moduleName) ?? {}
      entry[view.name.slice(moduleName.length + 1)] = Safetensors.toTensor(view)
      byModule.set(moduleName, entry)
    }
    const disposeCurrent = Effect.sync(() => byModule.forEach((tensors) => Object.values(tensors).forEach((t) => t.dispose())))

    // PiSSA past a knot: its link's init was drawn from the merged weight, so re-run the knots, then draw and load.
    if (state.link > 0 && foldsInitialUpdate(chain)) {
      yield* resumeRefolded(chain, state.link, state.linkStart, history, byModule, linksPath).pipe(Effect.ensuring(disposeCurrent))
      chain.adapters.setRandomState(state.randomState)
      return
    }

    // 2. Move to the current link and load its adapters; on failure go back to link 0 (W untouched so far).
    chain.resumeAt(state.link, state.linkStart, history)
    yield* attempt(() => {
      for (const { layer, adapter } of chain.adapters.entries) adapter.loadStateDict(byModule.get(layer.name) ?? {})
    }).pipe(
      Effect.ensuring(disposeCurrent),
      Effect.tapError(() => Effect.sync(() => chain.resumeAt(0, 0, [])))
    )

    // 3. Replay the finished links onto W with the knots' float32 ops (validated above: cannot fail).
    for (const record of history) {
      for (const [moduleName, update] of record.updates) {
        const layer = layers.get(moduleName)!
        tf.tidy(() => {
          layer.weight.assign(addLink(layer.weight, layer, update))
        })
      }
    }
    chain.adapters.setRandomState(state.randomState)
  })

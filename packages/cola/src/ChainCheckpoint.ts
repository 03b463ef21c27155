/**
 * Saving and resuming a chain mid-training. A chain's state is small: the finished links' factors
 * (already on the host), the current link's adapter tensors and its position. Resuming replays
 * the finished links onto the ORIGINAL base weights with the same float32 ops the knots used, so
 * the weights come back bit for bit, then loads the current link.
 *
 * These files go into a checkpoint directory next to the optimizer state (see core's
 * `writeCheckpoint` / `restoreOptimizer`).
 */
import { type CheckpointFiles, type FileError, InvalidCheckpoint, readCheckpointFile, Safetensors, ShapeMismatch } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { Chain, LinkRecord, LinkUpdate } from "./Chain.js"

export const CHAIN_STATE_FILE = "chain_state.json"
export const CHAIN_LINKS_FILE = "chain_links.safetensors"
export const CHAIN_ADAPTERS_FILE = "chain_adapters.safetensors"

interface ChainStateJson {
  readonly link: number
  readonly linkStart: number
  readonly history: ReadonlyArray<{ readonly link: number; readonly startStep: number; readonly endStep: number; readonly rank: number; readonly modules: ReadonlyArray<string> }>
}

const linkKey = (link: number, moduleName: string, part: "a" | "b" | "delta") => `link.${link}.${moduleName}.${part}`

/** The chain's checkpoint files. Reads the current adapters back from the device: off the hot path. */
export const chainCheckpointFiles = (chain: Chain<{ readonly r: number }>): CheckpointFiles => {
  const inputs: Array<Safetensors.TensorInput> = []
  for (const record of chain.history) {
    for (const [moduleName, update] of record.updates) {
      const layer = chain.adapters.layers.find((l) => l.name === moduleName)!
      if (update.kind === "factors") {
        inputs.push({ name: linkKey(record.link, moduleName, "a"), dtype: "F32", shape: [update.rank, layer.inFeatures], data: update.a })
        inputs.push({ name: linkKey(record.link, moduleName, "b"), dtype: "F32", shape: [layer.outFeatures, update.rank], data: update.b })
      } else {
        inputs.push({ name: linkKey(record.link, moduleName, "delta"), dtype: "F32", shape: [layer.outFeatures, layer.inFeatures], data: update.delta })
      }
    }
  }
  const state: ChainStateJson = {
    link: chain.link,
    linkStart: chain.currentLinkStart,
    history: chain.history.map((record) => ({ link: record.link, startStep: record.startStep, endStep: record.endStep, rank: record.rank, modules: [...record.updates.keys()] }))
  }
  const adapterTensors = chain.adapters.stateDict()
  try {
    return {
      [CHAIN_LINKS_FILE]: Safetensors.encode(inputs),
      [CHAIN_ADAPTERS_FILE]: Safetensors.encodeTensors(adapterTensors),
      [CHAIN_STATE_FILE]: `${JSON.stringify(state, null, 2)}\n`
    }
  } finally {
    Object.values(adapterTensors).forEach((tensor) => tensor.dispose())
  }
}

export type RestoreChainError = FileError | Safetensors.InvalidSafetensors | InvalidCheckpoint | ShapeMismatch

/**
 * Restores a chain saved by `chainCheckpointFiles` from `dir`. `chain` must be freshly made with
 * the same options on the ORIGINAL base model (link 0, nothing merged). Attach the optimizer
 * before restoring, then restore the optimizer state.
 */
export const restoreChain = (chain: Chain<{ readonly r: number }>, dir: string): Effect.Effect<void, RestoreChainError> =>
  Effect.gen(function* () {
    const statePath = `${dir}/${CHAIN_STATE_FILE}`
    if (chain.link !== 0 || chain.history.length > 0) {
      return yield* new InvalidCheckpoint({ path: statePath, reason: "restore into a freshly made chain (it has already advanced)" })
    }
    const stateBytes = yield* readCheckpointFile(dir, CHAIN_STATE_FILE)
    const state = yield* Effect.try({
      try: () => JSON.parse(new TextDecoder().decode(stateBytes)) as ChainStateJson,
      catch: () => new InvalidCheckpoint({ path: statePath, reason: "not JSON" })
    })
    if (!Number.isInteger(state.link) || state.link >= chain.links || state.history.length !== state.link) {
      return yield* new InvalidCheckpoint({ path: statePath, reason: `link ${state.link} does not fit a chain of ${chain.links} links with ${state.history?.length} finished` })
    }
    const linksPath = `${dir}/${CHAIN_LINKS_FILE}`
    const links = yield* Safetensors.decode(yield* readCheckpointFile(dir, CHAIN_LINKS_FILE), linksPath)
    const views = new Map(links.tensors.map((view) => [view.name, view]))
    const layers = new Map(chain.adapters.layers.map((layer) => [layer.name, layer]))

    // Replay every finished link: W <- W + b a (or + delta), the same float32 ops as at the knot.
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
          if (a.shape[1] !== layer.inFeatures || b.shape[0] !== layer.outFeatures || b.shape[1] !== rank) {
            return yield* new ShapeMismatch({ what: linkKey(record.link, moduleName, "b"), expected: [layer.outFeatures, rank], actual: b.shape })
          }
          const update = { kind: "factors" as const, rank, a: Safetensors.toFloat32(a).slice(), b: Safetensors.toFloat32(b).slice() }
          tf.tidy(() => layer.weight.assign(tf.add(layer.weight, tf.matMul(tf.tensor2d(update.b, [layer.outFeatures, rank]), tf.tensor2d(update.a, [rank, layer.inFeatures])))))
          updates.set(moduleName, update)
        } else if (delta !== undefined) {
          const update = { kind: "dense" as const, delta: Safetensors.toFloat32(delta).slice() }
          tf.tidy(() => layer.weight.assign(tf.add(layer.weight, tf.tensor2d(update.delta, [layer.outFeatures, layer.inFeatures]))))
          updates.set(moduleName, update)
        } else {
          return yield* new InvalidCheckpoint({ path: linksPath, tensor: linkKey(record.link, moduleName, "a"), reason: "missing" })
        }
      }
      history.push({ link: record.link, startStep: record.startStep, endStep: record.endStep, rank: record.rank, updates })
    }
    chain.resumeAt(state.link, state.linkStart, history)

    // The current link's adapter weights.
    const adaptersPath = `${dir}/${CHAIN_ADAPTERS_FILE}`
    const current = yield* Safetensors.decode(yield* readCheckpointFile(dir, CHAIN_ADAPTERS_FILE), adaptersPath)
    const byModule = new Map<string, Record<string, tf.Tensor>>()
    for (const view of current.tensors) {
      const layer = chain.adapters.layers.find((l) => view.name.startsWith(`${l.name}.`))
      if (layer === undefined) {
        Array.from(byModule.values()).forEach((tensors) => Object.values(tensors).forEach((t) => t.dispose()))
        return yield* new InvalidCheckpoint({ path: adaptersPath, tensor: view.name, reason: "no adapted layer has this name" })
      }
      const entry = byModule.get(layer.name) ?? {}
      entry[view.name.slice(layer.name.length + 1)] = Safetensors.toTensor(view)
      byModule.set(layer.name, entry)
    }
    yield* Effect.try({
      try: () => {
        for (const layer of chain.adapters.layers) layer.adapter!.loadStateDict(byModule.get(layer.name) ?? {})
      },
      catch: (error) => error as RestoreChainError
    }).pipe(Effect.ensuring(Effect.sync(() => Array.from(byModule.values()).forEach((tensors) => Object.values(tensors).forEach((t) => t.dispose())))))
  })

/**
 * Resuming a chain whose adapters fold an initial update out of W (PiSSA's s B0 A0) past its first
 * knot. Each link's init is drawn from the weight as its knot left it, but a fresh chain's adapters
 * were drawn (and folded) from the original weight, so the saved A0/B0 would not match them.
 *
 * Re-deriving the init from a weight that is merely close is not enough: a singular pair may come
 * back with the other sign (s B0 A0 is the same, A0 and B0 are not), so the saved file would not
 * load. So the knots are re-run, off the model, with their own float32 ops on the very same inputs,
 * and every init comes back bit for bit:
 * - a whole merge (COLA's) added the adapter's `delta`, relative to the residual. A folding link's
 *   recorded factors are [delta's factors, the negated initial update] (PiSSA: [sB, -sB0] [A; A0]),
 *   and delta is the product of its factors (LoRA's (sB) A), so it is rebuilt from the leading part,
 *   once the tail is checked to be this link's initial update.
 * - a stepped or partial merge added the recorded factors, then the re-initialisation unfolded.
 * Each next link's init and fold come from a probe adapter drawn with the knot's seed
 * (`Chain.initSeedOf`). The current link's probe also loads the file, so a bad file fails here,
 * before the model or the chain changes; the real pass then repeats the last draw on the model from
 * the same weight and seed, and cannot fail. The price: the knots' SVDs run again at resume (the
 * current link's twice, off and on the model).
 */
import { attempt, type Adapter, type AdapterFactors, InvalidCheckpoint, type Linear, type ThrownError } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { Chain, ChainableConfig, LinkRecord, LinkUpdate } from "../Chain.js"
import { addLink } from "./replayLink.js"

/** Whether the chain's adapters fold an initial update out of W (PiSSA's s B0 A0). */
export const foldsInitialUpdate = <Config extends ChainableConfig>(chain: Chain<Config>): boolean =>
  chain.adapters.entries.some(({ adapter }) => adapter.initialDelta !== undefined)

type Probe = (weight: tf.Tensor2D, link: number) => Adapter

/** W + f.b f.a (Linear's unfold) and W - f.b f.a (its fold), the same ops; new tensors. */
const unfolded = (weight: tf.Tensor2D, fold: AdapterFactors | undefined): tf.Tensor2D => (fold === undefined ? weight.clone() : tf.add(weight, tf.matMul(fold.b, fold.a)))
const folded = (weight: tf.Tensor2D, fold: AdapterFactors | undefined): tf.Tensor2D => (fold === undefined ? weight.clone() : tf.sub(weight, tf.matMul(fold.b, fold.a)))

/**
 * What a whole merge added to the residual: the recorded factors less their tail, once the tail is
 * checked to be the link's initial update (to PiSSA's own 1e-4, so a checkpoint from another run fails).
 */
const mergedDelta = (layer: Linear, update: LinkUpdate, fold: AdapterFactors, what: () => InvalidCheckpoint): tf.Tensor2D => {
  if (update.kind !== "factors" || update.rowScale !== undefined || update.rank <= fold.a.shape[0]) throw what()
  const lead = update.rank - fold.a.shape[0]
  const a = tf.tensor2d(update.a, [update.rank, layer.inFeatures])
  const b = tf.tensor2d(update.b, [layer.outFeatures, update.rank])
  const tailA = tf.slice(a, [lead, 0], [-1, -1])
  const tailB = tf.slice(b, [0, lead], [-1, -1])
  const gap = Math.max(tf.max(tf.abs(tf.sub(tailA, fold.a))).dataSync()[0]!, tf.max(tf.abs(tf.add(tailB, fold.b))).dataSync()[0]!)
  const size = Math.max(tf.max(tf.abs(fold.a)).dataSync()[0]!, tf.max(tf.abs(fold.b)).dataSync()[0]!)
  if (!(gap <= 1e-4 * Math.max(size, 1e-30))) throw what()
  return tf.matMul(tf.slice(b, [0, 0], [-1, lead]), tf.slice(a, [0, 0], [lead, -1]))
}

/**
 * `layer`'s weight as the current link's knot left it (before the fold), rebuilt from the fresh
 * chain's residual and fold; loads `current` into the current link's probe. Throws on a bad checkpoint.
 */
const knotWeight = <Config extends ChainableConfig>(
  chain: Chain<Config>,
  layer: Linear,
  history: ReadonlyArray<LinkRecord>,
  probe: Probe,
  current: Readonly<Record<string, tf.Tensor>>,
  linksPath: string
): tf.Tensor2D => {
  // One link at a time, so a long chain holds a few weight-sized tensors, not all of them.
  let residual: tf.Tensor2D = layer.weight.clone()
  let fold = layer.initialDelta()
  const release = () => tf.dispose([residual, ...(fold === undefined ? [] : [fold.a, fold.b])])
  try {
    for (const [link, record] of history.entries()) {
      const update = record.updates.get(layer.name)
      const missing = () => new InvalidCheckpoint({ path: linksPath, tensor: `link.${link}.${layer.name}.a`, reason: "missing, or not factors ending with this link's initial update (saved from another base weight or init)" })
      const weight = tf.tidy((): tf.Tensor2D => {
        if (chain.mergesWhole(link)) {
          if (update === undefined) throw missing()
          // Linear.merge, then commitMerge consumed the fold: W_res + delta.
          return fold === undefined ? addLink(residual, layer, update) : tf.add<tf.Tensor2D>(residual, mergedDelta(layer, update, fold, missing))
        }
        if (!chain.modulesOf(link).has(layer.name)) return unfolded(residual, fold)
        if (update === undefined) throw missing()
        // addRecorded, then the re-initialisation's unfold.
        return unfolded(addLink(residual, layer, update), fold)
      })
      const next = probe(weight, link + 1)
      try {
        if (link + 1 === history.length) {
          next.loadStateDict(current)
          return weight
        }
        const nextFold = next.initialDelta?.()
        const nextResidual = tf.tidy((): tf.Tensor2D => folded(weight, nextFold))
        release()
        residual = nextResidual
        fold = nextFold
      } catch (error) {
        weight.dispose()
        throw error
      } finally {
        next.dispose()
      }
      weight.dispose()
    }
    throw new InvalidCheckpoint({ path: linksPath, reason: "no finished link to resume after" })
  } finally {
    release()
  }
}

/**
 * Moves a freshly made chain to `link` with `history` merged, its adapters drawn as the knot drew
 * them and loaded from `byModule` (tensors by module, keyed like `Adapter.stateDict`). On failure
 * the chain and the model are as before.
 */
export const resumeRefolded = <Config extends ChainableConfig>(
  chain: Chain<Config>,
  link: number,
  linkStart: number,
  history: ReadonlyArray<LinkRecord>,
  byModule: ReadonlyMap<string, Readonly<Record<string, tf.Tensor>>>,
  linksPath: string
): Effect.Effect<void, ThrownError> => {
  const weights = new Map<string, tf.Tensor2D>()
  return Effect.gen(function* () {
    const variant = chain.adapters.variant
    // 1. Off the model: nothing of the chain or W changes, whatever the checkpoint holds.
    yield* attempt(() =>
      chain.adapters.layers.forEach((layer, index) => {
        const probe: Probe = (weight, at) => variant.create({ name: layer.name, inFeatures: layer.inFeatures, outFeatures: layer.outFeatures, weight, bias: layer.bias }, chain.configOf(at), chain.initSeedOf(at, index))
        weights.set(layer.name, knotWeight(chain, layer, history, probe, byModule.get(layer.name) ?? {}, linksPath))
      })
    )

    // 2. On the model, the last draw again from the same weights and seeds (a re-injection by `resumeAt` drew from the old W; redrawn here).
    yield* attempt(() => {
      chain.resumeAt(link, linkStart, history)
      chain.adapters.entries.forEach(({ layer, adapter }, index) => {
        // commitMerge consumes the fold without adding it back (W is overwritten next), so the draw sees exactly the knot's W.
        layer.commitMerge()
        layer.weight.assign(weights.get(layer.name)!)
        layer.reinitializeAdapter(chain.initSeedOf(link, index))
        adapter.loadStateDict(byModule.get(layer.name) ?? {})
      })
    })
  }).pipe(Effect.ensuring(Effect.sync(() => weights.forEach((weight) => weight.dispose()))))
}

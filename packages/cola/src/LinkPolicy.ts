/**
 * What a chain may change from one link to the next: the adapter config, which layers train, and
 * the step size the finished link is merged with. COLA changes none of them (only `ranks`, which the
 * chain applies before the policy); RAC-LoRA draws which factor is frozen, XGBLoRA draws a subset of
 * layers and merges with a boosting step size.
 *
 * A policy is deterministic: its only randomness is the `LinkRandom` the chain hands it, seeded from
 * the chain's seed and the link index, so a resumed run re-derives the same draws without storing them.
 */
import { mixSeed } from "@peftkit/core"
import type { ChainableConfig } from "./Chain.js"

/** A uniform stream in [0, 1), seeded per link and purpose. */
export type LinkRandom = () => number

export interface LinkPolicy<Config extends ChainableConfig = ChainableConfig> {
  /** e.g. "cola", "rac", "xgb". */
  readonly name: string
  /** Link `link`'s adapter config, from `base` (the chain's adapter config with `ranks` applied). */
  configFor<C extends Config>(link: number, base: C, random: LinkRandom): C
  /** The modules link `link` trains: a non-empty subset of `all` (every module the config targets, in module order). */
  modulesFor(link: number, all: ReadonlyArray<string>, random: LinkRandom): ReadonlyArray<string>
  /** The step size link `link` is merged with: W <- W + mergeScale(link) delta. */
  mergeScale(link: number): number
}

/** COLA (Xia, Qin, Hazan 2024): every link is the same adapter on every targeted layer, merged whole. */
export const colaPolicy: LinkPolicy = {
  name: "cola",
  configFor: (_link, base) => base,
  modulesFor: (_link, all) => all,
  mergeScale: () => 1
}

/** Separate streams, so a policy's config draws never shift its layer draws. */
export const CONFIG_STREAM = 0xc0f1
export const MODULES_STREAM = 0x3d0e

/**
 * A seeded uniform stream (mulberry32: 32-bit state, full period, identical in every JS engine),
 * from the chain seed, the link and the stream.
 */
export const linkRandom = (seed: number, link: number, stream: number): LinkRandom => {
  let state = mixSeed(seed, link, stream)
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

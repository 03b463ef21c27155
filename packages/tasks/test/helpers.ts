/**
 * Test fakes: tokenizers whose splits we know by heart and a causal LM whose logits we set.
 */
import type { Tokenizer } from "@peftkit/tokenizers"
import * as tf from "@tensorflow/tfjs-core"
import { existsSync } from "node:fs"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"

export const PAD = 0
export const BOS = 1
export const EOS = 2

/**
 * GPT-2/OPT-like word tokenizer: a piece is a run of non-space characters with the one space
 * before it (" great"), or a single whitespace character ("\n"). Ids are handed out on first
 * sight from 3 up (deterministic for a deterministic sequence of calls), BOS prepended by default.
 */
export const wordTokenizer = (maxVocab = 4096): Tokenizer & { readonly pieces: (ids: ReadonlyArray<number>) => Array<string> } => {
  const ids = new Map<string, number>()
  const byId: Array<string> = ["<pad>", "<s>", "</s>"]
  const idOf = (piece: string): number => {
    let id = ids.get(piece)
    if (id === undefined) {
      id = byId.length
      if (id >= maxVocab) throw new Error(`fake vocabulary of ${maxVocab} exhausted`)
      ids.set(piece, id)
      byId.push(piece)
    }
    return id
  }
  return {
    vocabSize: maxVocab,
    bosTokenId: BOS,
    eosTokenId: EOS,
    padTokenId: PAD,
    encode: (text, options) => [...(options?.addSpecialTokens === false ? [] : [BOS]), ...(text.match(/ ?[^\s]+|\s/g) ?? []).map(idOf)],
    decode: (list, options) => list.filter((id) => !(options?.skipSpecialTokens && id < 3)).map((id) => byId[id] ?? "?").join(""),
    pieces: (list) => list.map((id) => byId[id] ?? "?")
  }
}

/** One token per character (code point + 3, ASCII only), BOS prepended: the space is a token of its own. */
export const charTokenizer = (): Tokenizer => ({
  vocabSize: 131,
  bosTokenId: BOS,
  eosTokenId: EOS,
  padTokenId: PAD,
  encode: (text, options) => {
    const out = options?.addSpecialTokens === false ? [] : [BOS]
    for (const ch of text) {
      const c = ch.codePointAt(0)!
      if (c >= 128) throw new Error(`charTokenizer is ASCII only: ${JSON.stringify(ch)}`)
      out.push(c + 3)
    }
    return out
  },
  decode: (list) => list.filter((id) => id >= 3).map((id) => String.fromCodePoint(id - 3)).join("")
})

/**
 * A causal LM whose logits depend on the current token only: logits[b, t, :] = table[ids[b, t], :].
 * Records the attention masks it was given.
 */
export class BigramModel {
  readonly masks: Array<Array<Array<number>>> = []
  readonly calls: Array<ReadonlyArray<number>> = []
  constructor(readonly table: ReadonlyArray<ReadonlyArray<number>>) {}

  forward(inputIds: tf.Tensor2D, options?: { readonly attentionMask?: tf.Tensor2D }): tf.Tensor3D {
    this.calls.push(inputIds.shape)
    if (options?.attentionMask !== undefined) this.masks.push(options.attentionMask.arraySync())
    return tf.tidy(() => tf.gather(tf.tensor2d(this.table as Array<Array<number>>), inputIds) as tf.Tensor as tf.Tensor3D)
  }

  /** log p(next | current) in float64, for expected values. */
  logProb(current: number, next: number): number {
    const row = this.table[current]!
    const max = Math.max(...row)
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0))
    return row[next]! - lse
  }
}

/** A deterministic pseudo-random table in [-scale, scale] (mulberry32). */
export const randomTable = (rows: number, cols: number, seed: number, scale = 3): Array<Array<number>> => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => (next() * 2 - 1) * scale))
}

/** The repository root (this file is packages/tasks/test/helpers.ts). */
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))

/** `../shared/data` resolved from the repository root, or undefined when it is absent. */
export const sharedData: string | undefined = (() => {
  const dir = resolve(repoRoot, "../shared/data")
  return existsSync(`${dir}/glue/SST-2/train.tsv`) && existsSync(`${dir}/superglue/RTE/train.jsonl`) ? dir : undefined
})()

/** Returns the shared data directory, or skips the calling test with the reason. */
export const needSharedData = (ctx: { readonly skip: (note?: string) => never }): string =>
  sharedData ?? ctx.skip("../shared/data (the GLUE/SuperGLUE files) is absent from this checkout's parent directory")

/**
 * A causal LM whose logits depend on the current token and on the example's first token after
 * BOS (position 1): logits[b, t, :] = table[ids[b, t], :] + bias[ids[b, 1], :]. Lets a test
 * decide, per example, which label word is more likely.
 */
export class FirstTokenModel {
  forwards = 0
  constructor(readonly table: ReadonlyArray<ReadonlyArray<number>>, readonly bias: ReadonlyArray<ReadonlyArray<number>>) {}

  forward(inputIds: tf.Tensor2D): tf.Tensor3D {
    this.forwards++
    return tf.tidy(() => {
      const base = tf.gather(tf.tensor2d(this.table as Array<Array<number>>), inputIds)
      const first = tf.reshape(tf.slice(inputIds, [0, 1], [-1, 1]), [-1])
      const shift = tf.expandDims(tf.gather(tf.tensor2d(this.bias as Array<Array<number>>), first), 1)
      return tf.add(base, shift) as tf.Tensor3D
    })
  }

  logProb(first: number, current: number, next: number): number {
    const row = this.table[current]!.map((x, v) => x + this.bias[first]![v]!)
    const max = Math.max(...row)
    return row[next]! - (max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0)))
  }
}

export const zeros = (rows: number, cols: number): Array<Array<number>> => Array.from({ length: rows }, () => new Array<number>(cols).fill(0))

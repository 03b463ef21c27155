/**
 * The llama2.c tokenizer (`tokenizer.bin`, `tok512.bin`, ...): a sentencepiece BPE vocabulary exported
 * by karpathy's llama2.c. Encoding reproduces llama2.c's `encode` exactly (same ids for the same text),
 * decoding reproduces its `decode` (leading space dropped after BOS, `<0xXX>` byte pieces turned into
 * bytes) with the bytes of the whole sequence decoded as UTF-8 at the end, so characters split across
 * byte tokens come back whole.
 *
 * File format: int32 `max_token_length`, then per token: float32 score, int32 byte length, the bytes
 * (all little-endian). The file does not store the vocabulary size: without `vocabSize` the whole file
 * is read; with it (the model header's vocab_size) exactly that many entries are read, as llama2.c does.
 */
import type { FileSystem } from "@effect/platform"
import { InvalidCheckpoint } from "@peftkit/core"
import { Effect } from "effect"
import type { FileError } from "@peftkit/core"
import { readBytes } from "./internal/files.js"
import type { EncodeOptions, Tokenizer } from "./Tokenizer.js"

/** llama2.c's fixed special ids. */
export const LLAMA2C_UNK_ID = 0
export const LLAMA2C_BOS_ID = 1
export const LLAMA2C_EOS_ID = 2
/** Byte-fallback tokens: byte b is id b + 3. */
export const LLAMA2C_BYTE_OFFSET = 3

/** llama2.c starts `best_score` at -1e10: pairs scoring at or below it never merge. */
const NO_SCORE = -1e10

export interface Llama2cTokenizerOptions {
  /** Entries to read (the model's vocab_size); default: every entry in the file. */
  readonly vocabSize?: number
  /** Named in errors. */
  readonly path?: string
}

/** Bytes as a "binary string" (one char per byte): exact byte-wise keys for Map lookups. */
const binary = (bytes: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i]!)
  return out
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/

/** A node of the merge list: a token at `position` (its first character's index; order-preserving). */
interface Node {
  id: number
  readonly position: number
  prev: Node | undefined
  next: Node | undefined
  alive: boolean
}

/** A candidate merge of `left` with its right neighbour, valid while both are alive and adjacent. */
interface Candidate {
  readonly left: Node
  readonly right: Node
  readonly id: number
  readonly score: number
}

/** llama2.c picks the best score, and among equal scores the leftmost pair. */
const before = (a: Candidate, b: Candidate): boolean => a.score > b.score || (a.score === b.score && a.left.position < b.left.position)

class Heap {
  private readonly items: Array<Candidate> = []
  get size(): number {
    return this.items.length
  }
  push(item: Candidate): void {
    const items = this.items
    items.push(item)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(items[i]!, items[parent]!)) break
      ;[items[i], items[parent]] = [items[parent]!, items[i]!]
      i = parent
    }
  }
  pop(): Candidate | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0 && last !== undefined) {
      items[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let best = i
        if (l < items.length && before(items[l]!, items[best]!)) best = l
        if (r < items.length && before(items[r]!, items[best]!)) best = r
        if (best === i) break
        ;[items[i], items[best]] = [items[best]!, items[i]!]
        i = best
      }
    }
    return top
  }
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosTokenId = LLAMA2C_BOS_ID
  readonly eosTokenId = LLAMA2C_EOS_ID
  /** llama2.c has no pad token: EOS, as the contract says. */
  readonly padTokenId = LLAMA2C_EOS_ID
  readonly unkTokenId = LLAMA2C_UNK_ID
  /** llama2.c tokenizers have no chat template. */
  readonly applyChatTemplate: undefined = undefined
  /** The file's `max_token_length` header field. */
  readonly maxTokenLength: number
  /** Each token's bytes, by id. */
  readonly pieces: ReadonlyArray<Uint8Array>
  /** Each token's merge score, by id (float32 values). */
  readonly scores: Float32Array
  /** Byte value of each `<0xXX>` piece (-1 for other pieces), by id. */
  private readonly byteValue: Int16Array
  /** Binary-string piece -> id; the first id wins when a piece repeats. */
  private readonly lookup: Map<string, number>
  private readonly binaryPieces: ReadonlyArray<string>
  private readonly spaceId: number | undefined

  private constructor(maxTokenLength: number, pieces: ReadonlyArray<Uint8Array>, scores: Float32Array) {
    this.maxTokenLength = maxTokenLength
    this.pieces = pieces
    this.scores = scores
    this.vocabSize = pieces.length
    this.binaryPieces = pieces.map(binary)
    this.lookup = new Map()
    this.byteValue = new Int16Array(pieces.length).fill(-1)
    this.binaryPieces.forEach((piece, id) => {
      if (!this.lookup.has(piece)) this.lookup.set(piece, id)
      const match = BYTE_PIECE.exec(piece)
      if (match !== null) this.byteValue[id] = parseInt(match[1]!, 16)
    })
    this.spaceId = this.lookup.get(" ")
  }

  /**
   * Parses a llama2.c tokenizer file. Throws `InvalidCheckpoint` (naming `options.path`) for a
   * truncated or malformed file.
   */
  static fromBytes(bytes: Uint8Array, options: Llama2cTokenizerOptions = {}): Llama2cTokenizer {
    const path = options.path ?? "<bytes>"
    const fail = (reason: string) => new InvalidCheckpoint({ path, reason: `llama2.c tokenizer: ${reason}` })
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    if (bytes.byteLength < 4) throw fail(`file is ${bytes.byteLength} bytes, shorter than its 4-byte header`)
    const maxTokenLength = view.getInt32(0, true)
    if (maxTokenLength <= 0) throw fail(`max_token_length is ${maxTokenLength}`)
    const wanted = options.vocabSize
    if (wanted !== undefined && !(Number.isInteger(wanted) && wanted > 0)) throw fail(`vocabSize must be a positive integer, got ${wanted}`)
    const pieces: Array<Uint8Array> = []
    const scores: Array<number> = []
    let offset = 4
    while (wanted === undefined ? offset < bytes.byteLength : pieces.length < wanted) {
      const id = pieces.length
      if (offset + 8 > bytes.byteLength) {
        throw fail(wanted === undefined ? `entry ${id} is truncated at byte ${offset}` : `file holds ${id} entries, fewer than vocabSize ${wanted}`)
      }
      const score = view.getFloat32(offset, true)
      const length = view.getInt32(offset + 4, true)
      offset += 8
      if (length < 0 || length > maxTokenLength) throw fail(`entry ${id} has length ${length}, outside [0, max_token_length ${maxTokenLength}]`)
      if (offset + length > bytes.byteLength) throw fail(`entry ${id} (${length} bytes at byte ${offset}) runs past the end of the file`)
      pieces.push(bytes.slice(offset, offset + length))
      scores.push(score)
      offset += length
    }
    if (pieces.length <= LLAMA2C_BYTE_OFFSET + 255) {
      throw fail(`${pieces.length} entries: a llama2.c vocabulary has <unk>, <s>, </s> and 256 byte tokens first`)
    }
    return new Llama2cTokenizer(maxTokenLength, pieces, Float32Array.from(scores))
  }

  /** The piece of `id` as text (byte pieces stay `<0xXX>`; invalid UTF-8 becomes U+FFFD). */
  piece(id: number): string {
    return new TextDecoder().decode(this.pieceBytes(id))
  }

  /** The id of a piece given as text, if it is in the vocabulary. */
  tokenToId(piece: string): number | undefined {
    return this.lookup.get(binary(new TextEncoder().encode(piece)))
  }

  /**
   * llama2.c's `encode(text, bos, eos=0)`: BOS (unless `addSpecialTokens: false`), the dummy-prefix
   * token " " for non-empty text, one token per UTF-8 character (its bytes as byte tokens when the
   * character is not a piece), then repeated merges of the adjacent pair whose concatenation is a piece
   * with the highest score (leftmost on ties). A heap finds the same pair llama2.c's linear scan does.
   */
  encode(text: string, options?: EncodeOptions): ReadonlyArray<number> {
    const ids: Array<number> = []
    if (options?.addSpecialTokens ?? true) ids.push(LLAMA2C_BOS_ID)
    if (text.length > 0) {
      // llama2.c pushes whatever str_lookup(" ") returns; a vocabulary without " " would give -1 there.
      if (this.spaceId === undefined) throw new RangeError("llama2.c tokenizer: the vocabulary has no \" \" piece for the dummy prefix")
      ids.push(this.spaceId)
    }
    const bytes = new TextEncoder().encode(text)
    let start = 0
    while (start < bytes.length) {
      // A character: its lead byte, then continuation bytes (10xxxxxx), at most 4 bytes in all.
      let end = start + 1
      while (end < bytes.length && (bytes[end]! & 0xc0) === 0x80 && end - start < 4) end++
      const char = bytes.subarray(start, end)
      const id = this.lookup.get(binary(char))
      if (id !== undefined) ids.push(id)
      else for (const byte of char) ids.push(byte + LLAMA2C_BYTE_OFFSET)
      start = end
    }
    return this.merge(ids)
  }

  private merge(ids: Array<number>): Array<number> {
    if (ids.length < 2) return ids
    const nodes: Array<Node> = ids.map((id, position) => ({ id, position, prev: undefined, next: undefined, alive: true }))
    for (let i = 0; i < nodes.length; i++) {
      nodes[i]!.prev = nodes[i - 1]
      nodes[i]!.next = nodes[i + 1]
    }
    const heap = new Heap()
    const consider = (left: Node | undefined) => {
      const right = left?.next
      if (left === undefined || right === undefined) return
      const id = this.lookup.get(this.binaryPieces[left.id]! + this.binaryPieces[right.id]!)
      if (id === undefined) return
      const score = this.scores[id]!
      if (score > NO_SCORE) heap.push({ left, right, id, score })
    }
    for (const node of nodes) consider(node)
    let head: Node | undefined = nodes[0]
    while (heap.size > 0) {
      const candidate = heap.pop()!
      const { left, right } = candidate
      // Stale: one side was merged away, or the pair is no longer adjacent.
      if (!left.alive || !right.alive || left.next !== right) continue
      // The merged token replaces `left` (keeping its position) and `right` disappears, as in llama2.c.
      const merged: Node = { id: candidate.id, position: left.position, prev: left.prev, next: right.next, alive: true }
      left.alive = false
      right.alive = false
      if (merged.prev !== undefined) merged.prev.next = merged
      else head = merged
      if (merged.next !== undefined) merged.next.prev = merged
      consider(merged.prev)
      consider(merged)
    }
    const out: Array<number> = []
    for (let node: Node | undefined = head; node !== undefined; node = node.next) out.push(node.id)
    return out
  }

  /**
   * llama2.c's `decode` over a sequence: a piece right after BOS loses its leading space (as does the
   * first piece, where the dummy prefix sits when the sequence has no BOS, as sentencepiece does),
   * `<0xXX>` pieces become the byte, and the bytes are decoded as UTF-8 at the end. Special tokens
   * (`<unk>`, BOS, EOS) are dropped with `skipSpecialTokens`, else written as `<unk>`, `<s>`, `</s>`.
   */
  decode(ids: ReadonlyArray<number>, options?: { readonly skipSpecialTokens?: boolean }): string {
    const skip = options?.skipSpecialTokens ?? false
    const out: Array<number> = []
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`)
      if (id === LLAMA2C_UNK_ID || id === LLAMA2C_BOS_ID || id === LLAMA2C_EOS_ID) {
        if (!skip) for (const byte of new TextEncoder().encode(["<unk>", "<s>", "</s>"][id]!)) out.push(byte)
        return
      }
      const byte = this.byteValue[id]!
      if (byte >= 0) {
        out.push(byte)
        return
      }
      const piece = this.pieces[id]!
      const strip = (i === 0 || ids[i - 1] === LLAMA2C_BOS_ID) && piece[0] === 0x20
      for (let k = strip ? 1 : 0; k < piece.length; k++) out.push(piece[k]!)
    })
    return new TextDecoder().decode(Uint8Array.from(out))
  }

  private pieceBytes(id: number): Uint8Array {
    const piece = this.pieces[id]
    if (piece === undefined) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`)
    return piece
  }
}

/** Reads a llama2.c tokenizer file: `FileError` when unreadable, `InvalidCheckpoint` when malformed. */
export const readLlama2cTokenizer = (
  path: string,
  options: Omit<Llama2cTokenizerOptions, "path"> = {}
): Effect.Effect<Llama2cTokenizer, FileError | InvalidCheckpoint, FileSystem.FileSystem> =>
  Effect.flatMap(readBytes(path), (bytes) =>
    Effect.try({
      try: () => Llama2cTokenizer.fromBytes(bytes, { ...options, path }),
      catch: (error) => (error instanceof InvalidCheckpoint ? error : new InvalidCheckpoint({ path, reason: String(error) }))
    })
  )

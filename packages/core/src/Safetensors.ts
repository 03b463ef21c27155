/**
 * The safetensors file format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON describing each tensor's dtype, shape and byte range, then
 * the raw little-endian row-major data. Decoding validates everything the reference (Rust)
 * implementation validates, so files we write load in PyTorch/HF and malformed files are rejected
 * as they are there: header UTF-8 starting with '{', dtypes, shape x dtype size = the offsets' span,
 * offsets that cover the data section without holes, overlaps or trailing bytes, `shape` and
 * `data_offsets` numbers written as plain digits (serde's usize refuses `8.0`), no lone surrogates
 * (serde_json refuses them), no duplicate `__metadata__` or entry fields. Stricter than the reference:
 * a tensor name given twice is refused (serde would keep the last). The FP8/FP4/FP6 and complex dtypes are not supported (rejected as
 * `unknown-dtype`). tfjs has only float32/int32/bool, so `toTensor` widens F16/BF16 and narrows F64/I64.
 */
import { Data, Effect } from "effect"
import * as tf from "@tensorflow/tfjs-core"

/** Why a safetensors file (or a tensor to encode) was rejected. */
export type InvalidSafetensorsReason =
  | "truncated"
  | "header-too-large"
  | "header-not-json"
  | "header-not-object"
  | "bad-entry"
  | "unknown-dtype"
  | "bad-shape"
  | "size-mismatch"
  | "out-of-bounds"
  | "overlap"
  | "hole"
  | "trailing-bytes"
  | "bad-metadata"
  | "out-of-range"
  | "unsupported-dtype"
  | "duplicate-key"
  | "bad-name"

export class InvalidSafetensors extends Data.TaggedError("InvalidSafetensors")<{
  readonly reason: InvalidSafetensorsReason
  readonly detail: string
  readonly tensor?: string
  readonly path?: string
}> {
  override get message(): string {
    const where = this.path === undefined ? "safetensors data" : `safetensors file ${this.path}`
    const tensor = this.tensor === undefined ? "" : ` (tensor '${this.tensor}')`
    return `invalid ${where}${tensor}: ${this.reason}: ${this.detail}`
  }
}

/** Bytes per element of each supported dtype, as in the spec. */
export const dtypeSizes = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1
} as const

export type Dtype = keyof typeof dtypeSizes

export const isDtype = (value: unknown): value is Dtype =>
  typeof value === "string" && Object.prototype.hasOwnProperty.call(dtypeSizes, value)

/** One tensor of a decoded file. `data` is a view into the file's bytes, not a copy. */
export interface TensorView {
  readonly name: string
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  readonly data: Uint8Array
}

/** A decoded file; `tensors` are in data order (sorted by offset). */
export interface SafetensorsFile {
  readonly metadata: Readonly<Record<string, string>>
  readonly tensors: ReadonlyArray<TensorView>
}

export type TypedArray =
  | Float64Array
  | Float32Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint32Array
  | Uint16Array
  | Uint8Array
  | BigInt64Array
  | BigUint64Array

/**
 * A tensor to encode. `data` is either the dtype's natural array (Float32Array for F32, Uint16Array
 * of raw bits for F16/BF16, BigInt64Array for I64, Uint8Array of 0/1 for BOOL, ...) with one element
 * per entry, or a Uint8Array of raw little-endian bytes. F16/BF16 also accept a Float32Array, which
 * is rounded to nearest even.
 */
export interface TensorInput {
  readonly name: string
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  readonly data: TypedArray
}

/** The reference implementation's limit; it keeps a hostile N from allocating gigabytes. */
export const MAX_HEADER_SIZE = 100_000_000

const METADATA_KEY = "__metadata__"

// Typed arrays use the host byte order; the format is little-endian. Every practical JS host is
// little-endian, but swapping on the rare big-endian one costs nothing where it is not needed.
const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

const swapBytes = (bytes: Uint8Array, size: number): void => {
  if (size === 1) return
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a]!
      bytes[a] = bytes[b]!
      bytes[b] = t
    }
  }
}

/** A host-order typed-array view of little-endian `bytes`, copying only when unaligned or big-endian. */
const hostView = <A>(bytes: Uint8Array, size: number, make: (buffer: ArrayBufferLike, offset: number, length: number) => A): A => {
  const length = bytes.byteLength / size
  if (hostIsLittleEndian && bytes.byteOffset % size === 0) return make(bytes.buffer, bytes.byteOffset, length)
  const copy = bytes.slice()
  if (!hostIsLittleEndian) swapBytes(copy, size)
  return make(copy.buffer, 0, length)
}

const fail = (reason: InvalidSafetensorsReason, detail: string, tensor?: string, path?: string): never => {
  throw new InvalidSafetensors({
    reason,
    detail,
    ...(tensor === undefined ? {} : { tensor }),
    ...(path === undefined ? {} : { path })
  })
}

// Number.MAX_SAFE_INTEGER stands in for "overflowed": no real byte count gets there, so a shape
// whose size overflows can never match its offsets and is reported as a size mismatch.
const elementCount = (shape: ReadonlyArray<number>): number => {
  let count = 1
  for (const dim of shape) {
    if (dim === 0) return 0
    count = Math.min(count * dim, Number.MAX_SAFE_INTEGER)
  }
  return count
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const isOffset = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

interface Entry {
  readonly name: string
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  readonly begin: number
  readonly end: number
}

const parseEntry = (name: string, value: unknown, dataLength: number, path: string | undefined): Entry => {
  if (!isPlainObject(value)) return fail("bad-entry", "entry is not an object", name, path)
  const { dtype, shape, data_offsets: offsets } = value
  if (typeof dtype !== "string") return fail("bad-entry", "missing or non-string 'dtype'", name, path)
  if (!isDtype(dtype)) return fail("unknown-dtype", `dtype '${dtype}' is not supported`, name, path)
  if (!Array.isArray(shape)) return fail("bad-entry", "missing or non-array 'shape'", name, path)
  for (const dim of shape) {
    if (!isOffset(dim)) return fail("bad-shape", `shape [${shape.map(String).join(", ")}] has a dimension that is not a non-negative integer`, name, path)
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isOffset(offsets[0]) || !isOffset(offsets[1])) {
    return fail("bad-entry", "'data_offsets' must be [begin, end] with non-negative integers", name, path)
  }
  const [begin, end] = offsets as [number, number]
  if (end < begin) return fail("bad-entry", `data_offsets [${begin}, ${end}] end before begin`, name, path)
  const expected = elementCount(shape as ReadonlyArray<number>) * dtypeSizes[dtype]
  if (end - begin !== expected) {
    return fail("size-mismatch", `data_offsets [${begin}, ${end}] span ${end - begin} bytes, ${dtype}[${shape.join(", ")}] needs ${expected}`, name, path)
  }
  if (end > dataLength) return fail("out-of-bounds", `data_offsets [${begin}, ${end}] exceed the ${dataLength}-byte data section`, name, path)
  return { name, dtype, shape: shape as ReadonlyArray<number>, begin, end }
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

// An unpaired UTF-16 surrogate: JSON's "\ud800" escape makes one, UTF-8 cannot hold it, and
// serde_json refuses it ("lone leading surrogate in hex escape").
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/
const hasLoneSurrogate = (text: string): boolean => LONE_SURROGATE.test(text)

const DIGITS = /^(?:0|[1-9][0-9]*)$/
const NUMBER_CHAR = /[-+0-9.eE]/

/**
 * What JSON.parse hides and the reference reader does not accept, checked on the raw header text
 * (already known to be valid JSON): a key given twice in the top-level object or in one entry
 * (serde reports a duplicate `__metadata__` or entry field; for tensor names it would keep the last
 * silently, we refuse), and a `shape` or `data_offsets` number not written as plain digits (`8.0`,
 * `8e0`, `-0`: serde's usize refuses them). One pass, no allocation per character.
 */
const scanHeaderText = (text: string, path: string | undefined): void => {
  // One frame per open container: whether it is an object, and the keys seen in it (depth <= 2).
  const stack: Array<{ readonly object: boolean; readonly keys: Set<string> | undefined; key: string | undefined }> = []
  let expectKey = false
  let tensor: string | undefined
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (c === '"') {
      let j = i + 1
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1
      if (expectKey) {
        const frame = stack[stack.length - 1]!
        const key = JSON.parse(text.slice(i, j + 1)) as string
        if (frame.keys !== undefined) {
          if (frame.keys.has(key)) {
            const detail = stack.length === 1 ? (key === METADATA_KEY ? "the header has two __metadata__ objects" : "the header names this tensor twice") : `field '${key}' appears twice`
            fail("duplicate-key", detail, stack.length === 1 ? (key === METADATA_KEY ? undefined : key) : tensor, path)
          }
          frame.keys.add(key)
        }
        frame.key = key
        if (stack.length === 1) tensor = key
        expectKey = false
      }
      i = j
    } else if (c === "{" || c === "[") {
      stack.push({ object: c === "{", keys: c === "{" && stack.length < 2 ? new Set() : undefined, key: undefined })
      expectKey = c === "{"
    } else if (c === "}" || c === "]") {
      stack.pop()
    } else if (c === ",") {
      expectKey = stack[stack.length - 1]!.object
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      let j = i + 1
      while (j < text.length && NUMBER_CHAR.test(text[j]!)) j++
      const field = stack.length === 3 && !stack[2]!.object && tensor !== METADATA_KEY ? stack[1]!.key : undefined
      if ((field === "shape" || field === "data_offsets") && !DIGITS.test(text.slice(i, j))) {
        fail(field === "shape" ? "bad-shape" : "bad-entry", `'${field}' holds ${text.slice(i, j)}, not an integer written in digits`, tensor, path)
      }
      i = j - 1
    }
  }
}
const utf8Encoder = new TextEncoder()

/**
 * The byte offset of the first invalid UTF-8 sequence in `bytes` (overlong forms, surrogates, code
 * points past U+10FFFF and truncated sequences included), or undefined when all of it is valid.
 * For error messages: decode with `TextDecoder(..., { fatal: true })` and call this on failure.
 */
export const invalidUtf8Offset = (bytes: Uint8Array): number | undefined => {
  const n = bytes.length
  let i = 0
  while (i < n) {
    const b = bytes[i]!
    if (b < 0x80) {
      i++
      continue
    }
    const need = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0
    if (need === 0 || i + need >= n) return i
    const b1 = bytes[i + 1]!
    if ((b === 0xe0 && b1 < 0xa0) || (b === 0xed && b1 > 0x9f) || (b === 0xf0 && b1 < 0x90) || (b === 0xf4 && b1 > 0x8f)) return i
    for (let k = 1; k <= need; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i
    i += need + 1
  }
  return undefined
}

/** Decodes and validates a whole file; throws `InvalidSafetensors`. Tensor data are views into `bytes`. */
/** Where each tensor's bytes are, relative to the data section at `dataStart`. */
export interface SafetensorsLayout {
  readonly metadata: Readonly<Record<string, string>>
  /** Byte offset of the data section in the file (8 + header length). */
  readonly dataStart: number
  readonly entries: ReadonlyArray<{ readonly name: string; readonly dtype: Dtype; readonly shape: ReadonlyArray<number>; readonly begin: number; readonly end: number }>
}

/**
 * Validates a file from its first bytes and its total length alone: everything `decode` checks but
 * the data itself (header bounds and JSON, dtypes, shapes and sizes, offsets without holes, overlaps
 * or trailing bytes). `prefix` must hold at least the 8-byte length and the header. Lets a loader
 * read tensors one at a time instead of the whole file.
 */
export const decodeLayoutSync = (prefix: Uint8Array, fileLength: number, path?: string): SafetensorsLayout => {
  if (fileLength < 8 || prefix.byteLength < 8) return fail("truncated", `file is ${fileLength} bytes, shorter than the 8-byte header length`, undefined, path)
  const headerLength = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true)
  if (headerLength > BigInt(MAX_HEADER_SIZE)) {
    return fail("header-too-large", `header length ${headerLength} exceeds ${MAX_HEADER_SIZE}`, undefined, path)
  }
  const n = Number(headerLength)
  if (8 + n > fileLength || 8 + n > prefix.byteLength) {
    return fail("truncated", `header length ${n} needs ${8 + n} bytes, file has ${fileLength}`, undefined, path)
  }
  const headerBytes = prefix.subarray(8, 8 + n)
  // The spec requires the JSON to start with '{' (trailing space padding is allowed, leading is not).
  if (headerBytes[0] !== 0x7b) return fail("header-not-object", "header does not begin with '{'", undefined, path)
  let header: unknown
  let text: string
  try {
    text = utf8Decoder.decode(headerBytes)
    header = JSON.parse(text)
  } catch (error) {
    const bad = invalidUtf8Offset(headerBytes)
    return fail("header-not-json", bad === undefined ? (error instanceof Error ? error.message : String(error)) : `header is not valid UTF-8 at byte ${8 + bad}`, undefined, path)
  }
  if (!isPlainObject(header)) return fail("header-not-object", "header JSON is not an object", undefined, path)
  scanHeaderText(text, path)

  const dataLength = fileLength - 8 - n
  let metadata: Record<string, string> = {}
  const entries: Array<Entry> = []
  for (const [name, value] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      // The reference implementation reads `__metadata__` as Option<HashMap<String, String>>: null is "absent".
      if (value === null) continue
      if (!isPlainObject(value)) return fail("bad-metadata", "__metadata__ is not an object", undefined, path)
      for (const [key, item] of Object.entries(value)) {
        if (typeof item !== "string") return fail("bad-metadata", `__metadata__['${key}'] is not a string`, undefined, path)
        if (hasLoneSurrogate(key) || hasLoneSurrogate(item)) return fail("bad-metadata", `__metadata__ entry ${JSON.stringify(key)} holds a lone UTF-16 surrogate`, undefined, path)
      }
      // fromEntries defines own properties, so a key like "__proto__" cannot reach the prototype.
      metadata = Object.fromEntries(Object.entries(value as Record<string, string>))
      continue
    }
    if (hasLoneSurrogate(name)) return fail("bad-name", `tensor name ${JSON.stringify(name)} holds a lone UTF-16 surrogate`, undefined, path)
    entries.push(parseEntry(name, value, dataLength, path))
  }

  // Array.prototype.sort is stable, so zero-size tensors sharing an offset keep header order.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end)
  let cursor = 0
  for (const entry of entries) {
    if (entry.begin < cursor) {
      return fail("overlap", `data_offsets [${entry.begin}, ${entry.end}] overlap the previous tensor, which ends at ${cursor}`, entry.name, path)
    }
    if (entry.begin > cursor) {
      const detail = cursor === 0 ? `data starts at ${entry.begin}, not 0` : `${entry.begin - cursor} unused bytes before this tensor (previous ends at ${cursor})`
      return fail("hole", detail, entry.name, path)
    }
    cursor = entry.end
  }
  if (cursor !== dataLength) {
    return fail("trailing-bytes", `data section is ${dataLength} bytes, tensors end at ${cursor}`, undefined, path)
  }
  return { metadata, dataStart: 8 + n, entries }
}

export const decodeSync = (bytes: Uint8Array, path?: string): SafetensorsFile => {
  const layout = decodeLayoutSync(bytes, bytes.byteLength, path)
  const data = bytes.subarray(layout.dataStart)
  return {
    metadata: layout.metadata,
    tensors: layout.entries.map(({ name, dtype, shape, begin, end }) => ({ name, dtype, shape, data: data.subarray(begin, end) }))
  }
}

/** Decodes and validates a whole file. Tensor data are views into `bytes`. */
export const decode = (bytes: Uint8Array, path?: string): Effect.Effect<SafetensorsFile, InvalidSafetensors> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(decodeSync(bytes, path))
    } catch (error) {
      // Anything but our own error is a bug, and stays a defect.
      if (error instanceof InvalidSafetensors) return Effect.fail(error)
      throw error
    }
  })

// ---------------------------------------------------------------------------------------------
// Half-precision conversions

let f16Table: Uint32Array | undefined

const f16BitsToF32Bits = (h: number): number => {
  const sign = (h & 0x8000) << 16
  const exponent = (h >>> 10) & 0x1f
  let mantissa = h & 0x3ff
  if (exponent === 0x1f) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0 // inf, or NaN with its payload
  if (exponent !== 0) return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0
  if (mantissa === 0) return sign >>> 0
  // Subnormal: normalise so the leading 1 becomes the implicit bit of an f32 normal.
  let e = 113
  while ((mantissa & 0x400) === 0) {
    mantissa <<= 1
    e--
  }
  return (sign | (e << 23) | ((mantissa & 0x3ff) << 13)) >>> 0
}

/** The float32 value of an IEEE binary16 bit pattern; exact (every f16 is an f32). */
export const f16BitsToNumber = (bits: number): number => {
  const out = new Float32Array(1)
  new Uint32Array(out.buffer)[0] = f16BitsToF32Bits(bits & 0xffff)
  return out[0]!
}

/** The float32 value of a bfloat16 bit pattern; exact (bf16 is the top half of an f32). */
export const bf16BitsToNumber = (bits: number): number => {
  const out = new Float32Array(1)
  new Uint32Array(out.buffer)[0] = ((bits & 0xffff) << 16) >>> 0
  return out[0]!
}

/** Widens f16 bit patterns to float32, exactly (subnormals, ±inf and NaN payloads included). */
export const f16ToF32 = (bits: Uint16Array): Float32Array => {
  // A 256 KiB table turns the widening of a multi-megabyte weight into one lookup per element.
  if (f16Table === undefined) {
    f16Table = new Uint32Array(65536)
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h)
  }
  const out = new Uint32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = f16Table[bits[i]!]!
  return new Float32Array(out.buffer)
}

/** Widens bfloat16 bit patterns to float32, exactly. */
export const bf16ToF32 = (bits: Uint16Array): Float32Array => {
  const out = new Uint32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16
  return new Float32Array(out.buffer)
}

const f32BitsToF16Bits = (x: number): number => {
  const sign = (x >>> 16) & 0x8000
  const exponent = (x >>> 23) & 0xff
  let mantissa = x & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200 | (mantissa >>> 13)) // keep NaN a (quiet) NaN
  const e = exponent - 112 // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign // below half the smallest subnormal
    mantissa |= 0x800000
    const shift = 14 - e
    const half = 1 << (shift - 1)
    const rest = mantissa & ((1 << shift) - 1)
    let h = mantissa >>> shift
    if (rest > half || (rest === half && (h & 1) === 1)) h++ // may carry into the smallest normal: still right
    return sign | h
  }
  let h = (e << 10) | (mantissa >>> 13)
  const rest = mantissa & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++ // may carry into the exponent, up to inf: still right
  return sign | h
}

const f32BitsToBf16Bits = (x: number): number => {
  if ((x & 0x7fffffff) >>> 0 > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff
}

/** The f16 bit pattern nearest to `value` (round to nearest, ties to even; overflow to ±inf). */
export const numberToF16Bits = (value: number): number => f32BitsToF16Bits(new Uint32Array(new Float32Array([value]).buffer)[0]!)

/** The bfloat16 bit pattern nearest to `value` (round to nearest, ties to even). */
export const numberToBf16Bits = (value: number): number => f32BitsToBf16Bits(new Uint32Array(new Float32Array([value]).buffer)[0]!)

/** Rounds float32 values to f16 bit patterns (nearest, ties to even). */
export const f32ToF16 = (values: Float32Array): Uint16Array => {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length)
  const out = new Uint16Array(values.length)
  for (let i = 0; i < out.length; i++) out[i] = f32BitsToF16Bits(bits[i]!)
  return out
}

/** Rounds float32 values to bfloat16 bit patterns (nearest, ties to even). */
export const f32ToBf16 = (values: Float32Array): Uint16Array => {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length)
  const out = new Uint16Array(values.length)
  for (let i = 0; i < out.length; i++) out[i] = f32BitsToBf16Bits(bits[i]!)
  return out
}

// ---------------------------------------------------------------------------------------------
// Tensor views to tfjs

const u16 = (view: TensorView): Uint16Array => hostView(view.data, 2, (b, o, n) => new Uint16Array(b, o, n))

/** Integer values of an integer view as JS numbers (I64/U64 exact only within ±2^53). */
const integerValues = (view: TensorView): ArrayLike<number> => {
  const d = view.data
  switch (view.dtype) {
    case "I8":
      return new Int8Array(d.buffer, d.byteOffset, d.byteLength)
    case "U8":
    case "BOOL":
      return d
    case "I16":
      return hostView(d, 2, (b, o, n) => new Int16Array(b, o, n))
    case "U16":
      return u16(view)
    case "I32":
      return hostView(d, 4, (b, o, n) => new Int32Array(b, o, n))
    case "U32":
      return hostView(d, 4, (b, o, n) => new Uint32Array(b, o, n))
    case "I64":
    case "U64": {
      const big = view.dtype === "I64" ? hostView(d, 8, (b, o, n) => new BigInt64Array(b, o, n)) : hostView(d, 8, (b, o, n) => new BigUint64Array(b, o, n))
      return Array.from(big, Number)
    }
    default:
      throw new Error(`not an integer dtype: ${view.dtype}`)
  }
}

/**
 * The values of a view as float32. An aligned F32 view is returned without copying, so it aliases
 * the file's bytes; every other dtype is converted into a fresh array (F16/BF16 exactly, F64 and
 * large integers rounded).
 */
export const toFloat32 = (view: TensorView): Float32Array => {
  switch (view.dtype) {
    case "F32":
      return hostView(view.data, 4, (b, o, n) => new Float32Array(b, o, n))
    case "F16":
      return f16ToF32(u16(view))
    case "BF16":
      return bf16ToF32(u16(view))
    case "F64":
      return Float32Array.from(hostView(view.data, 8, (b, o, n) => new Float64Array(b, o, n)))
    default:
      return Float32Array.from(integerValues(view))
  }
}

const toInt32 = (view: TensorView): Int32Array => {
  const values = integerValues(view)
  const out = new Int32Array(values.length)
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!
    if (v < -2147483648 || v > 2147483647) {
      const kind = view.dtype === "I64" ? "int64" : view.dtype === "U64" ? "uint64" : "uint32"
      return fail("out-of-range", `${kind} value out of int32 range`, view.name)
    }
    out[i] = v
  }
  return out
}

/**
 * A tfjs tensor holding the view's values: floats become float32 (F16/BF16 widened exactly, F64
 * narrowed), integers int32 (I64/U32/U64 values outside int32 throw `InvalidSafetensors` with
 * reason "out-of-range"), BOOL becomes bool. The tensor never aliases the file's bytes: the CPU
 * backend keeps the array it is given, which would pin the whole file buffer in memory.
 */
export const toTensor = (view: TensorView): tf.Tensor => {
  const shape = [...view.shape]
  switch (view.dtype) {
    case "F32": {
      const values = toFloat32(view)
      return tf.tensor(values.buffer === view.data.buffer ? values.slice() : values, shape, "float32")
    }
    case "F16":
    case "BF16":
    case "F64":
      return tf.tensor(toFloat32(view), shape, "float32")
    case "BOOL":
      // Readers treat any non-zero byte as true; tfjs wants exactly 0/1.
      return tf.tensor(Uint8Array.from(view.data, (b) => (b === 0 ? 0 : 1)), shape, "bool")
    case "I32":
      return tf.tensor(hostView(view.data.slice(), 4, (b, o, n) => new Int32Array(b, o, n)), shape, "int32")
    default:
      return tf.tensor(toInt32(view), shape, "int32")
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

const naturalArray: Record<Dtype, (data: TypedArray) => boolean> = {
  F64: (d) => d instanceof Float64Array,
  F32: (d) => d instanceof Float32Array,
  F16: (d) => d instanceof Uint16Array,
  BF16: (d) => d instanceof Uint16Array,
  I64: (d) => d instanceof BigInt64Array,
  I32: (d) => d instanceof Int32Array,
  I16: (d) => d instanceof Int16Array,
  I8: (d) => d instanceof Int8Array,
  U64: (d) => d instanceof BigUint64Array,
  U32: (d) => d instanceof Uint32Array,
  U16: (d) => d instanceof Uint16Array,
  U8: (d) => d instanceof Uint8Array,
  BOOL: (d) => d instanceof Uint8Array
}

/** The little-endian bytes of one input; throws `InvalidSafetensors` on a malformed input. */
const tensorBytes = (input: TensorInput): Uint8Array => {
  const { name, dtype, shape } = input
  if (!isDtype(dtype)) return fail("unknown-dtype", `dtype '${String(dtype)}' is not supported`, name)
  if (!shape.every((dim) => isOffset(dim))) return fail("bad-shape", `shape [${shape.join(", ")}] has a dimension that is not a non-negative integer`, name)
  const size = dtypeSizes[dtype]
  const count = elementCount(shape)
  let data: TypedArray = input.data
  if ((dtype === "F16" || dtype === "BF16") && data instanceof Float32Array) data = dtype === "F16" ? f32ToF16(data) : f32ToBf16(data)
  const natural = naturalArray[dtype](data)
  if (!natural && !(data instanceof Uint8Array)) {
    return fail("bad-entry", `${data.constructor.name} is neither the natural array of ${dtype} nor raw bytes (Uint8Array)`, name)
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (bytes.byteLength !== count * size) {
    return fail("size-mismatch", `${dtype}[${shape.join(", ")}] needs ${count * size} bytes, data has ${bytes.byteLength}`, name)
  }
  if (natural && !hostIsLittleEndian) {
    const copy = bytes.slice()
    swapBytes(copy, size)
    return copy
  }
  return bytes
}

/**
 * A spec-compliant file: tensors laid out in the given order, header JSON padded with spaces to a
 * multiple of 8 bytes so the data section starts 8-byte aligned (as the Rust writer does). Throws
 * `InvalidSafetensors` for duplicate names, a wrong data length, or a non-string metadata value.
 */
export const encode = (tensors: ReadonlyArray<TensorInput>, metadata?: Readonly<Record<string, string>>): Uint8Array => {
  const header: Record<string, unknown> = {}
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") return fail("bad-metadata", `metadata['${key}'] is not a string`)
    }
    header[METADATA_KEY] = Object.fromEntries(Object.entries(metadata))
  }
  const chunks: Array<Uint8Array> = []
  let offset = 0
  const seen = new Set<string>()
  for (const input of tensors) {
    if (input.name === METADATA_KEY) return fail("bad-entry", `'${METADATA_KEY}' is reserved`, input.name)
    if (seen.has(input.name)) return fail("bad-entry", "duplicate tensor name", input.name)
    seen.add(input.name)
    const bytes = tensorBytes(input)
    // defineProperty, not assignment: a tensor called "__proto__" must be a key, not a prototype.
    Object.defineProperty(header, input.name, {
      value: { dtype: input.dtype, shape: [...input.shape], data_offsets: [offset, offset + bytes.byteLength] },
      enumerable: true,
      writable: true,
      configurable: true
    })
    chunks.push(bytes)
    offset += bytes.byteLength
  }
  const json = utf8Encoder.encode(JSON.stringify(header))
  const headerLength = Math.ceil(json.byteLength / 8) * 8
  const out = new Uint8Array(8 + headerLength + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true)
  out.set(json, 8)
  out.fill(0x20, 8 + json.byteLength, 8 + headerLength)
  let position = 8 + headerLength
  for (const chunk of chunks) {
    out.set(chunk, position)
    position += chunk.byteLength
  }
  return out
}

const tfDtypes: Partial<Record<tf.DataType, Dtype>> = { float32: "F32", int32: "I32", bool: "BOOL" }

/**
 * Encodes named tfjs tensors (float32 -> F32, int32 -> I32, bool -> BOOL) in key order, reading them
 * with `dataSync`. Only for tensors the host can read synchronously (CPU and wasm backends): on
 * WebGPU `dataSync` fails (Node) or returns zeros (browsers). Product code uses `encodeTensorsAsync`.
 */
export const encodeTensors = (named: Readonly<Record<string, tf.Tensor>>, metadata?: Readonly<Record<string, string>>): Uint8Array =>
  encode(
    Object.entries(named).map(([name, tensor]) => {
      const dtype = tfDtypes[tensor.dtype]
      if (dtype === undefined) return fail("unsupported-dtype", `tfjs dtype '${tensor.dtype}' has no safetensors encoding here`, name)
      return { name, dtype, shape: tensor.shape, data: tensor.dataSync() as TypedArray }
    }),
    metadata
  )

/** `encodeTensors` for every backend: reads each tensor with `await data()` (GPU-safe, non-blocking). */
export const encodeTensorsAsync = async (
  named: Readonly<Record<string, tf.Tensor>>,
  metadata?: Readonly<Record<string, string>>
): Promise<Uint8Array> => {
  const inputs: Array<TensorInput> = []
  for (const [name, tensor] of Object.entries(named)) {
    const dtype = tfDtypes[tensor.dtype]
    if (dtype === undefined) return fail("unsupported-dtype", `tfjs dtype '${tensor.dtype}' has no safetensors encoding here`, name)
    inputs.push({ name, dtype, shape: tensor.shape, data: (await tensor.data()) as TypedArray })
  }
  return encode(inputs, metadata)
}

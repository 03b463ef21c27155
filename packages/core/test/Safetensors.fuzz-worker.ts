// Fuzz targets for the safetensors decoder, run in a worker by Safetensors.fuzz.test.ts.
import fc from "fast-check"
import { decodeSync, encode, InvalidSafetensors, toFloat32 } from "../src/Safetensors.js"
import { runFuzzTargets, type Outcome } from "./fuzz/worker.js"

const valid = encode(
  [
    { name: "a", dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    { name: "b.weight", dtype: "F16", shape: [4], data: new Uint16Array([0x3c00, 0, 0x7c00, 1]) },
    { name: "c", dtype: "I64", shape: [1], data: new BigInt64Array([5n]) }
  ],
  { format: "pt" }
)
const headerLength = Number(new DataView(valid.buffer).getBigUint64(0, true))
const headerText = new TextDecoder().decode(valid.subarray(8, 8 + headerLength))

const decode = (bytes: Uint8Array): Outcome => {
  try {
    const file = decodeSync(bytes, "fuzz.safetensors")
    for (const tensor of file.tensors) if (tensor.dtype === "F32" || tensor.dtype === "F16") toFloat32(tensor)
    return { ok: true }
  } catch (error) {
    if (error instanceof InvalidSafetensors) return { ok: false, tag: error._tag }
    throw error
  }
}

/** A file from header text, with the data section of the valid file (or `extra` zero bytes). */
const withHeader = (text: string, extra: number): Uint8Array => {
  const json = new TextEncoder().encode(text)
  const data = valid.subarray(8 + headerLength)
  const out = new Uint8Array(8 + json.length + data.length + extra)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(json, 8)
  out.set(data, 8 + json.length)
  return out
}

const number = fc.oneof(fc.nat(64), fc.constantFrom(-1, 0.5, 8.0, 2 ** 31, 2 ** 53, 2 ** 64, 1e300, -0), fc.double())
const entry = fc.record(
  {
    dtype: fc.constantFrom("F32", "F16", "BF16", "I64", "BOOL", "F8_E4M3", "f32", ""),
    shape: fc.array(number, { maxLength: 4 }),
    data_offsets: fc.oneof(fc.tuple(number, number), fc.array(number, { maxLength: 3 }))
  },
  { requiredKeys: [] }
)

void runFuzzTargets({
  // Bit flips, byte overwrites, truncation and growth of a valid file.
  bytes: {
    arbitrary: fc.tuple(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.nat(255)), { maxLength: 8 }), fc.integer({ min: -valid.length, max: 16 })),
    run: ([edits, resize]) => {
      const bytes = new Uint8Array(Math.max(0, valid.length + resize))
      bytes.set(valid.subarray(0, Math.min(valid.length, bytes.length)))
      for (const [at, value] of edits) if (at < bytes.length) bytes[at] = value
      return decode(bytes)
    },
    typed: ["InvalidSafetensors"]
  },
  // Character-level mutations of the header text (JSON-breaking ones included).
  headerText: {
    arbitrary: fc.tuple(fc.nat(headerText.length), fc.nat(headerText.length), fc.string({ maxLength: 12, unit: "binary" }), fc.nat(8)),
    run: ([from, to, insert, extra]) => decode(withHeader(headerText.slice(0, Math.min(from, to)) + insert + headerText.slice(Math.max(from, to)), extra)),
    typed: ["InvalidSafetensors"]
  },
  // Structured headers: random entries, duplicates, metadata, huge and fractional numbers.
  headerJson: {
    arbitrary: fc.tuple(
      fc.array(fc.tuple(fc.oneof(fc.constantFrom("a", "b", "__metadata__", "__proto__", "\ud800"), fc.string({ maxLength: 4 })), fc.oneof(entry, fc.dictionary(fc.string({ maxLength: 3 }), fc.string({ maxLength: 3 })), fc.jsonValue({ maxDepth: 2 }))), { maxLength: 5 }),
      fc.nat(64)
    ),
    run: ([pairs, data]) => decode(withHeader(`{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? "null"}`).join(",")}}`, data)),
    typed: ["InvalidSafetensors"]
  },
  // Random header lengths, including ones past the file and past MAX_HEADER_SIZE.
  headerLength: {
    arbitrary: fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat(64)),
    run: ([length, size]) => {
      const bytes = new Uint8Array(8 + size).fill(0x7b, 8)
      new DataView(bytes.buffer).setBigUint64(0, length, true)
      return decode(bytes)
    },
    typed: ["InvalidSafetensors"]
  }
})

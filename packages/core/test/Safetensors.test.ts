import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  bf16BitsToNumber,
  bf16ToF32,
  decode,
  decodeSync,
  encode,
  encodeTensors,
  f16BitsToNumber,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  InvalidSafetensors,
  MAX_HEADER_SIZE,
  numberToBf16Bits,
  numberToF16Bits,
  toFloat32,
  toTensor
} from "../src/Safetensors.js"
import type { InvalidSafetensorsReason, SafetensorsFile, TensorInput, TensorView } from "../src/Safetensors.js"
import { readSafetensors, writeSafetensors } from "../src/SafetensorsFile.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const text = new TextEncoder()

/** A file with exactly this header text (no padding) and data section. */
const build = (header: string, data: Uint8Array | number = 0): Uint8Array => {
  const json = text.encode(header)
  const bytes = typeof data === "number" ? new Uint8Array(data) : data
  const out = new Uint8Array(8 + json.length + bytes.length)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(json, 8)
  out.set(bytes, 8 + json.length)
  return out
}

const entry = (dtype: string, shape: ReadonlyArray<number>, begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] })

const roundTrip = (inputs: ReadonlyArray<TensorInput>, metadata?: Record<string, string>): SafetensorsFile => decodeSync(encode(inputs, metadata))

const only = (file: SafetensorsFile): TensorView => {
  expect(file.tensors).toHaveLength(1)
  return file.tensors[0]!
}

const bitsOf = (values: Float32Array): Array<number> => Array.from(new Uint32Array(values.buffer, values.byteOffset, values.length))

const PATH = "/models/adapter_model.safetensors"

const decodeError = (bytes: Uint8Array): InvalidSafetensors => {
  const result = Effect.runSync(Effect.either(decode(bytes, PATH)))
  if (Either.isRight(result)) throw new Error("expected the file to be rejected")
  return result.left
}

const expectInvalid = (bytes: Uint8Array, reason: InvalidSafetensorsReason, tensor?: string): InvalidSafetensors => {
  const error = decodeError(bytes)
  expect(error._tag).toBe("InvalidSafetensors")
  expect(error).toBeInstanceOf(InvalidSafetensors)
  expect(error.reason).toBe(reason)
  expect(error.tensor).toBe(tensor)
  expect(error.path).toBe(PATH)
  expect(error.message).toContain(PATH)
  if (tensor !== undefined) expect(error.message).toContain(`'${tensor}'`)
  // The synchronous decoder throws the same error.
  expect(() => decodeSync(bytes, PATH)).toThrow(expect.objectContaining({ _tag: "InvalidSafetensors", reason }))
  return error
}

describe("encode", () => {
  it("matches the reference writer byte for byte (header padded with spaces to 8)", () => {
    // The reference implementation's own test vectors for an empty file and for `attn0`.
    const empty = encode([])
    expect(Array.from(empty)).toEqual([8, 0, 0, 0, 0, 0, 0, 0, ...text.encode("{}      ")])
    const withMetadata = encode([], { framework: "pt" })
    expect(Array.from(withMetadata)).toEqual([40, 0, 0, 0, 0, 0, 0, 0, ...text.encode('{"__metadata__":{"framework":"pt"}}     ')])

    const attn0 = encode([{ name: "attn0", dtype: "F32", shape: [1, 1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) }])
    const json = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}'
    expect(json.length).toBe(65)
    const expected = [72, 0, 0, 0, 0, 0, 0, 0, ...text.encode(json + " ".repeat(7))]
    expected.push(...[0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64])
    expect(Array.from(attn0)).toEqual(expected)
  })

  it("matches the Python binding's I32 vector", () => {
    const out = encode([{ name: "test", dtype: "I32", shape: [2, 2], data: new Int32Array(4) }])
    const json = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}'
    expect(Array.from(out)).toEqual([64, 0, 0, 0, 0, 0, 0, 0, ...text.encode(json + "    "), ...new Array(16).fill(0)])
  })

  it("pads every header to a multiple of 8 with spaces, so the data section is 8-byte aligned", () => {
    for (let length = 1; length <= 16; length++) {
      const out = encode([{ name: "x".repeat(length), dtype: "F64", shape: [1], data: new Float64Array([length]) }])
      const n = Number(new DataView(out.buffer).getBigUint64(0, true))
      expect(n % 8).toBe(0)
      const header = new TextDecoder().decode(out.subarray(8, 8 + n))
      expect(header.trimEnd().endsWith("}")).toBe(true)
      expect(header.slice(header.trimEnd().length)).toMatch(/^ {0,7}$/)
      const view = only(decodeSync(out))
      expect(view.data.byteOffset % 8).toBe(0)
      expect(Array.from(toFloat32(view))).toEqual([length])
    }
  })

  it("lays tensors out in the given order, contiguously", () => {
    const out = encode([
      { name: "b", dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) },
      { name: "a", dtype: "F32", shape: [1], data: new Float32Array([7]) }
    ])
    const file = decodeSync(out)
    expect(file.tensors.map((t) => t.name)).toEqual(["b", "a"])
    expect(file.tensors[0]!.data.byteOffset + 3).toBe(file.tensors[1]!.data.byteOffset)
    // `a` starts at data offset 3: misaligned for f32, so toFloat32 must copy and still be right.
    expect(file.tensors[1]!.data.byteOffset % 4).not.toBe(0)
    expect(Array.from(toFloat32(file.tensors[1]!))).toEqual([7])
  })

  it("rejects inputs that cannot be written", () => {
    const f32 = (name: string, shape: Array<number>, n: number): TensorInput => ({ name, dtype: "F32", shape, data: new Float32Array(n) })
    const encodeError = (run: () => unknown): InvalidSafetensors => {
      try {
        run()
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidSafetensors)
        return error as InvalidSafetensors
      }
      throw new Error("expected encode to throw")
    }
    expect(encodeError(() => encode([f32("w", [2, 2], 3)]))).toMatchObject({ reason: "size-mismatch", tensor: "w" })
    expect(encodeError(() => encode([f32("w", [1], 1), f32("w", [1], 1)]))).toMatchObject({ reason: "bad-entry", tensor: "w" })
    expect(encodeError(() => encode([f32("__metadata__", [1], 1)]))).toMatchObject({ reason: "bad-entry" })
    expect(encodeError(() => encode([f32("w", [-1], 0)]))).toMatchObject({ reason: "bad-shape", tensor: "w" })
    expect(encodeError(() => encode([{ name: "w", dtype: "I32", shape: [1], data: new Float32Array(1) }]))).toMatchObject({ reason: "bad-entry", tensor: "w" })
    expect(encodeError(() => encode([], { n: 1 as unknown as string }))).toMatchObject({ reason: "bad-metadata" })
  })

  it("accepts raw little-endian bytes for any dtype", () => {
    const view = only(roundTrip([{ name: "w", dtype: "F32", shape: [2], data: new Uint8Array([0, 0, 128, 63, 0, 0, 0, 192]) }]))
    expect(Array.from(toFloat32(view))).toEqual([1, -2])
    // A decoded view re-encodes to the same tensor.
    const again = only(roundTrip([view]))
    expect(Array.from(again.data)).toEqual(Array.from(view.data))
  })

  it("keeps a tensor named __proto__ as an ordinary key", () => {
    const view = only(roundTrip([{ name: "__proto__", dtype: "F32", shape: [1], data: new Float32Array([3]) }]))
    expect(view.name).toBe("__proto__")
    expect(Array.from(toFloat32(view))).toEqual([3])
  })
})

describe("decode round trips", () => {
  it("F32, including -0, a subnormal, inf and NaN bit patterns", () => {
    const values = new Float32Array([1.5, -2, 3.25, 0, -0, 1e-40, Infinity, NaN])
    const view = only(roundTrip([{ name: "w", dtype: "F32", shape: [2, 4], data: values }]))
    expect(view).toMatchObject({ name: "w", dtype: "F32", shape: [2, 4] })
    expect(bitsOf(toFloat32(view))).toEqual(bitsOf(values))
    const tensor = toTensor(view)
    expect(tensor.dtype).toBe("float32")
    expect(tensor.shape).toEqual([2, 4])
    expect(bitsOf(tensor.dataSync() as Float32Array)).toEqual(bitsOf(values))
    tensor.dispose()
  })

  it("F32 views alias the file bytes (no copy) and toTensor does not", () => {
    const bytes = encode([{ name: "w", dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }])
    const view = only(decodeSync(bytes))
    expect(view.data.buffer).toBe(bytes.buffer)
    const values = toFloat32(view)
    expect(values.buffer).toBe(bytes.buffer)
    const tensor = toTensor(view)
    values[0] = 99
    expect(Array.from(tensor.dataSync())).toEqual([1, 2])
    tensor.dispose()
  })

  it("F16 widens exactly: normals, max, subnormals, zeros, infinities, NaN", () => {
    const cases: Array<[number, number]> = [
      [0x0000, 0],
      [0x3c00, 1],
      [0xc000, -2],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0x0400, 2 ** -14], // smallest normal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x8001, -(2 ** -24)],
      [0x7c00, Infinity],
      [0xfc00, -Infinity]
    ]
    const bits = new Uint16Array([...cases.map(([b]) => b), 0x8000, 0x7e00, 0xfe01])
    const view = only(roundTrip([{ name: "h", dtype: "F16", shape: [bits.length], data: bits }]))
    const widened = toFloat32(view)
    cases.forEach(([, expected], i) => expect(widened[i]).toBe(expected))
    expect(Object.is(widened[cases.length], -0)).toBe(true)
    expect(Number.isNaN(widened[cases.length + 1])).toBe(true)
    // NaN payload and sign carried into the f32 pattern.
    expect(bitsOf(widened).slice(-2)).toEqual([0x7fc00000, 0xffc02000])
    const tensor = toTensor(view)
    expect(tensor.dtype).toBe("float32")
    expect(Array.from(tensor.dataSync()).slice(0, cases.length)).toEqual(cases.map(([, v]) => v))
    tensor.dispose()
  })

  it("F16 widening agrees with the IEEE formula for all 65536 patterns", () => {
    const all = new Uint16Array(65536).map((_, i) => i)
    const widened = f16ToF32(all)
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1
      const e = (h >> 10) & 0x1f
      const m = h & 0x3ff
      const expected = e === 0 ? sign * m * 2 ** -24 : e === 31 ? (m === 0 ? sign * Infinity : NaN) : sign * (1 + m / 1024) * 2 ** (e - 15)
      if (Number.isNaN(expected)) expect(Number.isNaN(widened[h])).toBe(true)
      else if (widened[h] !== expected) throw new Error(`f16 0x${h.toString(16)}: got ${widened[h]}, want ${expected}`)
      expect(f16BitsToNumber(h) === widened[h] || Number.isNaN(widened[h])).toBe(true)
    }
  })

  it("BF16 widens exactly", () => {
    const cases: Array<[number, number]> = [
      [0x3f80, 1],
      [0xc000, -2],
      [0x4049, 3.140625],
      [0x7f7f, 3.3895313892515355e38],
      [0x0080, 2 ** -126],
      [0x0001, 2 ** -133], // f32 subnormal
      [0x7f80, Infinity],
      [0xff80, -Infinity]
    ]
    const bits = new Uint16Array([...cases.map(([b]) => b), 0x7fc0])
    const view = only(roundTrip([{ name: "b", dtype: "BF16", shape: [bits.length], data: bits }]))
    const widened = toFloat32(view)
    cases.forEach(([, expected], i) => expect(widened[i]).toBe(expected))
    expect(Number.isNaN(widened[cases.length])).toBe(true)
    expect(bf16BitsToNumber(0x4049)).toBe(3.140625)
    const tensor = toTensor(view)
    expect(Array.from(tensor.dataSync()).slice(0, cases.length)).toEqual(cases.map(([, v]) => v))
    tensor.dispose()
  })

  it("I32 and the narrower integers become int32 tensors", () => {
    const file = roundTrip([
      { name: "i32", dtype: "I32", shape: [2, 2], data: new Int32Array([-2147483648, 2147483647, 0, -1]) },
      { name: "i16", dtype: "I16", shape: [3], data: new Int16Array([-32768, 32767, 5]) },
      { name: "i8", dtype: "I8", shape: [3], data: new Int8Array([-128, 127, -1]) },
      { name: "u8", dtype: "U8", shape: [3], data: new Uint8Array([0, 255, 7]) },
      { name: "u16", dtype: "U16", shape: [2], data: new Uint16Array([65535, 1]) },
      { name: "u32", dtype: "U32", shape: [2], data: new Uint32Array([2147483647, 3]) }
    ])
    const expected: Record<string, Array<number>> = {
      i32: [-2147483648, 2147483647, 0, -1],
      i16: [-32768, 32767, 5],
      i8: [-128, 127, -1],
      u8: [0, 255, 7],
      u16: [65535, 1],
      u32: [2147483647, 3]
    }
    expect(file.tensors.map((t) => t.name)).toEqual(Object.keys(expected))
    for (const view of file.tensors) {
      const tensor = toTensor(view)
      expect(tensor.dtype).toBe("int32")
      expect(tensor.shape).toEqual([...view.shape])
      expect(Array.from(tensor.dataSync())).toEqual(expected[view.name])
      expect(Array.from(toFloat32(view))).toEqual(expected[view.name]!.map(Math.fround))
      tensor.dispose()
    }
  })

  it("I64 becomes int32 when every value fits, and fails naming the tensor when one does not", () => {
    const before = tf.memory().numTensors
    const view = only(roundTrip([{ name: "ids", dtype: "I64", shape: [3], data: new BigInt64Array([-3n, 2n ** 31n - 1n, -(2n ** 31n)]) }]))
    const tensor = toTensor(view)
    expect(tensor.dtype).toBe("int32")
    expect(Array.from(tensor.dataSync())).toEqual([-3, 2147483647, -2147483648])
    tensor.dispose()

    const big = only(roundTrip([{ name: "steps", dtype: "I64", shape: [2], data: new BigInt64Array([1n, 2n ** 31n]) }]))
    expect(() => toTensor(big)).toThrow(InvalidSafetensors)
    try {
      toTensor(big)
    } catch (error) {
      expect(error).toMatchObject({ _tag: "InvalidSafetensors", reason: "out-of-range", detail: "int64 value out of int32 range", tensor: "steps" })
    }
    const u32 = only(roundTrip([{ name: "u", dtype: "U32", shape: [1], data: new Uint32Array([2 ** 31]) }]))
    expect(() => toTensor(u32)).toThrow(expect.objectContaining({ reason: "out-of-range", tensor: "u" }))
    const u64 = only(roundTrip([{ name: "u", dtype: "U64", shape: [2], data: new BigUint64Array([5n, 2n ** 63n]) }]))
    expect(() => toTensor(u64)).toThrow(expect.objectContaining({ detail: "uint64 value out of int32 range" }))
    // A failed conversion allocates no tensor.
    expect(tf.memory().numTensors).toBe(before)
  })

  it("BOOL becomes a bool tensor; any non-zero byte is true", () => {
    const view = only(roundTrip([{ name: "mask", dtype: "BOOL", shape: [2, 2], data: new Uint8Array([1, 0, 2, 0]) }]))
    const tensor = toTensor(view)
    expect(tensor.dtype).toBe("bool")
    expect(tensor.shape).toEqual([2, 2])
    expect(Array.from(tensor.dataSync())).toEqual([1, 0, 1, 0])
    tensor.dispose()
  })

  it("F64 narrows to float32", () => {
    const values = new Float64Array([Math.PI, 1e300, -0.5, 1e-50])
    const view = only(roundTrip([{ name: "d", dtype: "F64", shape: [4], data: values }]))
    expect(Array.from(toFloat32(view))).toEqual([Math.fround(Math.PI), Infinity, -0.5, 0])
    const tensor = toTensor(view)
    expect(tensor.dtype).toBe("float32")
    expect(tensor.dataSync()[0]).toBe(Math.fround(Math.PI))
    tensor.dispose()
  })

  it("scalars (shape []) and zero-size tensors", () => {
    const file = roundTrip([
      { name: "empty", dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
      { name: "scalar", dtype: "F32", shape: [], data: new Float32Array([42]) },
      { name: "also-empty", dtype: "I64", shape: [4, 0], data: new BigInt64Array(0) },
      { name: "last", dtype: "I32", shape: [], data: new Int32Array([-7]) }
    ])
    expect(file.tensors.map((t) => [t.name, t.data.byteLength])).toEqual([
      ["empty", 0],
      ["scalar", 4],
      ["also-empty", 0],
      ["last", 4]
    ])
    const scalar = toTensor(file.tensors[1]!)
    expect(scalar.rank).toBe(0)
    expect(scalar.dataSync()[0]).toBe(42)
    const empty = toTensor(file.tensors[0]!)
    expect(empty.shape).toEqual([0, 3])
    expect(empty.size).toBe(0)
    const alsoEmpty = toTensor(file.tensors[2]!)
    expect(alsoEmpty.dtype).toBe("int32")
    expect(alsoEmpty.shape).toEqual([4, 0])
    const last = toTensor(file.tensors[3]!)
    expect(last.dataSync()[0]).toBe(-7)
    tf.dispose([scalar, empty, alsoEmpty, last])
  })

  it("zero-size tensors may share an offset with each other and with the next tensor", () => {
    const header = JSON.stringify({ z1: entry("F32", [0], 4, 4), a: entry("F32", [1], 0, 4), z2: entry("U8", [0, 5], 4, 4), b: entry("F32", [1], 4, 8) })
    const file = decodeSync(build(header, 8))
    expect(file.tensors.map((t) => t.name)).toEqual(["a", "z1", "z2", "b"])
  })

  it("metadata round trips, including non-ASCII values", () => {
    const metadata = { format: "pt", note: "héllo ✓", empty: "" }
    const file = roundTrip([{ name: "w", dtype: "F32", shape: [1], data: new Float32Array([1]) }], metadata)
    expect(file.metadata).toEqual(metadata)
    expect(decodeSync(encode([])).metadata).toEqual({})
  })

  it("treats a null __metadata__ as absent, as the reference reader does", () => {
    expect(decodeSync(build('{"__metadata__":null}')).metadata).toEqual({})
  })

  it("returns tensors in data order, whatever the header order", () => {
    const header = JSON.stringify({ second: entry("F32", [1], 4, 8), first: entry("F32", [1], 0, 4) })
    const data = new Uint8Array(new Float32Array([1, 2]).buffer)
    const file = decodeSync(build(header, data))
    expect(file.tensors.map((t) => [t.name, toFloat32(t)[0]])).toEqual([
      ["first", 1],
      ["second", 2]
    ])
  })

  it("accepts unpadded headers from other writers (data then unaligned)", () => {
    const header = JSON.stringify({ w: entry("F32", [2], 0, 8) })
    const data = new Uint8Array(new Float32Array([0.5, -4]).buffer)
    const bytes = build(header, data)
    expect((8 + header.length) % 4).not.toBe(0)
    expect(Array.from(toFloat32(only(decodeSync(bytes))))).toEqual([0.5, -4])
  })

  it("decode succeeds in the Effect channel", () => {
    const file = Effect.runSync(decode(encode([{ name: "w", dtype: "F32", shape: [1], data: new Float32Array([2]) }])))
    expect(file.tensors[0]!.name).toBe("w")
  })
})

describe("encodeTensors", () => {
  it("writes float32 as F32, int32 as I32 and bool as BOOL, and loads back equal", () => {
    const named = {
      "lora_A.weight": tf.tensor2d([
        [1.25, -2],
        [3, 4.5]
      ]),
      step: tf.scalar(17, "int32"),
      mask: tf.tensor1d([true, false, true], "bool")
    }
    const file = decodeSync(encodeTensors(named, { format: "pt" }))
    expect(file.metadata).toEqual({ format: "pt" })
    expect(file.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ["lora_A.weight", "F32", [2, 2]],
      ["step", "I32", []],
      ["mask", "BOOL", [3]]
    ])
    for (const view of file.tensors) {
      const original = named[view.name as keyof typeof named]
      const loaded = toTensor(view)
      expect(loaded.dtype).toBe(original.dtype)
      expect(loaded.shape).toEqual(original.shape)
      expect(Array.from(loaded.dataSync())).toEqual(Array.from(original.dataSync()))
      loaded.dispose()
    }
    tf.dispose(Object.values(named))
  })

  it("rejects tfjs dtypes with no encoding", () => {
    const s = tf.tensor(["a"], [1], "string")
    expect(() => encodeTensors({ s })).toThrow(expect.objectContaining({ _tag: "InvalidSafetensors", reason: "unsupported-dtype", tensor: "s" }))
    s.dispose()
  })
})

describe("half-precision rounding", () => {
  it("f32 -> f16 rounds to nearest even, overflows to inf, flushes below half the smallest subnormal", () => {
    const cases: Array<[number, number]> = [
      [1, 0x3c00],
      [1 + 2 ** -11, 0x3c00], // tie, down to even
      [1 + 3 * 2 ** -11, 0x3c02], // tie, up to even
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
      [0.1, 0x2e66],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00], // tie between 65504 and 2^16: even is inf
      [1e10, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal units: even
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up into the smallest normal
      [1e-45, 0x0000],
      [-0, 0x8000]
    ]
    for (const [value, bits] of cases) expect([value, numberToF16Bits(value)]).toEqual([value, bits])
    const nan = numberToF16Bits(NaN)
    expect(nan & 0x7c00).toBe(0x7c00)
    expect(nan & 0x3ff).not.toBe(0)
    expect(Array.from(f32ToF16(new Float32Array(cases.map(([v]) => v))))).toEqual(cases.map(([, b]) => b))
  })

  it("f32 -> bf16 rounds to nearest even", () => {
    const cases: Array<[number, number]> = [
      [1, 0x3f80],
      [1 + 2 ** -8, 0x3f80], // tie, down to even
      [1 + 3 * 2 ** -8, 0x3f82], // tie, up to even
      [0.1, 0x3dcd],
      [Math.PI, 0x4049],
      [3.4028234663852886e38, 0x7f80], // max f32 rounds up to inf
      [-Infinity, 0xff80],
      [-0, 0x8000]
    ]
    for (const [value, bits] of cases) expect([value, numberToBf16Bits(value)]).toEqual([value, bits])
    expect(numberToBf16Bits(NaN) & 0x7fc0).toBe(0x7fc0)
    expect(Array.from(f32ToBf16(new Float32Array(cases.map(([v]) => v))))).toEqual(cases.map(([, b]) => b))
  })

  it("narrowing inverts widening for every non-NaN pattern", () => {
    const all = new Uint16Array(65536).map((_, i) => i)
    const f16 = f32ToF16(f16ToF32(all))
    const bf16 = f32ToBf16(bf16ToF32(all))
    for (let h = 0; h < 65536; h++) {
      const f16NaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0
      if (!f16NaN && f16[h] !== h) throw new Error(`f16 0x${h.toString(16)} -> 0x${f16[h]!.toString(16)}`)
      const bf16NaN = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0
      if (!bf16NaN && bf16[h] !== h) throw new Error(`bf16 0x${h.toString(16)} -> 0x${bf16[h]!.toString(16)}`)
    }
  })

  it("F16 and BF16 files can be written from float32 values", () => {
    const values = new Float32Array([0.1, -3.5, 65504])
    const file = roundTrip([
      { name: "h", dtype: "F16", shape: [3], data: values },
      { name: "b", dtype: "BF16", shape: [3], data: values }
    ])
    expect(Array.from(toFloat32(file.tensors[0]!))).toEqual([f16BitsToNumber(0x2e66), -3.5, 65504])
    expect(Array.from(toFloat32(file.tensors[1]!))).toEqual([bf16BitsToNumber(0x3dcd), -3.5, 65536])
  })
})

describe("malformed files", () => {
  it("truncated: shorter than 8 bytes", () => {
    expectInvalid(new Uint8Array(5), "truncated")
  })

  it("truncated: shorter than 8 + N", () => {
    const bytes = build(JSON.stringify({ w: entry("F32", [1], 0, 4) }), 4)
    expectInvalid(bytes.subarray(0, 20), "truncated")
  })

  it("header-too-large: N above 100,000,000", () => {
    const bytes = new Uint8Array(16)
    new DataView(bytes.buffer).setBigUint64(0, BigInt(MAX_HEADER_SIZE + 1), true)
    expectInvalid(bytes, "header-too-large")
    new DataView(bytes.buffer).setBigUint64(0, 2n ** 64n - 1n, true)
    expectInvalid(bytes, "header-too-large")
  })

  it("header-not-json", () => {
    expectInvalid(build('{"w": {"dtype": "F32",'), "header-not-json")
    // Invalid UTF-8 inside an otherwise well-formed header.
    const bytes = build('{"x":"ab"}')
    bytes[14] = 0xff
    expectInvalid(bytes, "header-not-json")
  })

  it("header-not-object", () => {
    expectInvalid(build("[1, 2]"), "header-not-object")
    // The spec requires the header to begin with '{'; leading whitespace is not allowed.
    expectInvalid(build(" {}"), "header-not-object")
  })

  it("bad-entry: missing dtype", () => {
    expectInvalid(build(JSON.stringify({ w: { shape: [1], data_offsets: [0, 4] } }), 4), "bad-entry", "w")
  })

  it("bad-entry: ill-typed shape, data_offsets or entry", () => {
    expectInvalid(build(JSON.stringify({ w: { dtype: "F32", shape: "1", data_offsets: [0, 4] } }), 4), "bad-entry", "w")
    expectInvalid(build(JSON.stringify({ w: { dtype: "F32", shape: [1] } }), 4), "bad-entry", "w")
    expectInvalid(build(JSON.stringify({ w: { dtype: "F32", shape: [1], data_offsets: [0, 4, 8] } }), 4), "bad-entry", "w")
    expectInvalid(build(JSON.stringify({ w: { dtype: "F32", shape: [1], data_offsets: [-4, 0] } }), 4), "bad-entry", "w")
    expectInvalid(build(JSON.stringify({ w: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }), 4), "bad-entry", "w")
    expectInvalid(build(JSON.stringify({ w: 5 }), 4), "bad-entry", "w")
    expectInvalid(build(JSON.stringify({ w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }), 4), "bad-entry", "w")
  })

  it("unknown-dtype", () => {
    expectInvalid(build(JSON.stringify({ q: entry("Q4_K", [4], 0, 2) }), 2), "unknown-dtype", "q")
  })

  it("bad-shape: negative or non-integer dimensions", () => {
    expectInvalid(build(JSON.stringify({ w: entry("F32", [-1], 0, 4) }), 4), "bad-shape", "w")
    expectInvalid(build(JSON.stringify({ w: entry("F32", [1.5], 0, 4) }), 4), "bad-shape", "w")
    expectInvalid(build('{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}', 8), "bad-shape", "w")
  })

  it("size-mismatch: end - begin != product(shape) * size", () => {
    const error = expectInvalid(build(JSON.stringify({ w: entry("F32", [2, 3], 0, 20) }), 20), "size-mismatch", "w")
    expect(error.detail).toContain("24")
    // A shape whose size overflows can never match.
    expectInvalid(build(JSON.stringify({ w: entry("F32", [2 ** 40, 2 ** 40], 0, 4) }), 4), "size-mismatch", "w")
  })

  it("out-of-bounds: offsets beyond the data section", () => {
    const header = JSON.stringify({ a: entry("F32", [1], 0, 4), b: entry("F32", [1], 4, 8) })
    expectInvalid(build(header, 4), "out-of-bounds", "b")
  })

  it("overlap", () => {
    const header = JSON.stringify({ a: entry("F32", [2], 0, 8), b: entry("F32", [1], 4, 8) })
    expectInvalid(build(header, 8), "overlap", "b")
    // A zero-size tensor inside another one overlaps it too.
    expectInvalid(build(JSON.stringify({ a: entry("F32", [2], 0, 8), z: entry("F32", [0], 4, 4) }), 8), "overlap", "z")
  })

  it("hole: a gap between tensors", () => {
    const header = JSON.stringify({ a: entry("F32", [1], 0, 4), b: entry("F32", [1], 8, 12) })
    expectInvalid(build(header, 12), "hole", "b")
  })

  it("hole: data not starting at 0", () => {
    expectInvalid(build(JSON.stringify({ a: entry("F32", [1], 4, 8) }), 8), "hole", "a")
  })

  it("trailing-bytes", () => {
    expectInvalid(build(JSON.stringify({ a: entry("F32", [1], 0, 4) }), 8), "trailing-bytes")
    expectInvalid(build("{}", 1), "trailing-bytes")
  })

  it("bad-metadata: not a string -> string map", () => {
    expectInvalid(build(JSON.stringify({ __metadata__: { format: 1 } })), "bad-metadata")
    expectInvalid(build(JSON.stringify({ __metadata__: "pt" })), "bad-metadata")
    expectInvalid(build(JSON.stringify({ __metadata__: ["pt"] })), "bad-metadata")
  })

  it("the message names the tensor and the path", () => {
    const error = decodeError(build(JSON.stringify({ "model.layers.0.q_proj.lora_A.weight": entry("F32", [2], 0, 4) }), 4))
    expect(error.message).toBe(
      `invalid safetensors file ${PATH} (tensor 'model.layers.0.q_proj.lora_A.weight'): size-mismatch: data_offsets [0, 4] span 4 bytes, F32[2] needs 8`
    )
    expect(new InvalidSafetensors({ reason: "truncated", detail: "x" }).message).toBe("invalid safetensors data: truncated: x")
  })
})

describe("safetensors files", () => {
  let dir: string
  beforeAll(() => {
    dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "peftkit-safetensors-"))
  })
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("writeSafetensors then readSafetensors gives back equal tensors and metadata", async () => {
    const path = nodePath.join(dir, "adapter", "adapter_model.safetensors")
    const a = tf.tensor2d([
      [0.5, -1],
      [2, 3]
    ])
    const n = tf.tensor1d([3, -4], "int32")
    await Effect.runPromise(Effect.provide(writeSafetensors(path, { "lora_A.weight": a, n }, { format: "pt" }), NodeFileSystem.layer))
    const file = await Effect.runPromise(Effect.provide(readSafetensors(path), NodeFileSystem.layer))
    expect(file.metadata).toEqual({ format: "pt" })
    expect(file.tensors.map((t) => t.name)).toEqual(["lora_A.weight", "n"])
    const loaded = file.tensors.map(toTensor)
    expect(Array.from(loaded[0]!.dataSync())).toEqual([0.5, -1, 2, 3])
    expect(Array.from(loaded[1]!.dataSync())).toEqual([3, -4])
    expect(fs.readdirSync(nodePath.dirname(path))).toEqual(["adapter_model.safetensors"])
    tf.dispose([a, n, ...loaded])
  })

  it("readSafetensors fails with InvalidSafetensors naming the path, or FileError when missing", async () => {
    const path = nodePath.join(dir, "broken.safetensors")
    fs.writeFileSync(path, build(JSON.stringify({ w: entry("F32", [1], 0, 4) }), 8))
    const broken = await Effect.runPromise(Effect.provide(Effect.flip(readSafetensors(path)), NodeFileSystem.layer))
    expect(broken).toMatchObject({ _tag: "InvalidSafetensors", reason: "trailing-bytes", path })
    const missing = await Effect.runPromise(Effect.provide(Effect.flip(readSafetensors(nodePath.join(dir, "nope.safetensors"))), NodeFileSystem.layer))
    expect(missing).toMatchObject({ _tag: "FileError", operation: "read" })
  })
})

// Issue 10 item 8: the header rules JSON.parse alone lets through, checked as the reference (Rust,
// serde_json) implementation does, or stricter where it silently keeps one of two values.
import { describe, expect, it } from "vitest"
import { decodeSync, InvalidSafetensors } from "../src/Safetensors.js"

/** A file from raw header text and a data section of `dataBytes` zero bytes. */
const file = (header: string, dataBytes: number): Uint8Array => {
  const json = new TextEncoder().encode(header)
  const out = new Uint8Array(8 + json.byteLength + dataBytes)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true)
  out.set(json, 8)
  return out
}

const reject = (bytes: Uint8Array): InvalidSafetensors => {
  try {
    decodeSync(bytes, "x.safetensors")
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidSafetensors)
    return error as InvalidSafetensors
  }
  throw new Error("accepted")
}

describe("strict header parsing", () => {
  it("rejects a tensor name given twice (JSON.parse would keep the last)", () => {
    const error = reject(file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4))
    expect(error.reason).toBe("duplicate-key")
    expect(error.message).toBe("invalid safetensors file x.safetensors (tensor 'a'): duplicate-key: the header names this tensor twice")
  })

  it("rejects a field given twice in one entry, and __metadata__ twice", () => {
    expect(reject(file(`{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4)).reason).toBe("duplicate-key")
    expect(reject(file(`{"__metadata__":{},"__metadata__":{},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4)).reason).toBe("duplicate-key")
  })

  it("rejects offsets and dimensions written as 8.0, 8e0 or -0 (Rust's usize refuses them)", () => {
    for (const raw of ["4.0", "4e0", "0.4e1"]) {
      const error = reject(file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,${raw}]}}`, 4))
      expect(error.reason).toBe("bad-entry")
      expect(error.detail).toBe(`'data_offsets' holds ${raw}, not an integer written in digits`)
    }
    expect(reject(file(`{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}`, 4)).detail).toBe("'shape' holds 1.0, not an integer written in digits")
    expect(reject(file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-0,4]}}`, 4)).reason).toBe("bad-entry")
    expect(reject(file(`{"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}`, 0)).reason).toBe("bad-shape")
  })

  it("rejects lone surrogates in names and metadata (not valid UTF-8 once written)", () => {
    const error = reject(file(`{"a\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4))
    expect(error.reason).toBe("bad-name")
    expect(error.message).toBe("invalid safetensors file x.safetensors: bad-name: tensor name \"a\\ud800\" holds a lone UTF-16 surrogate")
    expect(reject(file(`{"__metadata__":{"k":"\\udc00"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4)).reason).toBe("bad-metadata")
  })

  it("still accepts escaped pairs, numbers in unknown fields and padding", () => {
    const ok = decodeSync(file(`{"a\\ud83d\\ude00":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1.5},"b":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}    `, 8))
    expect(ok.tensors.map((t) => t.name)).toEqual(["a\u{1f600}", "b"])
  })
})

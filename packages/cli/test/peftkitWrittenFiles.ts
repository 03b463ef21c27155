/** Reads a small float32 safetensors file for the fixture comparisons: tensor name -> values. */
import { readFileSync } from "node:fs"

export const readSafetensorsHeader = (path: string): { readonly tensors: ReadonlyMap<string, Float32Array> } => {
  const bytes = readFileSync(path)
  const headerLength = Number(bytes.readBigUInt64LE(0))
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<string, { dtype: string; data_offsets: [number, number] }>
  const body = 8 + headerLength
  const tensors = new Map<string, Float32Array>()
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue
    if (entry.dtype !== "F32") throw new Error(`${path}: ${name} is ${entry.dtype}, expected F32`)
    const [start, end] = entry.data_offsets
    tensors.set(name, new Float32Array(bytes.buffer.slice(bytes.byteOffset + body + start, bytes.byteOffset + body + end)))
  }
  return { tensors }
}

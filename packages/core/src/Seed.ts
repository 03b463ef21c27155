/**
 * Deterministic seed derivation. tfjs random ops take an integer seed; every layer, link and step
 * gets its own seed mixed from the run seed, so runs are reproducible and streams never collide.
 */

/** Mixes integers into one 31-bit seed (a small FNV-1a/murmur-style hash, stable across platforms). */
export const mixSeed = (...parts: ReadonlyArray<number>): number => {
  let h = 0x811c9dc5
  for (const part of parts) {
    let k = Math.imul(part | 0, 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    h = Math.imul(h ^ Math.imul(k, 0x1b873593), 0x01000193)
    h ^= h >>> 13
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h ^= h >>> 13
  return h & 0x7fffffff
}

/**
 * PyTorch's CPU generator, bit for bit: `torch.Generator().manual_seed(seed)` is an MT19937 seeded
 * with the low 32 bits of the seed, and `tensor.uniform_(from, to, generator=g)` on float32 draws one
 * 32-bit word per element in row-major order, keeps its low 24 bits as x in [0, 1) and returns
 * float32(x * (to - from) + from) with the bounds rounded to float32 and the product in double.
 * VeRA needs it: PEFT draws `vera_A` / `vera_B` from `projection_prng_key` this way, and a file saved
 * with `save_projection: false` holds no projections, only that key. Checked against torch 2.13.
 */

/** A stream of 32-bit words from MT19937 (PyTorch's `at::mt19937`). */
export const mt19937 = (seed: number): (() => number) => {
  const state = new Uint32Array(624)
  // torch takes a uint64 seed and MT19937 keeps its low 32 bits (negative seeds wrap as in two's complement).
  state[0] = Number(BigInt.asUintN(32, BigInt(seed)))
  for (let i = 1; i < 624; i++) state[i] = (Math.imul(1812433253, state[i - 1]! ^ (state[i - 1]! >>> 30)) + i) >>> 0
  let index = 624
  return () => {
    if (index >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (state[k]! & 0x80000000) | (state[(k + 1) % 624]! & 0x7fffffff)
        state[k] = state[(k + 397) % 624]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)
      }
      index = 0
    }
    let y = state[index++]!
    y ^= y >>> 11
    y ^= (y << 7) & 0x9d2c5680
    y ^= (y << 15) & 0xefc60000
    y ^= y >>> 18
    return y >>> 0
  }
}

/** `torch.empty(shape).uniform_(-bound, bound, generator)` for float32: `count` values. */
export const torchUniform = (next: () => number, count: number, bound: number): Float32Array => {
  const from = Math.fround(-bound)
  const to = Math.fround(bound)
  const out = new Float32Array(count)
  for (let i = 0; i < count; i++) out[i] = ((next() & 0xffffff) / 16777216) * (to - from) + from
  return out
}

/**
 * PEFT's VeRA `_kaiming_init` on a [rows, fanIn] tensor: uniform in +-sqrt(3) * sqrt(2) / sqrt(fanIn)
 * (gain sqrt 2, not nn.Linear's a = sqrt 5), computed in double as Python does.
 */
export const torchKaimingUniform = (next: () => number, rows: number, fanIn: number): Float32Array =>
  torchUniform(next, rows * fanIn, Math.sqrt(3.0) * (Math.sqrt(2) / Math.sqrt(fanIn)))

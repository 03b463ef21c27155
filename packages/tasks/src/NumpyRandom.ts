/**
 * numpy's legacy global random stream, enough of it to reproduce MeZO's sampling bit for bit:
 * MeZO (large_models/tasks.py, `Dataset.sample_subset`) does
 *
 *     with temp_seed(seed):                        # np.random.seed(seed)
 *         index = np.random.permutation(len(samples)).tolist()[:num]
 *
 * `np.random.seed(s)` on the legacy `RandomState` seeds MT19937 with Knuth's initialisation
 * (`mt19937_seed`: key[0] = s, key[i] = 1812433253 * (key[i-1] ^ (key[i-1] >>> 30)) + i), and
 * `permutation(n)` shuffles `arange(n)` with Fisher-Yates from the top (`_shuffle_raw`: for i = n-1
 * down to 1, swap i with j = random_interval(i)), where `random_interval(max)` draws 32-bit outputs
 * masked to the smallest all-ones mask >= max and rejects those > max. NEP 19 freezes this legacy
 * stream, so the result is the same for every numpy version; the tests check it against values
 * printed by numpy 2.4.6.
 */

const N = 624
const M = 397

/** The 32-bit Mersenne Twister (MT19937) as numpy's legacy `RandomState` seeds and steps it. */
export class Mt19937 {
  private readonly state = new Uint32Array(N)
  private index = N

  /** `np.random.seed(seed)`: seed is an integer in [0, 2^32 - 1]. */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`seed must be an integer between 0 and 2**32 - 1, got ${seed}`)
    this.state[0] = seed >>> 0
    for (let i = 1; i < N; i++) {
      const prev = this.state[i - 1]! ^ (this.state[i - 1]! >>> 30)
      this.state[i] = (Math.imul(1812433253, prev) + i) >>> 0
    }
  }

  private twist(): void {
    const mt = this.state
    for (let i = 0; i < N; i++) {
      const y = (mt[i]! & 0x80000000) | (mt[(i + 1) % N]! & 0x7fffffff)
      mt[i] = mt[(i + M) % N]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)
    }
    this.index = 0
  }

  /** The next 32-bit output (tempered), as an unsigned integer. */
  nextUint32(): number {
    if (this.index >= N) this.twist()
    let y = this.state[this.index++]!
    y ^= y >>> 11
    y ^= (y << 7) & 0x9d2c5680
    y ^= (y << 15) & 0xefc60000
    y ^= y >>> 18
    return y >>> 0
  }

  /** numpy's `random_interval(max)`: uniform in [0, max] by masked rejection (max < 2^32). */
  interval(max: number): number {
    if (max === 0) return 0
    let mask = max
    mask |= mask >>> 1
    mask |= mask >>> 2
    mask |= mask >>> 4
    mask |= mask >>> 8
    mask |= mask >>> 16
    mask >>>= 0
    for (;;) {
      const value = (this.nextUint32() & mask) >>> 0
      if (value <= max) return value
    }
  }
}

/** `np.random.seed(seed); np.random.permutation(n)`, bit for bit (n < 2^32). */
export const numpyPermutation = (n: number, seed: number): Array<number> => {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`n must be an integer between 0 and 2**32 - 1, got ${n}`)
  const rng = new Mt19937(seed)
  const out = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i >= 1; i--) {
    const j = rng.interval(i)
    const t = out[i]!
    out[i] = out[j]!
    out[j] = t
  }
  return out
}

/**
 * The permutation MeZO samples with, against values printed by numpy 2.4.6:
 *   np.random.seed(seed); np.random.permutation(n)
 * and the raw MT19937 stream (np.random.MT19937()._legacy_seeding(seed); .random_raw(3)).
 */
import { describe, expect, it } from "vitest"
import { Mt19937, numpyPermutation } from "../src/index.js"

describe("numpy's legacy permutation, bit for bit", () => {
  it("MT19937 seeded like np.random.seed gives numpy's raw 32-bit outputs", () => {
    const a = new Mt19937(0)
    expect([a.nextUint32(), a.nextUint32(), a.nextUint32()]).toEqual([2357136044, 2546248239, 3071714933])
    const b = new Mt19937(5489) // the reference implementation's default seed
    expect([b.nextUint32(), b.nextUint32(), b.nextUint32()]).toEqual([3499211612, 581869302, 3890346734])
  })

  it("np.random.permutation(10) for seeds 0 and 1", () => {
    expect(numpyPermutation(10, 0)).toEqual([2, 8, 4, 9, 1, 6, 7, 3, 0, 5])
    expect(numpyPermutation(10, 1)).toEqual([2, 9, 6, 4, 0, 3, 1, 7, 8, 5])
  })

  it("np.random.permutation at the sizes of the real splits (head and tail)", () => {
    const cases: Array<[number, number, Array<number>, Array<number>]> = [
      [0, 67349, [43787, 16159, 59015, 5108, 67052, 35938, 49879, 51591, 56780, 28518, 8653, 44325], [45891, 42613, 43567]],
      [42, 2490, [1057, 478, 976, 422, 1399, 1447, 2329, 1937, 2064, 2476, 2020, 654], [1130, 1294, 860]],
      [0, 250, [225, 122, 92, 157, 154, 161, 198, 83, 63, 155, 218, 231], [117, 47, 172]],
      [4, 554, [134, 220, 483, 348, 209, 306, 275, 89, 244, 203, 221, 534], [439, 174, 122]],
      [4294967295, 1000, [94, 405, 819, 632, 217, 169, 449, 275, 165, 828, 959, 475], [12, 290, 419]]
    ]
    for (const [seed, n, head, tail] of cases) {
      const p = numpyPermutation(n, seed)
      expect(p.slice(0, 12)).toEqual(head)
      expect(p.slice(-3)).toEqual(tail)
      expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: n }, (_, i) => i))
    }
  })

  it("edge sizes and bad seeds", () => {
    expect(numpyPermutation(0, 3)).toEqual([])
    expect(numpyPermutation(1, 3)).toEqual([0])
    expect(() => numpyPermutation(5, -1)).toThrow(RangeError)
    expect(() => numpyPermutation(5, 2 ** 32)).toThrow(RangeError)
    expect(() => numpyPermutation(5, 1.5)).toThrow(RangeError)
  })
})

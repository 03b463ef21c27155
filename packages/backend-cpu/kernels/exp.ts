// exp for the kernels, 4 floats at a time (shared by attention.ts and elementwise.ts).

// exp of 4 floats: cephes' expf polynomial after range reduction by ln 2, with the "magic bias"
// rounding (x log2(e) + 1.5 * 2^23 + 127 leaves round(x log2(e)) + 127 in the low mantissa bits, so
// 2^n is one shift; no float-to-int conversion). Inputs are clamped to [-87.34, 88.38], where
// 2^n stays a normal float; below -87.34 (where expf leaves the normal range) the result is 0, so
// masked scores (-1e9) never produce a subnormal (slow on x86), and above 88.38 +Infinity (expf is
// still finite up to 88.72: 2.2e38 to 3.4e38 become Infinity). NaN stays NaN (wasm's min and max
// propagate it).
// @ts-ignore: decorator
@inline
export function exp4(x: v128): v128 {
  const underflow = f32x4.lt(x, f32x4.splat(-87.33654))
  const clamped = f32x4.min(f32x4.max(x, f32x4.splat(-87.33654)), f32x4.splat(88.37626))
  const magic = f32x4.splat(12583039.0)
  const biased = f32x4.add(f32x4.mul(clamped, f32x4.splat(1.44269504088896341)), magic)
  const n = f32x4.sub(biased, magic)
  const scale = i32x4.shl(biased, 23)
  let r = f32x4.sub(clamped, f32x4.mul(n, f32x4.splat(0.693359375)))
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)))
  let p = f32x4.splat(1.9875691500e-4)
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1))
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1))
  p = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1.0))
  const overflow = f32x4.gt(x, f32x4.splat(88.37626))
  return v128.bitselect(f32x4.splat(Infinity), v128.andnot(f32x4.mul(p, scale), underflow), overflow)
}

// @ts-ignore: decorator
@inline
export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0)
}

// RMSNorm (Llama), forward and backward, one row at a time with 128-bit SIMD:
// y = x * r * w with r = 1 / sqrt(mean(x^2) + eps) per row. The forward saves r per row; the
// backward gives dx = r * (g - xhat * mean(g * xhat)) with g = dy * w and xhat = x * r, and adds
// sum over rows of dy * xhat into dw. Layouts: x, y, dy, dx [rows, d]; w, dw [d]; r [rows].

// @ts-ignore: decorator
@inline
function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3)
}

export function rmsNormForward(x: usize, w: usize, y: usize, r: usize, rows: i32, d: i32, eps: f32): void {
  const rowBytes = <usize>d << 2
  for (let i = 0; i < rows; i++) {
    const xr = x + <usize>i * rowBytes
    const yr = y + <usize>i * rowBytes
    let acc = f32x4.splat(0)
    let tail: f32 = 0
    let c = 0
    for (; c + 4 <= d; c += 4) {
      const v = v128.load(xr + (<usize>c << 2))
      acc = f32x4.add(acc, f32x4.mul(v, v))
    }
    for (; c < d; c++) {
      const v = load<f32>(xr + (<usize>c << 2))
      tail += v * v
    }
    const rstd: f32 = <f32>1.0 / Mathf.sqrt((hsum(acc) + tail) / <f32>d + eps)
    store<f32>(r + (<usize>i << 2), rstd)
    const rv = f32x4.splat(rstd)
    c = 0
    for (; c + 4 <= d; c += 4) {
      const at = <usize>c << 2
      v128.store(yr + at, f32x4.mul(f32x4.mul(v128.load(xr + at), rv), v128.load(w + at)))
    }
    for (; c < d; c++) {
      const at = <usize>c << 2
      store<f32>(yr + at, load<f32>(xr + at) * rstd * load<f32>(w + at))
    }
  }
}

// dw is overwritten.
export function rmsNormBackward(x: usize, w: usize, r: usize, dy: usize, dx: usize, dw: usize, rows: i32, d: i32): void {
  const rowBytes = <usize>d << 2
  memory.fill(dw, 0, rowBytes)
  for (let i = 0; i < rows; i++) {
    const xr = x + <usize>i * rowBytes
    const dyr = dy + <usize>i * rowBytes
    const dxr = dx + <usize>i * rowBytes
    const rstd = load<f32>(r + (<usize>i << 2))
    const rv = f32x4.splat(rstd)
    // mean(g * xhat) with g = dy * w, xhat = x * r.
    let acc = f32x4.splat(0)
    let tail: f32 = 0
    let c = 0
    for (; c + 4 <= d; c += 4) {
      const at = <usize>c << 2
      acc = f32x4.add(acc, f32x4.mul(f32x4.mul(v128.load(dyr + at), v128.load(w + at)), f32x4.mul(v128.load(xr + at), rv)))
    }
    for (; c < d; c++) {
      const at = <usize>c << 2
      tail += load<f32>(dyr + at) * load<f32>(w + at) * load<f32>(xr + at) * rstd
    }
    const m = (hsum(acc) + tail) / <f32>d
    const mv = f32x4.splat(m)
    c = 0
    for (; c + 4 <= d; c += 4) {
      const at = <usize>c << 2
      const dyv = v128.load(dyr + at)
      const xhat = f32x4.mul(v128.load(xr + at), rv)
      v128.store(dxr + at, f32x4.mul(rv, f32x4.sub(f32x4.mul(dyv, v128.load(w + at)), f32x4.mul(xhat, mv))))
      v128.store(dw + at, f32x4.add(v128.load(dw + at), f32x4.mul(dyv, xhat)))
    }
    for (; c < d; c++) {
      const at = <usize>c << 2
      const dyv = load<f32>(dyr + at)
      const xhat = load<f32>(xr + at) * rstd
      store<f32>(dxr + at, rstd * (dyv * load<f32>(w + at) - xhat * m))
      store<f32>(dw + at, load<f32>(dw + at) + dyv * xhat)
    }
  }
}

// Single-precision matrix products for the wasm backend: C [M, N] = A [M, K] x B, B packed per call
// into panels of 8 columns (bp[panel][k][8], zero-padded; read from B [K, N] or, transposed, from
// B [N, K]), then a 4 x 8 register tile: per k, two 4-lane loads of the panel and four
// load-and-splats of A, eight multiplies and adds (128-bit SIMD has no fused multiply-add). A
// transposed operand is copied into row order first (`transposeInto`). Row ranges share nothing
// they write, so threads on one shared memory (the `-shared` build) each take a range of rows.
// Compiled by scripts/build-kernels.mjs into src/internal/kernels/gemmWasm.ts.

export function heapBase(): usize {
  return __heap_base
}

// out [cols, rows] = input [rows, cols] transposed.
export function transposeInto(input: usize, out: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const from = input + ((<usize>r * <usize>cols) << 2)
    for (let c = 0; c < cols; c++) store<f32>(out + ((<usize>c * <usize>rows + <usize>r) << 2), load<f32>(from + (<usize>c << 2)))
  }
}

// Panels [panelStart, panelEnd) of B [K, N] (transB 0) or [N, K] (transB 1): bp[p][k][j] = B(k, 8p + j).
export function packB(b: usize, bp: usize, K: i32, N: i32, transB: i32, panelStart: i32, panelEnd: i32): void {
  for (let p = panelStart; p < panelEnd; p++) {
    const col = p << 3
    const width = min(8, N - col)
    let out = bp + ((<usize>p * <usize>K) << 5)
    if (transB == 0) {
      for (let k = 0; k < K; k++) {
        const row = b + ((<usize>k * <usize>N + <usize>col) << 2)
        if (width == 8) {
          v128.store(out, v128.load(row))
          v128.store(out + 16, v128.load(row + 16))
        } else {
          for (let j = 0; j < 8; j++) store<f32>(out + (<usize>j << 2), j < width ? load<f32>(row + (<usize>j << 2)) : 0)
        }
        out += 32
      }
    } else {
      // Column j of the panel is row col + j of B, read along k.
      for (let j = 0; j < 8; j++) {
        const dst = out + (<usize>j << 2)
        if (j < width) {
          const row = b + ((<usize>(col + j) * <usize>K) << 2)
          for (let k = 0; k < K; k++) store<f32>(dst + (<usize>k << 5), load<f32>(row + (<usize>k << 2)))
        } else {
          for (let k = 0; k < K; k++) store<f32>(dst + (<usize>k << 5), 0)
        }
      }
    }
  }
}

// @ts-ignore: decorator
@inline
function lane(lo: v128, hi: v128, j: i32): f32 {
  switch (j) {
    case 0: return f32x4.extract_lane(lo, 0)
    case 1: return f32x4.extract_lane(lo, 1)
    case 2: return f32x4.extract_lane(lo, 2)
    case 3: return f32x4.extract_lane(lo, 3)
    case 4: return f32x4.extract_lane(hi, 0)
    case 5: return f32x4.extract_lane(hi, 1)
    case 6: return f32x4.extract_lane(hi, 2)
    default: return f32x4.extract_lane(hi, 3)
  }
}

// @ts-ignore: decorator
@inline
function storeRow(o: usize, lo: v128, hi: v128, width: i32): void {
  if (width == 8) {
    v128.store(o, lo)
    v128.store(o + 16, hi)
  } else {
    for (let j = 0; j < width; j++) store<f32>(o + (<usize>j << 2), lane(lo, hi, j))
  }
}

// Rows [rowStart, rowEnd) of C [M, N] = A [M, K] x B (packed by packB).
export function gemm(a: usize, bp: usize, c: usize, K: i32, N: i32, rowStart: i32, rowEnd: i32): void {
  const panels = (N + 7) >> 3
  const rowA = <usize>K << 2
  const rowC = <usize>N << 2
  let i = rowStart
  for (; i + 4 <= rowEnd; i += 4) {
    const a0 = a + <usize>i * rowA
    const a1 = a0 + rowA
    const a2 = a1 + rowA
    const a3 = a2 + rowA
    for (let p = 0; p < panels; p++) {
      let bptr = bp + ((<usize>p * <usize>K) << 5)
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0)
      let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0)
      for (let k = 0; k < K; k++) {
        const off = <usize>k << 2
        const b0 = v128.load(bptr)
        const b1 = v128.load(bptr + 16)
        bptr += 32
        const x0 = v128.load32_splat(a0 + off)
        c00 = f32x4.add(c00, f32x4.mul(x0, b0))
        c01 = f32x4.add(c01, f32x4.mul(x0, b1))
        const x1 = v128.load32_splat(a1 + off)
        c10 = f32x4.add(c10, f32x4.mul(x1, b0))
        c11 = f32x4.add(c11, f32x4.mul(x1, b1))
        const x2 = v128.load32_splat(a2 + off)
        c20 = f32x4.add(c20, f32x4.mul(x2, b0))
        c21 = f32x4.add(c21, f32x4.mul(x2, b1))
        const x3 = v128.load32_splat(a3 + off)
        c30 = f32x4.add(c30, f32x4.mul(x3, b0))
        c31 = f32x4.add(c31, f32x4.mul(x3, b1))
      }
      const col = p << 3
      const width = min(8, N - col)
      const o = c + <usize>i * rowC + (<usize>col << 2)
      storeRow(o, c00, c01, width)
      storeRow(o + rowC, c10, c11, width)
      storeRow(o + 2 * rowC, c20, c21, width)
      storeRow(o + 3 * rowC, c30, c31, width)
    }
  }
  // The last rows of the range, one at a time.
  for (; i < rowEnd; i++) {
    const ar = a + <usize>i * rowA
    for (let p = 0; p < panels; p++) {
      let bptr = bp + ((<usize>p * <usize>K) << 5)
      let lo = f32x4.splat(0), hi = f32x4.splat(0)
      for (let k = 0; k < K; k++) {
        const x = v128.load32_splat(ar + (<usize>k << 2))
        lo = f32x4.add(lo, f32x4.mul(x, v128.load(bptr)))
        hi = f32x4.add(hi, f32x4.mul(x, v128.load(bptr + 16)))
        bptr += 32
      }
      const col = p << 3
      storeRow(c + <usize>i * rowC + (<usize>col << 2), lo, hi, min(8, N - col))
    }
  }
}

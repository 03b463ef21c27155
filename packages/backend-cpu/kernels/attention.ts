// Fused causal/biased attention for the wasm backend, forward and backward, in AssemblyScript
// (compiled by `pnpm --filter @peftkit/backend-cpu build:kernels` to src/internal/kernels/attentionWasm.ts).
//
// One pass per tile of 4 query rows: scores, softmax and the weighted sum of values without ever
// storing a [t, L] matrix (FlashAttention's recipe, 4 rows at a time). The forward saves each row's
// max and 1 / sum of exponentials; the backward recomputes the probabilities from them. Vectors of 4 floats (128-bit SIMD)
// run across key columns for the scores and across the head dimension for the weighted sums; the 4
// rows of a tile give 4 independent accumulators and reuse every key and value vector loaded 4 times.
//
// Layouts (float32, row-major): q, out, dq [b, heads, t, d]; k, v, dk, dv [b, kvHeads, L, d];
// bias [biasBatch ? b : 1, 1, biasRows, L] (biasRows is t or 1); stats [b, heads, t, 2]. Query head
// h = kvHead * groups + i uses kv head kvHead (grouped-query attention). The caller owns all memory:
// JS copies operands in at offsets past heapBase() and results out. Each call covers the
// (batch row, kv head) blocks [blockStart, blockEnd): blocks share nothing they write, so threads
// on one shared memory (the `-shared` build) each take a range, with their own spans and scratch.
//
// Masked keys carry a large negative bias (-1e9). Columns of a row outside the span of its unmasked
// keys are skipped: their probabilities are exactly 0 in float32, so skipping changes no value. A
// row with no unmasked key is computed over every column, as the plain softmax would.

import { exp1, exp4 } from "./exp"

const MASK_THRESHOLD: f32 = -1.0e8

export function heapBase(): usize {
  return __heap_base
}

// First and one-past-last unmasked column of a bias row (the whole row when none is unmasked), and
// the union of those spans over a tile's rows, lo rounded down to a multiple of 4.
let spanLo: i32 = 0
let spanHi: i32 = 0

// Each bias row's span, [lo, hi) as two i32, computed once per call for every bias row (blocks
// share them): the whole row when no key of it is unmasked.
function computeSpans(bias: usize, rows: i32, length: i32, spans: usize): void {
  for (let r = 0; r < rows; r++) {
    const row = bias + ((<usize>r * length) << 2)
    let lo = 0
    while (lo < length && load<f32>(row + (<usize>lo << 2)) <= MASK_THRESHOLD) lo++
    let hi = length
    if (lo == length) lo = 0
    else while (load<f32>(row + (<usize>(hi - 1) << 2)) <= MASK_THRESHOLD) hi--
    store<i32>(spans + (<usize>r << 3), lo)
    store<i32>(spans + (<usize>r << 3) + 4, hi)
  }
}

// @ts-ignore: decorator
@inline
function widenSpan(spans: usize, biasRow: i32): void {
  spanLo = min(spanLo, load<i32>(spans + (<usize>biasRow << 3)) & ~3)
  spanHi = max(spanHi, load<i32>(spans + (<usize>biasRow << 3) + 4))
}

// A tile: up to 4 rows of one (batch row, kv head) block. Rows past `count` repeat the last real row
// (same pointers), so every loop runs 4 rows; their results are never stored or accumulated.
let count: i32 = 0
let row0: i32 = 0
let row1: i32 = 0
let row2: i32 = 0
let row3: i32 = 0
let bias0: usize = 0
let bias1: usize = 0
let bias2: usize = 0
let bias3: usize = 0

function setTile(firstRow: i32, n: i32, firstPosition: i32, t: i32, bias: usize, spans: usize, hasBias: i32, biasBatch: i32, biasRows: i32, bi: i32, length: i32): void {
  count = n
  row0 = firstRow
  row1 = firstRow + min(1, n - 1)
  row2 = firstRow + min(2, n - 1)
  row3 = firstRow + min(3, n - 1)
  spanLo = length
  spanHi = 0
  if (hasBias == 0) {
    spanLo = 0
    spanHi = length
    return
  }
  const r0 = biasRowIndex(biasBatch, biasRows, bi, firstPosition % t)
  const r1 = biasRowIndex(biasBatch, biasRows, bi, (firstPosition + min(1, n - 1)) % t)
  const r2 = biasRowIndex(biasBatch, biasRows, bi, (firstPosition + min(2, n - 1)) % t)
  const r3 = biasRowIndex(biasBatch, biasRows, bi, (firstPosition + min(3, n - 1)) % t)
  bias0 = bias + ((<usize>r0 * length) << 2)
  bias1 = bias + ((<usize>r1 * length) << 2)
  bias2 = bias + ((<usize>r2 * length) << 2)
  bias3 = bias + ((<usize>r3 * length) << 2)
  widenSpan(spans, r0)
  widenSpan(spans, r1)
  widenSpan(spans, r2)
  widenSpan(spans, r3)
}

// @ts-ignore: decorator
@inline
function biasRowIndex(biasBatch: i32, biasRows: i32, bi: i32, i: i32): i32 {
  return (biasBatch != 0 ? bi : 0) * biasRows + (biasRows == 1 ? 0 : i)
}

// out[r][j] = x_r . M[:, j] (+ bias_r[j]) over the tile's rows r, for j in [lo, hi); m is [d, L],
// x rows are x + row * d floats, out rows are L floats apart.
function scoreTile(x: usize, m: usize, withBias: i32, out: usize, d: i32, length: i32, lo: i32, hi: i32): void {
  const stride = <usize>length << 2
  const rowBytes = <usize>d << 2
  const x0 = x + <usize>row0 * rowBytes
  const x1 = x + <usize>row1 * rowBytes
  const x2 = x + <usize>row2 * rowBytes
  const x3 = x + <usize>row3 * rowBytes
  const o1 = out + stride
  const o2 = o1 + stride
  const o3 = o2 + stride
  let j = lo
  // 8 columns at a time: 8 independent accumulators hide the add latency.
  for (; j + 8 <= hi; j += 8) {
    const at = <usize>j << 2
    let a0 = withBias != 0 ? v128.load(bias0 + at) : f32x4.splat(0)
    let a1 = withBias != 0 ? v128.load(bias1 + at) : f32x4.splat(0)
    let a2 = withBias != 0 ? v128.load(bias2 + at) : f32x4.splat(0)
    let a3 = withBias != 0 ? v128.load(bias3 + at) : f32x4.splat(0)
    let b0 = withBias != 0 ? v128.load(bias0 + at + 16) : f32x4.splat(0)
    let b1 = withBias != 0 ? v128.load(bias1 + at + 16) : f32x4.splat(0)
    let b2 = withBias != 0 ? v128.load(bias2 + at + 16) : f32x4.splat(0)
    let b3 = withBias != 0 ? v128.load(bias3 + at + 16) : f32x4.splat(0)
    let col = m + at
    for (let c = 0; c < d; c++) {
      const ka = v128.load(col)
      const kb = v128.load(col + 16)
      const cc = <usize>c << 2
      const s0 = v128.load32_splat(x0 + cc)
      const s1 = v128.load32_splat(x1 + cc)
      const s2 = v128.load32_splat(x2 + cc)
      const s3 = v128.load32_splat(x3 + cc)
      a0 = f32x4.add(a0, f32x4.mul(s0, ka))
      a1 = f32x4.add(a1, f32x4.mul(s1, ka))
      a2 = f32x4.add(a2, f32x4.mul(s2, ka))
      a3 = f32x4.add(a3, f32x4.mul(s3, ka))
      b0 = f32x4.add(b0, f32x4.mul(s0, kb))
      b1 = f32x4.add(b1, f32x4.mul(s1, kb))
      b2 = f32x4.add(b2, f32x4.mul(s2, kb))
      b3 = f32x4.add(b3, f32x4.mul(s3, kb))
      col += stride
    }
    v128.store(out + at, a0)
    v128.store(o1 + at, a1)
    v128.store(o2 + at, a2)
    v128.store(o3 + at, a3)
    v128.store(out + at + 16, b0)
    v128.store(o1 + at + 16, b1)
    v128.store(o2 + at + 16, b2)
    v128.store(o3 + at + 16, b3)
  }
  for (; j + 4 <= hi; j += 4) {
    const at = <usize>j << 2
    let a0 = withBias != 0 ? v128.load(bias0 + at) : f32x4.splat(0)
    let a1 = withBias != 0 ? v128.load(bias1 + at) : f32x4.splat(0)
    let a2 = withBias != 0 ? v128.load(bias2 + at) : f32x4.splat(0)
    let a3 = withBias != 0 ? v128.load(bias3 + at) : f32x4.splat(0)
    let col = m + at
    for (let c = 0; c < d; c++) {
      const kv = v128.load(col)
      const cc = <usize>c << 2
      a0 = f32x4.add(a0, f32x4.mul(v128.load32_splat(x0 + cc), kv))
      a1 = f32x4.add(a1, f32x4.mul(v128.load32_splat(x1 + cc), kv))
      a2 = f32x4.add(a2, f32x4.mul(v128.load32_splat(x2 + cc), kv))
      a3 = f32x4.add(a3, f32x4.mul(v128.load32_splat(x3 + cc), kv))
      col += stride
    }
    v128.store(out + at, a0)
    v128.store(o1 + at, a1)
    v128.store(o2 + at, a2)
    v128.store(o3 + at, a3)
  }
  for (; j < hi; j++) {
    const at = <usize>j << 2
    let a0: f32 = withBias != 0 ? load<f32>(bias0 + at) : 0
    let a1: f32 = withBias != 0 ? load<f32>(bias1 + at) : 0
    let a2: f32 = withBias != 0 ? load<f32>(bias2 + at) : 0
    let a3: f32 = withBias != 0 ? load<f32>(bias3 + at) : 0
    for (let c = 0; c < d; c++) {
      const kv = load<f32>(m + ((<usize>c * length + j) << 2))
      const cc = <usize>c << 2
      a0 += load<f32>(x0 + cc) * kv
      a1 += load<f32>(x1 + cc) * kv
      a2 += load<f32>(x2 + cc) * kv
      a3 += load<f32>(x3 + cc) * kv
    }
    store<f32>(out + at, a0)
    store<f32>(o1 + at, a1)
    store<f32>(o2 + at, a2)
    store<f32>(o3 + at, a3)
  }
}

// Row max of p[lo, hi).
function rowMax(p: usize, lo: i32, hi: i32): f32 {
  let mv = f32x4.splat(-Infinity)
  let ms: f32 = -Infinity
  let j = lo
  for (; j + 4 <= hi; j += 4) mv = f32x4.max(mv, v128.load(p + (<usize>j << 2)))
  for (; j < hi; j++) ms = max(ms, load<f32>(p + (<usize>j << 2)))
  return max(max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3))), ms)
}

// p[j] = exp(p[j] - shift) in place over [lo, hi); returns the sum.
function expRow(p: usize, shift: f32, lo: i32, hi: i32): f32 {
  const sv = f32x4.splat(shift)
  let sumv = f32x4.splat(0)
  let sums: f32 = 0
  let j = lo
  for (; j + 4 <= hi; j += 4) {
    const at = p + (<usize>j << 2)
    const e = exp4(f32x4.sub(v128.load(at), sv))
    v128.store(at, e)
    sumv = f32x4.add(sumv, e)
  }
  for (; j < hi; j++) {
    const at = p + (<usize>j << 2)
    const e = exp1(load<f32>(at) - shift)
    store<f32>(at, e)
    sums += e
  }
  return f32x4.extract_lane(sumv, 0) + f32x4.extract_lane(sumv, 1) + f32x4.extract_lane(sumv, 2) + f32x4.extract_lane(sumv, 3) + sums
}

// p[j] *= scale over [lo, hi).
function scaleRow(p: usize, scale: f32, lo: i32, hi: i32): void {
  const sv = f32x4.splat(scale)
  let j = lo
  for (; j + 4 <= hi; j += 4) v128.store(p + (<usize>j << 2), f32x4.mul(v128.load(p + (<usize>j << 2)), sv))
  for (; j < hi; j++) store<f32>(p + (<usize>j << 2), load<f32>(p + (<usize>j << 2)) * scale)
}

// out_r[c..c+4] = scale_r * sum_j w_r[j] M[j, c..c+4] for the tile's real rows; m is [L, d], w rows
// are L floats apart, out rows are out + row * d floats.
function weightedSumTile(w: usize, m: usize, out: usize, d: i32, length: i32, lo: i32, hi: i32, s0: f32, s1: f32, s2: f32, s3: f32): void {
  const stride = <usize>length << 2
  const rowBytes = <usize>d << 2
  const w1 = w + stride
  const w2 = w1 + stride
  const w3 = w2 + stride
  let c = 0
  // 8 output columns at a time where d allows: 8 independent accumulators.
  for (; c + 8 <= d; c += 8) {
    let a0 = f32x4.splat(0)
    let a1 = f32x4.splat(0)
    let a2 = f32x4.splat(0)
    let a3 = f32x4.splat(0)
    let b0 = f32x4.splat(0)
    let b1 = f32x4.splat(0)
    let b2 = f32x4.splat(0)
    let b3 = f32x4.splat(0)
    let mp = m + ((<usize>lo * d + c) << 2)
    for (let j = lo; j < hi; j++) {
      const ma = v128.load(mp)
      const mb = v128.load(mp + 16)
      const at = <usize>j << 2
      const p0 = v128.load32_splat(w + at)
      const p1 = v128.load32_splat(w1 + at)
      const p2 = v128.load32_splat(w2 + at)
      const p3 = v128.load32_splat(w3 + at)
      a0 = f32x4.add(a0, f32x4.mul(p0, ma))
      a1 = f32x4.add(a1, f32x4.mul(p1, ma))
      a2 = f32x4.add(a2, f32x4.mul(p2, ma))
      a3 = f32x4.add(a3, f32x4.mul(p3, ma))
      b0 = f32x4.add(b0, f32x4.mul(p0, mb))
      b1 = f32x4.add(b1, f32x4.mul(p1, mb))
      b2 = f32x4.add(b2, f32x4.mul(p2, mb))
      b3 = f32x4.add(b3, f32x4.mul(p3, mb))
      mp += rowBytes
    }
    const cc = <usize>c << 2
    v128.store(out + <usize>row0 * rowBytes + cc, f32x4.mul(a0, f32x4.splat(s0)))
    v128.store(out + <usize>row0 * rowBytes + cc + 16, f32x4.mul(b0, f32x4.splat(s0)))
    if (count > 1) {
      v128.store(out + <usize>row1 * rowBytes + cc, f32x4.mul(a1, f32x4.splat(s1)))
      v128.store(out + <usize>row1 * rowBytes + cc + 16, f32x4.mul(b1, f32x4.splat(s1)))
    }
    if (count > 2) {
      v128.store(out + <usize>row2 * rowBytes + cc, f32x4.mul(a2, f32x4.splat(s2)))
      v128.store(out + <usize>row2 * rowBytes + cc + 16, f32x4.mul(b2, f32x4.splat(s2)))
    }
    if (count > 3) {
      v128.store(out + <usize>row3 * rowBytes + cc, f32x4.mul(a3, f32x4.splat(s3)))
      v128.store(out + <usize>row3 * rowBytes + cc + 16, f32x4.mul(b3, f32x4.splat(s3)))
    }
  }
  for (; c < d; c += 4) {
    let a0 = f32x4.splat(0)
    let a1 = f32x4.splat(0)
    let a2 = f32x4.splat(0)
    let a3 = f32x4.splat(0)
    let mp = m + ((<usize>lo * d + c) << 2)
    for (let j = lo; j < hi; j++) {
      const mv = v128.load(mp)
      const at = <usize>j << 2
      a0 = f32x4.add(a0, f32x4.mul(v128.load32_splat(w + at), mv))
      a1 = f32x4.add(a1, f32x4.mul(v128.load32_splat(w1 + at), mv))
      a2 = f32x4.add(a2, f32x4.mul(v128.load32_splat(w2 + at), mv))
      a3 = f32x4.add(a3, f32x4.mul(v128.load32_splat(w3 + at), mv))
      mp += rowBytes
    }
    const cc = <usize>c << 2
    v128.store(out + <usize>row0 * rowBytes + cc, f32x4.mul(a0, f32x4.splat(s0)))
    if (count > 1) v128.store(out + <usize>row1 * rowBytes + cc, f32x4.mul(a1, f32x4.splat(s1)))
    if (count > 2) v128.store(out + <usize>row2 * rowBytes + cc, f32x4.mul(a2, f32x4.splat(s2)))
    if (count > 3) v128.store(out + <usize>row3 * rowBytes + cc, f32x4.mul(a3, f32x4.splat(s3)))
  }
}

// acc[j, c..c+4] += sum_r w_r[j] x_r[c..c+4] over [lo, hi); acc is [L, d]; rows past `count` have w = 0.
function accumulateTile(w: usize, x: usize, acc: usize, d: i32, length: i32, lo: i32, hi: i32): void {
  const stride = <usize>length << 2
  const rowBytes = <usize>d << 2
  const w1 = w + stride
  const w2 = w1 + stride
  const w3 = w2 + stride
  for (let c = 0; c < d; c += 4) {
    const cc = <usize>c << 2
    const x0 = v128.load(x + <usize>row0 * rowBytes + cc)
    const x1 = v128.load(x + <usize>row1 * rowBytes + cc)
    const x2 = v128.load(x + <usize>row2 * rowBytes + cc)
    const x3 = v128.load(x + <usize>row3 * rowBytes + cc)
    let ap = acc + ((<usize>lo * d + c) << 2)
    for (let j = lo; j < hi; j++) {
      const at = <usize>j << 2
      let a = v128.load(ap)
      a = f32x4.add(a, f32x4.add(
        f32x4.add(f32x4.mul(v128.load32_splat(w + at), x0), f32x4.mul(v128.load32_splat(w1 + at), x1)),
        f32x4.add(f32x4.mul(v128.load32_splat(w2 + at), x2), f32x4.mul(v128.load32_splat(w3 + at), x3))
      ))
      v128.store(ap, a)
      ap += rowBytes
    }
  }
}

// dst [cols, rows] = transpose of src [rows, cols].
function transpose(src: usize, dst: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      store<f32>(dst + ((<usize>c * rows + r) << 2), load<f32>(src + ((<usize>r * cols + c) << 2)))
    }
  }
}

// A row's softmax statistics for the backward: its max and 1 / sum(exp(s - max)). Not the
// log-sum-exp: for a row whose keys are all masked (scores near -1e9) max + log(sum) rounds to max
// in float32, and the recomputed probabilities would be off by the factor sum.
// @ts-ignore: decorator
@inline
function saveStats(stats: usize, row: i32, m: f32, z: f32): void {
  store<f32>(stats + (<usize>row << 3), m)
  store<f32>(stats + (<usize>row << 3) + 4, <f32>1.0 / z)
}

// @ts-ignore: decorator
@inline
function rowOf(r: i32): i32 {
  return r == 0 ? row0 : r == 1 ? row1 : r == 2 ? row2 : row3
}

// spans needs 2 i32 per bias row; scratch (d * L + 4 * L) floats.
export function attentionForward(
  q: usize, k: usize, v: usize, bias: usize, out: usize, stats: usize, spans: usize, scratch: usize,
  b: i32, heads: i32, kvHeads: i32, t: i32, length: i32, d: i32,
  hasBias: i32, biasBatch: i32, biasRows: i32, blockStart: i32, blockEnd: i32
): void {
  const groups = heads / kvHeads
  if (hasBias != 0) computeSpans(bias, (biasBatch != 0 ? b : 1) * biasRows, length, spans)
  const kt = scratch
  const scores = scratch + ((<usize>d * length) << 2)
  const stride = <usize>length << 2
  const blockRows = groups * t
  for (let blk = blockStart; blk < blockEnd; blk++) {
    {
      const bi = blk / kvHeads
      const kh = blk % kvHeads
      const block = (<usize>blk * length * d) << 2
      transpose(k + block, kt, length, d)
      const first = (bi * heads + kh * groups) * t
      for (let r = 0; r < blockRows; r += 4) {
        setTile(first + r, min(4, blockRows - r), r, t, bias, spans, hasBias, biasBatch, biasRows, bi, length)
        const lo = spanLo
        const hi = spanHi
        scoreTile(q, kt, hasBias, scores, d, length, lo, hi)
        const m0 = rowMax(scores, lo, hi)
        const m1 = rowMax(scores + stride, lo, hi)
        const m2 = rowMax(scores + 2 * stride, lo, hi)
        const m3 = rowMax(scores + 3 * stride, lo, hi)
        const z0 = expRow(scores, m0, lo, hi)
        const z1 = expRow(scores + stride, m1, lo, hi)
        const z2 = expRow(scores + 2 * stride, m2, lo, hi)
        const z3 = expRow(scores + 3 * stride, m3, lo, hi)
        weightedSumTile(scores, v + block, out, d, length, lo, hi, <f32>1.0 / z0, <f32>1.0 / z1, <f32>1.0 / z2, <f32>1.0 / z3)
        saveStats(stats, row0, m0, z0)
        if (count > 1) saveStats(stats, row1, m1, z1)
        if (count > 2) saveStats(stats, row2, m2, z2)
        if (count > 3) saveStats(stats, row3, m3, z3)
      }
    }
  }
}

// spans needs 2 i32 per bias row; scratch (2 * d * L + 8 * L) floats. dk and dv are overwritten.
export function attentionBackward(
  q: usize, k: usize, v: usize, bias: usize, out: usize, dout: usize, stats: usize,
  dq: usize, dk: usize, dv: usize, spans: usize, scratch: usize,
  b: i32, heads: i32, kvHeads: i32, t: i32, length: i32, d: i32,
  hasBias: i32, biasBatch: i32, biasRows: i32, blockStart: i32, blockEnd: i32
): void {
  const groups = heads / kvHeads
  if (hasBias != 0) computeSpans(bias, (biasBatch != 0 ? b : 1) * biasRows, length, spans)
  const kt = scratch
  const vt = kt + ((<usize>d * length) << 2)
  const probs = vt + ((<usize>d * length) << 2)
  const stride = <usize>length << 2
  const dscores = probs + 4 * stride
  const rowBytes = <usize>d << 2
  const blockRows = groups * t
  const blockBytes = (<usize>length * d) << 2
  memory.fill(dk + <usize>blockStart * blockBytes, 0, <usize>(blockEnd - blockStart) * blockBytes)
  memory.fill(dv + <usize>blockStart * blockBytes, 0, <usize>(blockEnd - blockStart) * blockBytes)
  for (let blk = blockStart; blk < blockEnd; blk++) {
    {
      const bi = blk / kvHeads
      const kh = blk % kvHeads
      const block = <usize>blk * blockBytes
      transpose(k + block, kt, length, d)
      transpose(v + block, vt, length, d)
      const first = (bi * heads + kh * groups) * t
      for (let r = 0; r < blockRows; r += 4) {
        setTile(first + r, min(4, blockRows - r), r, t, bias, spans, hasBias, biasBatch, biasRows, bi, length)
        const lo = spanLo
        const hi = spanHi
        // P from the saved row max and 1 / sum; dP = dO V^T.
        scoreTile(q, kt, hasBias, probs, d, length, lo, hi)
        scoreTile(dout, vt, 0, dscores, d, length, lo, hi)
        for (let tr = 0; tr < 4; tr++) {
          const p = probs + <usize>tr * stride
          const ds = dscores + <usize>tr * stride
          if (tr >= count) {
            // A repeated row: zero weights, so it adds nothing to dK and dV.
            memory.fill(p + (<usize>lo << 2), 0, <usize>(hi - lo) << 2)
            memory.fill(ds + (<usize>lo << 2), 0, <usize>(hi - lo) << 2)
            continue
          }
          const row = rowOf(tr)
          expRow(p, load<f32>(stats + (<usize>row << 3)), lo, hi)
          scaleRow(p, load<f32>(stats + (<usize>row << 3) + 4), lo, hi)
          // delta = dO . O = rowsum(dP * P); then dS = P * (dP - delta).
          let deltav = f32x4.splat(0)
          const doRow = dout + <usize>row * rowBytes
          const oRow = out + <usize>row * rowBytes
          for (let c = 0; c < d; c += 4) deltav = f32x4.add(deltav, f32x4.mul(v128.load(doRow + (<usize>c << 2)), v128.load(oRow + (<usize>c << 2))))
          const delta = f32x4.extract_lane(deltav, 0) + f32x4.extract_lane(deltav, 1) + f32x4.extract_lane(deltav, 2) + f32x4.extract_lane(deltav, 3)
          const dv4 = f32x4.splat(delta)
          let j = lo
          for (; j + 4 <= hi; j += 4) {
            const at = <usize>j << 2
            v128.store(ds + at, f32x4.mul(v128.load(p + at), f32x4.sub(v128.load(ds + at), dv4)))
          }
          for (; j < hi; j++) {
            const at = <usize>j << 2
            store<f32>(ds + at, load<f32>(p + at) * (load<f32>(ds + at) - delta))
          }
        }
        // dQ = dS K; dK += dS^T q; dV += P^T dO.
        weightedSumTile(dscores, k + block, dq, d, length, lo, hi, 1, 1, 1, 1)
        accumulateTile(dscores, q, dk + block, d, length, lo, hi)
        accumulateTile(probs, dout, dv + block, d, length, lo, hi)
      }
    }
  }
}

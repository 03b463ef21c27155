/**
 * The top-r singular triplets of a weight W [out, in], for PiSSA's initialisation: exactly, or by
 * Halko, Martinsson and Tropp's randomised SVD (2011, Algorithm 5.1 with 4.4's power iterations), the
 * algorithm of torch's `svd_lowrank` that PEFT's `pissa_niter_K` calls with q = r.
 *
 * Both end the same way: an orthonormal basis Q [m, q] of (approximately) W's top-r column space,
 * then the SVD of the small projected matrix Q^T W [q, n] (Rayleigh-Ritz). The big products run in
 * tfjs; the small dense factorisations run on the host in float64 with ml-matrix (QR of an [m, q]
 * block, SVD of [q, n], the symmetric eigensolver of an [n, n] Gram matrix): tfjs has no SVD or
 * eigensolver, and its `tf.linalg.qr` builds Householder reflections one small kernel at a time.
 *
 * - exact: the eigenvectors of the smaller Gram matrix (W^T W or W W^T, formed in tfjs) give V_r,
 *   then Q = orth(W V_r) and the Rayleigh-Ritz step above, which recovers float32 accuracy.
 *   O(min(out, in)^3) on the host.
 * - niter K: Gaussian sketch X = A G (G [n, r], seeded), Q = qr(X), then K times Q = qr(A Q') with
 *   Q' = qr(A^T Q), where A = W, or W^T when W is wide (torch works on the tall side). O(out in r K).
 *
 * Synchronous: the factors are read back to the host (small blocks, and the Gram for the exact SVD),
 * which happens when an adapter is created or re-initialised, never in a training step.
 */
import * as tf from "@tensorflow/tfjs-core"
import { EigenvalueDecomposition, Matrix, QrDecomposition, SingularValueDecomposition } from "ml-matrix"

/** W ~ U diag(s) V^T restricted to the top r: u [out, r], s descending, v [in, r]. */
export interface SingularTriplets {
  readonly u: tf.Tensor2D
  readonly s: ReadonlyArray<number>
  readonly v: tf.Tensor2D
}

export interface TopSingularOptions {
  /** Power iterations of the randomised SVD; absent: the exact SVD. */
  readonly niter?: number | undefined
  /** The Gaussian sketch's seed (randomised SVD only); tfjs reads 0 as unseeded. */
  readonly seed?: number
}

const toHost = (tensor: tf.Tensor2D): Matrix => {
  const [rows, cols] = tensor.shape
  return Matrix.from1DArray(rows, cols, Array.from(tensor.dataSync()))
}

const toDevice = (matrix: Matrix): tf.Tensor2D => tf.tensor2d(Float32Array.from(matrix.to1DArray()), [matrix.rows, matrix.columns])

/** An orthonormal basis of the columns of x [m, q] (m >= q): the thin Q of a host Householder QR. */
const orthonormal = (x: tf.Tensor2D): tf.Tensor2D => toDevice(new QrDecomposition(toHost(x)).orthogonalMatrix)

/**
 * Top-`rank` singular triplets of `weight` [out, in] (rank at most min(out, in)). Call inside
 * `tf.tidy`: the returned tensors are new.
 */
export const topSingularTriplets = (weight: tf.Tensor2D, rank: number, options: TopSingularOptions = {}): SingularTriplets => {
  const [out, inF] = weight.shape
  if (!Number.isInteger(rank) || rank < 1 || rank > Math.min(out, inF)) throw new RangeError(`rank ${rank} is not in 1..${Math.min(out, inF)}`)
  // A = W, or W^T when W is wide, so that A [m, n] is tall: products by A / A^T via transpose flags.
  const wide = out < inF
  const times = (x: tf.Tensor2D): tf.Tensor2D => (wide ? tf.matMul(weight, x, true, false) : tf.matMul(weight, x)) // A x
  const timesT = (x: tf.Tensor2D): tf.Tensor2D => (wide ? tf.matMul(weight, x) : tf.matMul(weight, x, true, false)) // A^T x
  const n = wide ? out : inF
  let q: tf.Tensor2D
  if (options.niter === undefined) {
    // V_r of A from the n x n Gram A^T A (float64 eigensolver), then Q = orth(A V_r).
    const gram = toHost(wide ? tf.matMul(weight, weight, false, true) : tf.matMul(weight, weight, true, false))
    const eig = new EigenvalueDecomposition(gram, { assumeSymmetric: true })
    const order = eig.realEigenvalues.map((value, index) => [value, index] as const).sort((a, b) => b[0] - a[0])
    const vr = new Matrix(n, rank)
    order.slice(0, rank).forEach(([, column], k) => {
      for (let row = 0; row < n; row++) vr.set(row, k, eig.eigenvectorMatrix.get(row, column))
    })
    q = orthonormal(times(toDevice(vr)))
  } else {
    q = orthonormal(times(tf.randomNormal([n, rank], 0, 1, "float32", options.seed) as tf.Tensor2D))
    for (let i = 0; i < options.niter; i++) q = orthonormal(times(orthonormal(timesT(q))))
  }
  // Rayleigh-Ritz: the SVD of B = Q^T A [q, n], small, on the host.
  const svd = new SingularValueDecomposition(toHost(tf.transpose(timesT(q)) as tf.Tensor2D), { autoTranspose: true })
  const left: tf.Tensor2D = tf.matMul(q, toDevice(svd.leftSingularVectors.subMatrix(0, rank - 1, 0, rank - 1)))
  const right = toDevice(svd.rightSingularVectors.subMatrix(0, n - 1, 0, rank - 1))
  const s = svd.diagonal.slice(0, rank)
  return wide ? { u: right, s, v: left } : { u: left, s, v: right }
}

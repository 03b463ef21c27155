/**
 * A chain as one standard LoRA. The chain's total update is
 *   sum_l b_l a_l = [b_1 ... b_L] [a_1; ...; a_L]
 * (each link's scale folded into b_l), a LoRA of rank R = sum of the link ranks, exactly. Saved
 * with r = lora_alpha = R (scale 1), it loads in PEFT onto the ORIGINAL base model and reproduces
 * the chain, with no merged full weights to ship.
 *
 * A DoRA chain (links with a row scale, W_l = D_l (W_{l-1} + b_l a_l)) is one DoRA exactly:
 *   W_L = D (W_0 + sum_l b_l a_l / P_l)      D = prod_l D_l, P_l = prod_{k<l} D_k (row-wise)
 * so the factors concatenate with b'_l = b_l / P_l, and the magnitude is m = D ||W_0 + B'A'||_row,
 * which is D ||W_{L-1} / P_L + b'_L a_L||_row: computed from the live weight, W_0 is not needed.
 *
 * `compressUpdate` truncates such an update to a chosen rank by SVD: QR of both factors, then the
 * SVD of the small R x R core (ml-matrix, float64), so the full [out, in] matrix is never formed
 * unless a layer is smaller than R. The relative Frobenius error it introduces is exact: the
 * discarded singular values.
 */
import type { FileSystem } from "@effect/platform"
import { ConfigError, type FileError, InvalidCheckpoint, type PeftRowOrder, type PeftSaveOptions, savePeftAdapter } from "@peftkit/core"
import { doraFormat, exactPatternKey, type LoraConfig, loraConfig, loraFormat } from "@peftkit/lora"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { Matrix, QrDecomposition, SingularValueDecomposition } from "ml-matrix"
import type { Linear } from "@peftkit/core"
import type { Chain, LinkUpdate, ChainableConfig } from "./Chain.js"
import { readHost } from "./internal/readHost.js"

/** One layer's low-rank update: delta = b a, b [out, rank], a [rank, in], row major. */
export interface LowRankUpdate {
  readonly moduleName: string
  readonly outFeatures: number
  readonly inFeatures: number
  readonly rank: number
  readonly a: Float32Array
  readonly b: Float32Array
  /** DoRA's magnitude [out] when the chain rescales rows: the update is then a DoRA, not a plain LoRA. */
  readonly magnitude?: Float32Array
}

export interface ChainLora {
  readonly rank: number
  readonly updates: ReadonlyArray<LowRankUpdate>
  /**
   * The model's output-row order in PEFT files (from the chain's adapters), which `saveChainLora`
   * applies; absent for a chain read back from PEFT files (already in file order).
   */
  readonly rowOrder?: PeftRowOrder | undefined
}


/** Concatenates factors column-wise (b) and row-wise (a). */
const concatenate = (moduleName: string, outFeatures: number, inFeatures: number, parts: ReadonlyArray<{ rank: number; a: Float32Array; b: Float32Array }>): LowRankUpdate => {
  const rank = parts.reduce((sum, part) => sum + part.rank, 0)
  const a = new Float32Array(rank * inFeatures)
  const b = new Float32Array(outFeatures * rank)
  let offset = 0
  for (const part of parts) {
    a.set(part.a, offset * inFeatures)
    for (let row = 0; row < outFeatures; row++) {
      b.set(part.b.subarray(row * part.rank, (row + 1) * part.rank), row * rank + offset)
    }
    offset += part.rank
  }
  return { moduleName, outFeatures, inFeatures, rank, a, b }
}

type Part = { readonly rank: number; readonly a: Float32Array; readonly b: Float32Array; readonly rowScale?: Float32Array | undefined }

/**
 * The whole chain (merged links plus the link in training) as one LoRA of rank sum(r_l), exactly;
 * a DoRA chain as one DoRA (see above; its current link must not be merged). Fails with
 * `InvalidCheckpoint` when the variant has no low-rank factors (use `compressChain`).
 */
export const exportChain = <Config extends ChainableConfig>(chain: Chain<Config>): Effect.Effect<ChainLora, InvalidCheckpoint> =>
  Effect.gen(function* () {
    const updates: Array<LowRankUpdate> = []
    for (const { layer, adapter } of chain.adapters.entries) {
      if (adapter.factors === undefined) {
        return yield* new InvalidCheckpoint({ path: "chain", tensor: layer.name, reason: `variant '${adapter.variant}' has no low-rank factors; compress the chain instead` })
      }
      const parts: Array<Part> = []
      for (const record of chain.history) {
        const update: LinkUpdate | undefined = record.updates.get(layer.name)
        if (update === undefined) continue
        if (update.kind !== "factors") {
          return yield* new InvalidCheckpoint({ path: "chain", tensor: layer.name, reason: "a link has no low-rank factors; compress the chain instead" })
        }
        parts.push(update)
      }
      // The current link is part of the update whether or not it is merged into W yet.
      const { a, b, rowScale } = adapter.factors()
      const current: Part = { rank: a.shape[0], a: yield* readHost(a), b: yield* readHost(b), rowScale: rowScale === undefined ? undefined : yield* readHost(rowScale) }
      if (!parts.some((part) => part.rowScale !== undefined) && current.rowScale === undefined) {
        updates.push(concatenate(layer.name, layer.outFeatures, layer.inFeatures, [...parts, current]))
        continue
      }
      // The current link's row scale was computed against W as it is before its merge.
      if (layer.merged) return yield* new InvalidCheckpoint({ path: "chain", tensor: layer.name, reason: "the current DoRA link is merged: unmerge the adapters before exporting" })
      updates.push(yield* rowScaledUpdate(layer, parts, current))
    }
    const rank = updates[0]?.rank ?? 0
    return { rank, updates, rowOrder: chain.adapters.rowOrder }
  })

/** A DoRA chain's layer as one DoRA: b'_l = b_l / P_l, m = D ||W_{L-1} / P_L + b'_L a_L|| (see the module comment). */
const rowScaledUpdate = (layer: Linear, history: ReadonlyArray<Part>, current: Part): Effect.Effect<LowRankUpdate> => {
  const out = layer.outFeatures
  const prefix = new Float64Array(out).fill(1)
  const divided = [...history, current].map((part) => {
    const b = new Float32Array(part.b.length)
    for (let row = 0; row < out; row++) {
      for (let k = 0; k < part.rank; k++) b[row * part.rank + k] = part.b[row * part.rank + k]! / prefix[row]!
    }
    // The scale of link l divides every later link's b.
    if (part !== current && part.rowScale !== undefined) part.rowScale.forEach((scale, row) => (prefix[row]! *= scale))
    return { rank: part.rank, a: part.a, b }
  })
  const last = divided[divided.length - 1]!
  const norm = tf.tidy(() => {
    const v = tf.add(tf.div(layer.weight, tf.tensor2d(Float32Array.from(prefix), [out, 1])), tf.matMul(tf.tensor2d(last.b, [out, last.rank]), tf.tensor2d(last.a, [last.rank, layer.inFeatures])))
    return tf.sqrt(tf.sum(tf.square(v), 1))
  })
  return Effect.map(readHost(norm), (n) => {
    const magnitude = new Float32Array(out)
    for (let row = 0; row < out; row++) magnitude[row] = prefix[row]! * (current.rowScale?.[row] ?? 1) * n[row]!
    return { ...concatenate(layer.name, out, layer.inFeatures, divided), magnitude }
  })
}

/** The dense [out, in] matrix b a (float64), for checks and small layers. */
export const denseUpdate = (update: LowRankUpdate): Matrix =>
  Matrix.from1DArray(update.outFeatures, update.rank, Array.from(update.b)).mmul(
    Matrix.from1DArray(update.rank, update.inFeatures, Array.from(update.a))
  )

export interface CompressedUpdate {
  readonly update: LowRankUpdate
  /** All singular values of the uncompressed update, descending. */
  readonly singularValues: ReadonlyArray<number>
  /** ||delta - delta_k||_F / ||delta||_F. */
  readonly relativeError: number
}

/**
 * Best rank-`rank` approximation of one update (Eckart-Young), with the error it introduces. A layer
 * whose update has fewer than `rank` singular values gets zero columns, so every layer of a
 * compressed chain has the same rank (one PEFT `r`) and stays exact.
 */
export const compressUpdate = (update: LowRankUpdate, rank: number): CompressedUpdate => {
  const { outFeatures: out, inFeatures: inF, rank: R } = update
  let left: Matrix
  let right: Matrix
  let sigma: Array<number>
  if (R <= out && R <= inF && R > 0) {
    // delta = Qb Rb (Qa Ra)^T = Qb (Rb Ra^T) Qa^T; SVD of the R x R core.
    const qrB = new QrDecomposition(Matrix.from1DArray(out, R, Array.from(update.b)))
    const qrA = new QrDecomposition(Matrix.from1DArray(R, inF, Array.from(update.a)).transpose())
    const core = qrB.upperTriangularMatrix.mmul(qrA.upperTriangularMatrix.transpose())
    const svd = new SingularValueDecomposition(core, { autoTranspose: true })
    left = qrB.orthogonalMatrix.mmul(svd.leftSingularVectors)
    right = qrA.orthogonalMatrix.mmul(svd.rightSingularVectors)
    sigma = svd.diagonal
  } else {
    const svd = new SingularValueDecomposition(denseUpdate(update), { autoTranspose: true })
    left = svd.leftSingularVectors
    right = svd.rightSingularVectors
    sigma = svd.diagonal
  }
  const k = Math.min(rank, sigma.length)
  const total = sigma.reduce((sum, s) => sum + s * s, 0)
  const dropped = sigma.slice(k).reduce((sum, s) => sum + s * s, 0)
  // Split each singular value evenly between the factors: b = U_k sqrt(S_k), a = sqrt(S_k) V_k^T.
  const b = new Float32Array(out * rank)
  const a = new Float32Array(rank * inF)
  for (let j = 0; j < k; j++) {
    const root = Math.sqrt(sigma[j]!)
    for (let row = 0; row < out; row++) b[row * rank + j] = left.get(row, j) * root
    for (let col = 0; col < inF; col++) a[j * inF + col] = right.get(col, j) * root
  }
  return {
    update: { ...update, rank, a, b },
    singularValues: sigma,
    relativeError: total === 0 ? 0 : Math.sqrt(dropped / total)
  }
}

export interface CompressedChain {
  readonly lora: ChainLora
  /** Error over all layers together: sqrt(sum dropped sigma^2 / sum sigma^2). */
  readonly relativeError: number
  readonly layers: ReadonlyArray<{ readonly moduleName: string; readonly relativeError: number }>
}

/**
 * Truncates every layer of an exported chain to `rank`. Throws `ConfigError` for a DoRA chain: its
 * magnitude is exact only for the exact update (re-deriving it would need the base weights).
 */
export const compressChain = (lora: ChainLora, rank: number): CompressedChain => {
  if (isDora(lora)) throw new ConfigError({ field: "chain", reason: "a DoRA chain cannot be compressed: its magnitude holds only for the exact update" })
  let total = 0
  let dropped = 0
  const results = lora.updates.map((update) => {
    const result = compressUpdate(update, rank)
    const energy = result.singularValues.reduce((sum, s) => sum + s * s, 0)
    total += energy
    dropped += energy * result.relativeError ** 2
    return result
  })
  return {
    lora: { rank, updates: results.map((result) => result.update), rowOrder: lora.rowOrder },
    relativeError: total === 0 ? 0 : Math.sqrt(dropped / total),
    layers: results.map((result) => ({ moduleName: result.update.moduleName, relativeError: result.relativeError }))
  }
}

/** Whether an exported chain is a DoRA (its links rescaled rows). */
export const isDora = (lora: ChainLora): boolean => lora.updates.some((update) => update.magnitude !== undefined)

/**
 * The LoRA config of an exported chain: r = alpha = rank, so the scale is 1. Layers of another total
 * rank (a chain trained with a rank_pattern) get their own rank and alpha by exact-name patterns.
 */
export const chainLoraConfig = (lora: ChainLora, targetModules: LoraConfig["targetModules"]): LoraConfig => {
  const rank = Math.max(1, lora.rank)
  const others = lora.updates.filter((update) => update.rank !== rank).map((update) => [exactPatternKey(update.moduleName), Math.max(1, update.rank)] as const)
  return loraConfig({
    r: rank,
    alpha: rank,
    targetModules: typeof targetModules === "string" ? targetModules : [...targetModules],
    rankPattern: Object.fromEntries(others),
    alphaPattern: Object.fromEntries(others)
  })
}

/**
 * Saves an exported (or compressed) chain as a PEFT adapter directory: a LoRA, or a DoRA
 * (`use_dora`, with `lora_magnitude_vector`) when the chain rescaled rows. The updates are in the
 * model's own row order; per-output-row tensors are written in the order of the model's Hugging
 * Face form (a llama2.c model's q/k rows) with the chain's `rowOrder` (or `options.rowOrder`). An
 * exported chain read back from a PEFT directory (`peftkit export`) has none: it is already in file order.
 */
export const saveChainLora = (
  dir: string,
  lora: ChainLora,
  options: PeftSaveOptions = {}
): Effect.Effect<void, FileError, FileSystem.FileSystem> =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const tensors: Record<string, tf.Tensor> = {}
      for (const update of lora.updates) {
        tensors[`${update.moduleName}.lora_A.weight`] = tf.tensor2d(update.a, [update.rank, update.inFeatures])
        tensors[`${update.moduleName}.lora_B.weight`] = tf.tensor2d(update.b, [update.outFeatures, update.rank])
        if (update.magnitude !== undefined) tensors[`${update.moduleName}.lora_magnitude_vector`] = tf.tensor1d(update.magnitude)
      }
      return tensors
    }),
    (tensors) =>
      savePeftAdapter(dir, isDora(lora) ? doraFormat : loraFormat, chainLoraConfig(lora, lora.updates.map((update) => update.moduleName)), tensors, { rowOrder: lora.rowOrder, ...options }),
    (tensors) => Effect.sync(() => Object.values(tensors).forEach((tensor) => tensor.dispose()))
  )

/**
 * A chain as one standard LoRA. The chain's total update is
 *   sum_l b_l a_l = [b_1 ... b_L] [a_1; ...; a_L]
 * (each link's scale folded into b_l), a LoRA of rank R = sum of the link ranks, exactly. Saved
 * with r = lora_alpha = R (scale 1), it loads in PEFT onto the ORIGINAL base model and reproduces
 * the chain, with no merged full weights to ship.
 *
 * `compressUpdate` truncates such an update to a chosen rank by SVD: QR of both factors, then the
 * SVD of the small R x R core (ml-matrix, float64), so the full [out, in] matrix is never formed
 * unless a layer is smaller than R. The relative Frobenius error it introduces is exact: the
 * discarded singular values.
 */
import type { FileSystem } from "@effect/platform"
import { type FileError, InvalidCheckpoint, type PeftRowOrder, type PeftSaveOptions, savePeftAdapter } from "@peftkit/core"
import { type LoraConfig, loraConfig, loraFormat } from "@peftkit/lora"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { Matrix, QrDecomposition, SingularValueDecomposition } from "ml-matrix"
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

/**
 * The whole chain (merged links plus the link in training) as one LoRA of rank sum(r_l), exactly.
 * Fails with `InvalidCheckpoint` when the variant has no low-rank factors (use `compressChain`).
 */
export const exportChain = <Config extends ChainableConfig>(chain: Chain<Config>): Effect.Effect<ChainLora, InvalidCheckpoint> =>
  Effect.gen(function* () {
    const updates: Array<LowRankUpdate> = []
    for (const { layer, adapter } of chain.adapters.entries) {
      if (adapter.factors === undefined) {
        return yield* new InvalidCheckpoint({ path: "chain", tensor: layer.name, reason: `variant '${adapter.variant}' has no low-rank factors; compress the chain instead` })
      }
      const parts: Array<{ rank: number; a: Float32Array; b: Float32Array }> = []
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
      if (rowScale !== undefined || parts.some((part) => "rowScale" in part && part.rowScale !== undefined)) {
        a.dispose()
        b.dispose()
        rowScale?.dispose()
        return yield* new InvalidCheckpoint({ path: "chain", tensor: layer.name, reason: `variant '${adapter.variant}' rescales rows (DoRA-like); its chain is not one plain LoRA` })
      }
      parts.push({ rank: a.shape[0], a: yield* readHost(a), b: yield* readHost(b) })
      updates.push(concatenate(layer.name, layer.outFeatures, layer.inFeatures, parts))
    }
    const rank = updates[0]?.rank ?? 0
    return { rank, updates, rowOrder: chain.adapters.rowOrder }
  })

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

/** Truncates every layer of an exported chain to `rank`. */
export const compressChain = (lora: ChainLora, rank: number): CompressedChain => {
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

/** The LoRA config of an exported chain: r = alpha = rank, so the scale is 1. */
export const chainLoraConfig = (lora: ChainLora, targetModules: LoraConfig["targetModules"]): LoraConfig =>
  loraConfig({ r: Math.max(1, lora.rank), alpha: Math.max(1, lora.rank), targetModules: typeof targetModules === "string" ? targetModules : [...targetModules] })

/**
 * Saves an exported (or compressed) chain as a PEFT LoRA adapter directory. The updates are in the
 * model's own row order; lora_B rows are written in the order of the model's Hugging Face form (a
 * llama2.c model's q/k rows) with the chain's `rowOrder` (or `options.rowOrder`). An exported chain
 * read back from a PEFT directory (`peftkit export`) has none: it is already in file order.
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
      }
      return tensors
    }),
    (tensors) => savePeftAdapter(dir, loraFormat, chainLoraConfig(lora, lora.updates.map((update) => update.moduleName)), tensors, { rowOrder: lora.rowOrder, ...options }),
    (tensors) => Effect.sync(() => Object.values(tensors).forEach((tensor) => tensor.dispose()))
  )

/**
 * Plain-JS Float64 reference implementations of the update rules, written from the PyTorch
 * (torch.optim) and lion-pytorch loops, element by element, for one parameter.
 */

export interface Trajectory {
  /** The parameter after each step. */
  readonly params: ReadonlyArray<Float64Array>
  /** Final state slots by name. */
  readonly state: Readonly<Record<string, Float64Array>>
}

export interface AdamReferenceOptions {
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  readonly decoupled: boolean
}

export const referenceAdam = (
  initial: ReadonlyArray<number>,
  grads: ReadonlyArray<ReadonlyArray<number>>,
  lrs: ReadonlyArray<number>,
  o: AdamReferenceOptions
): Trajectory => {
  const n = initial.length
  const p = Float64Array.from(initial)
  const m = new Float64Array(n)
  const v = new Float64Array(n)
  const params: Array<Float64Array> = []
  grads.forEach((grad, s) => {
    const t = s + 1
    const lr = lrs[s]!
    for (let i = 0; i < n; i++) {
      let g = grad[i]!
      if (o.decoupled) p[i] = p[i]! * (1 - lr * o.weightDecay)
      else g = g + o.weightDecay * p[i]!
      m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g
      v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g * g
      const bc1 = 1 - o.beta1 ** t
      const bc2 = 1 - o.beta2 ** t
      const denom = Math.sqrt(v[i]!) / Math.sqrt(bc2) + o.eps
      p[i] = p[i]! - (lr / bc1) * (m[i]! / denom)
    }
    params.push(Float64Array.from(p))
  })
  return { params, state: { exp_avg: m, exp_avg_sq: v } }
}

export interface SgdReferenceOptions {
  readonly momentum: number
  readonly dampening: number
  readonly nesterov: boolean
  readonly weightDecay: number
}

export const referenceSgd = (
  initial: ReadonlyArray<number>,
  grads: ReadonlyArray<ReadonlyArray<number>>,
  lrs: ReadonlyArray<number>,
  o: SgdReferenceOptions
): Trajectory => {
  const n = initial.length
  const p = Float64Array.from(initial)
  let buf: Float64Array | undefined
  const params: Array<Float64Array> = []
  grads.forEach((grad, s) => {
    const lr = lrs[s]!
    const d = new Float64Array(n)
    for (let i = 0; i < n; i++) d[i] = grad[i]! + o.weightDecay * p[i]!
    if (o.momentum !== 0) {
      if (buf === undefined) buf = Float64Array.from(d)
      else for (let i = 0; i < n; i++) buf[i] = o.momentum * buf[i]! + (1 - o.dampening) * d[i]!
      for (let i = 0; i < n; i++) d[i] = o.nesterov ? d[i]! + o.momentum * buf[i]! : buf[i]!
    }
    for (let i = 0; i < n; i++) p[i] = p[i]! - lr * d[i]!
    params.push(Float64Array.from(p))
  })
  return { params, state: buf === undefined ? {} : { momentum_buffer: buf } }
}

export interface LionReferenceOptions {
  readonly beta1: number
  readonly beta2: number
  readonly weightDecay: number
}

export const referenceLion = (
  initial: ReadonlyArray<number>,
  grads: ReadonlyArray<ReadonlyArray<number>>,
  lrs: ReadonlyArray<number>,
  o: LionReferenceOptions
): Trajectory & { readonly minAbsDirection: number } => {
  const n = initial.length
  const p = Float64Array.from(initial)
  const m = new Float64Array(n)
  const params: Array<Float64Array> = []
  let minAbsDirection = Infinity
  grads.forEach((grad, s) => {
    const lr = lrs[s]!
    for (let i = 0; i < n; i++) {
      const g = grad[i]!
      const c = o.beta1 * m[i]! + (1 - o.beta1) * g
      if (c !== 0) minAbsDirection = Math.min(minAbsDirection, Math.abs(c))
      p[i] = p[i]! * (1 - lr * o.weightDecay) - lr * Math.sign(c)
      m[i] = o.beta2 * m[i]! + (1 - o.beta2) * g
    }
    params.push(Float64Array.from(p))
  })
  return { params, state: { exp_avg: m }, minAbsDirection }
}

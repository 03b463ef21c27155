/**
 * `tf.variableGrads` with a backward pass that frees memory as it goes.
 *
 * tfjs-core's `engine.gradients` keeps everything until the backward pass ends: every tensor a
 * kernel saved for its gradient, and the gradient of every intermediate tensor (`accumulated`
 * below), so a step's peak is the forward's activations plus a gradient for each of them. But once
 * the walk has passed a tape node, nothing reads that node's saved tensors or its outputs'
 * gradients again. This walk (the same order and arithmetic as tfjs-core's `backpropagateGradients`,
 * so the gradients are identical) frees both right there, and frees at the start the saved tensors
 * of nodes off the path from the variables to the loss. The peak falls to about the activations.
 *
 * It drives the engine through members tfjs-core 4.x does not export as API (`startTape`,
 * `state.activeTape`); when they are missing, or inside another gradient computation, it falls
 * back to `tf.variableGrads`.
 */
import * as tf from "@tensorflow/tfjs-core"

interface TapeNode {
  readonly id: number
  readonly kernelName: string
  readonly outputs: ReadonlyArray<tf.Tensor>
  readonly inputs: Readonly<Record<string, tf.Tensor>>
  readonly gradient?: (dys: ReadonlyArray<tf.Tensor | null>) => Record<string, () => tf.Tensor>
  readonly saved?: ReadonlyArray<tf.Tensor>
}

interface EngineInternals {
  readonly state: { activeTape: Array<TapeNode> | null; readonly gradientDepth: number }
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T
  startTape(): void
  endTape(): void
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T
}

const engineInternals = (): EngineInternals | undefined => {
  const engine = tf.engine() as unknown as Partial<EngineInternals>
  const usable = typeof engine.scopedRun === "function" && typeof engine.startTape === "function" && typeof engine.endTape === "function" &&
    typeof engine.tidy === "function" && typeof engine.state?.gradientDepth === "number"
  return usable ? (engine as EngineInternals) : undefined
}

/** The nodes on a path from `xs` to `y`, inputs pruned to those that depend on `xs` (tfjs-core's getFilteredNodesXToY). */
const nodesFromXsToY = (tape: ReadonlyArray<TapeNode>, xs: ReadonlyArray<tf.Tensor>, y: tf.Tensor): Array<TapeNode> => {
  const fromX = new Set<number>(xs.map((x) => x.id))
  const nodesFromX = new Set<number>()
  for (const node of tape) {
    if (Object.values(node.inputs).some((input) => fromX.has(input.id))) {
      for (const output of node.outputs) fromX.add(output.id)
      nodesFromX.add(node.id)
    }
  }
  const leadsToY = new Set<number>([y.id])
  const nodesToY = new Set<number>()
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!
    if (node.outputs.some((output) => leadsToY.has(output.id))) {
      for (const input of Object.values(node.inputs)) leadsToY.add(input.id)
      nodesToY.add(node.id)
    }
  }
  return tape
    .filter((node) => nodesFromX.has(node.id) && nodesToY.has(node.id))
    .map((node) => ({ ...node, inputs: Object.fromEntries(Object.entries(node.inputs).filter(([, input]) => fromX.has(input.id))) }))
}

const disposeSaved = (node: TapeNode): void => {
  for (const tensor of node.saved ?? []) tensor.dispose()
}

/** Like `tf.variableGrads(f, variables)`: the loss and the gradient of each trainable variable, by variable name. */
export const leanVariableGrads = (
  f: () => tf.Scalar,
  variables: ReadonlyArray<tf.Variable>
): { readonly value: tf.Scalar; readonly grads: Record<string, tf.Tensor> } => {
  const engine = engineInternals()
  if (engine === undefined || engine.state.gradientDepth !== 0) return tf.variableGrads(f, [...variables])
  const xs = variables.filter((variable) => variable.trainable)
  if (xs.length === 0) throw new Error("variableGrads() expects at least one trainable variable")
  const y = engine.scopedRun(() => engine.startTape(), () => engine.endTape(), () => engine.tidy("forward", f))
  if (!(y instanceof tf.Tensor) || y.rank !== 0) throw new Error(`The f passed in variableGrads(f) must return a scalar, got rank ${y instanceof tf.Tensor ? y.rank : "none"}`)
  const tape = engine.state.activeTape ?? []
  const path = nodesFromXsToY(tape, xs, y)
  const onPath = new Set(path.map((node) => node.id))
  return engine.tidy("backward", () => {
    // Saved tensors of nodes off the path are never read.
    for (const node of tape) if (!onPath.has(node.id)) disposeSaved(node)
    const accumulated = new Map<number, tf.Tensor>([[y.id, tf.onesLike(y)]])
    // The tensors `accumulated` holds, to tell when a gradient function hands back one of them.
    const held = new Set<tf.Tensor>(accumulated.values())
    const hold = (id: number, gradient: tf.Tensor) => {
      accumulated.set(id, gradient)
      held.add(gradient)
    }
    const release = (id: number) => {
      const gradient = accumulated.get(id)
      if (gradient === undefined) return
      accumulated.delete(id)
      held.delete(gradient)
      gradient.dispose()
    }
    for (let i = path.length - 1; i >= 0; i--) {
      const node = path[i]!
      const dys = node.outputs.map((output) => accumulated.get(output.id) ?? null)
      if (node.gradient === undefined) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`)
      const inputGradients = node.gradient(dys)
      const saved = new Set<tf.Tensor>(node.saved ?? [])
      for (const [inputName, input] of Object.entries(node.inputs)) {
        const gradientOf = inputGradients[inputName]
        if (gradientOf === undefined) throw new Error(`Cannot backprop through input ${inputName}. Available gradients found: ${Object.keys(inputGradients)}.`)
        let dx = engine.tidy(inputName, gradientOf)
        if (dx.dtype !== "float32") throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${inputName} must have 'float32' dtype, but has '${dx.dtype}'`)
        if (!tf.util.arraysEqual(dx.shape, input.shape)) throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${inputName}' has shape '${dx.shape}', which does not match the shape of the input '${input.shape}'`)
        // A gradient that is a tensor held or freed below (a dy passed through, a saved tensor)
        // gets a handle of its own (a clone shares the data).
        if (held.has(dx) || saved.has(dx)) dx = tf.clone(dx)
        const previous = accumulated.get(input.id)
        if (previous === undefined) hold(input.id, dx)
        else {
          const sum = tf.add(previous, dx)
          release(input.id)
          dx.dispose()
          hold(input.id, sum)
        }
      }
      // Past this node: its outputs' gradients and what it saved are read by no one.
      for (const output of node.outputs) release(output.id)
      disposeSaved(node)
    }
    const grads: Record<string, tf.Tensor> = {}
    for (const x of xs) {
      const grad = accumulated.get(x.id)
      if (grad !== undefined) grads[x.name] = grad
    }
    if (Object.keys(grads).length === 0) throw new Error("Cannot find a connection between any variable and the result of the loss function y=f(x).")
    engine.state.activeTape = null
    return { value: y as tf.Scalar, grads }
  })
}

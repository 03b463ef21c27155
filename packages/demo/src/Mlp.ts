/**
 * The demo's model: a small MLP classifier whose layers are peftkit `Linear`s with module-style
 * names (`layers.0.fc`, `layers.1.fc`, `head`), so adapters are injected the same way as into a
 * transformer's projections.
 */
import { type AdaptableModel, Linear, type Parameter } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"

export interface MlpShape {
  readonly inputs: number
  readonly hidden: number
  readonly depth: number
  readonly classes: number
}

export class Mlp implements AdaptableModel {
  readonly layers: ReadonlyArray<Linear>
  readonly head: Linear
  readonly outputHeads = ["head"]

  private constructor(layers: ReadonlyArray<Linear>, head: Linear) {
    this.layers = layers
    this.head = head
  }

  /** A freshly initialised MLP (PyTorch's default nn.Linear init: U(-1/sqrt(in), 1/sqrt(in))). */
  static init(shape: MlpShape, seed: number, trainable: boolean): Mlp {
    const linear = (name: string, out: number, inF: number, layerSeed: number) => {
      const bound = 1 / Math.sqrt(inF)
      const weight = tf.randomUniform([out, inF], -bound, bound, "float32", layerSeed) as tf.Tensor2D
      const bias = tf.randomUniform([out], -bound, bound, "float32", layerSeed + 1) as tf.Tensor1D
      const layer = new Linear(name, weight, bias, { trainable })
      // The layer's variables hold their own reference to the data.
      weight.dispose()
      bias.dispose()
      return layer
    }
    const layers = Array.from({ length: shape.depth }, (_, i) => linear(`layers.${i}.fc`, shape.hidden, i === 0 ? shape.inputs : shape.hidden, seed + 10 * i))
    return new Mlp(layers, linear("head", shape.classes, shape.hidden, seed + 999))
  }

  /** A copy with the same weights; `trainable` decides whether its base weights train. */
  copy(trainable: boolean): Mlp {
    const clone = (layer: Linear) => new Linear(layer.name, layer.weight, layer.bias, { trainable })
    return new Mlp(this.layers.map(clone), clone(this.head))
  }

  linears(): ReadonlyArray<Linear> {
    return [...this.layers, this.head]
  }

  /** Base weights and biases, for full fine-tuning. */
  baseParameters(): ReadonlyArray<Parameter> {
    return this.linears().flatMap((layer) => layer.baseParameters())
  }

  /** Logits [n, classes]. */
  forward(x: tf.Tensor2D, training = false): tf.Tensor2D {
    return tf.tidy(() => {
      let h: tf.Tensor = x
      for (const layer of this.layers) h = tf.tanh(layer.apply(h, training))
      return this.head.apply(h, training) as tf.Tensor2D
    })
  }

  dispose(): void {
    for (const layer of this.linears()) layer.dispose()
  }
}

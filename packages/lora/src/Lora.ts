/**
 * LoRA (Hu et al. 2021) as a peftkit adapter variant: y = x W^T + s (x A^T) B^T with A [r, in],
 * B [out, r] (PEFT's lora_A / lora_B layout) and s = alpha / r (alpha / sqrt r with rsLoRA).
 * B starts at zero, so a fresh adapter leaves the model's output unchanged.
 */
import type { Adapter, AdapterVariant, LinearTarget, Parameter } from "@peftkit/core"
import { decodeConfigSync, InvalidCheckpoint, mixSeed, ShapeMismatch } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { LoraConfig, type LoraConfigInput, loraScale } from "./LoraConfig.js"

const A_KEY = "lora_A.weight"
const B_KEY = "lora_B.weight"

const initialA = (config: LoraConfig, inFeatures: number, seed: number): tf.Tensor2D => {
  if (config.init === "gaussian") return tf.randomNormal([config.r, inFeatures], 0, 1 / config.r, "float32", seed)
  // PyTorch kaiming_uniform_(a=sqrt(5)) on [r, in]: gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in) = 1/sqrt(in).
  const bound = 1 / Math.sqrt(inFeatures)
  return tf.randomUniform([config.r, inFeatures], -bound, bound, "float32", seed)
}

export class LoraAdapter implements Adapter {
  readonly variant = "lora"
  readonly scale: number
  readonly loraA: tf.Variable<tf.Rank.R2>
  readonly loraB: tf.Variable<tf.Rank.R2>
  private readonly params: ReadonlyArray<Parameter>
  private dropoutCalls = 0
  private seed: number

  constructor(
    readonly moduleName: string,
    readonly config: LoraConfig,
    readonly inFeatures: number,
    readonly outFeatures: number,
    seed: number
  ) {
    this.scale = loraScale(config)
    this.seed = seed
    // tf.variable takes its own reference to the data: free the initial tensors.
    const a = initialA(config, inFeatures, seed)
    const b = tf.zeros<tf.Rank.R2>([outFeatures, config.r])
    this.loraA = tf.variable(a, true)
    this.loraB = tf.variable(b, true)
    a.dispose()
    b.dispose()
    this.params = [
      { name: `${moduleName}.${A_KEY}`, variable: this.loraA },
      { name: `${moduleName}.${B_KEY}`, variable: this.loraB }
    ]
  }

  get rank(): number {
    return this.config.r
  }

  parameters(): ReadonlyArray<Parameter> {
    return this.params
  }

  forward(x: tf.Tensor2D, base: tf.Tensor2D, _layer: LinearTarget, training: boolean): tf.Tensor2D {
    return tf.tidy(() => {
      const input: tf.Tensor2D = training && this.config.dropout > 0
        ? (tf.dropout(x, this.config.dropout, undefined, mixSeed(this.seed, ++this.dropoutCalls)) as tf.Tensor2D)
        : x
      // Scale the narrow [n, r] intermediate rather than the [n, out] result.
      const xa: tf.Tensor2D = tf.mul(tf.matMul(input, this.loraA, false, true), this.scale)
      return tf.add<tf.Tensor2D>(base, tf.matMul(xa, this.loraB, false, true))
    })
  }

  /** Computed as (scale B) A, the product of `factors()`, so replaying saved factors is bit-exact. */
  delta(): tf.Tensor2D {
    return tf.tidy(() => tf.matMul(tf.mul(this.loraB, this.scale), this.loraA))
  }

  /** delta = (scale B) A: the scale is folded into b so factors concatenate across links. */
  factors(): { readonly a: tf.Tensor2D; readonly b: tf.Tensor2D } {
    return { a: this.loraA.clone(), b: tf.tidy(() => tf.mul(this.loraB, this.scale)) }
  }

  randomState(): ReadonlyArray<number> {
    return [this.seed, this.dropoutCalls]
  }

  setRandomState(state: ReadonlyArray<number>): void {
    this.seed = state[0] ?? this.seed
    this.dropoutCalls = state[1] ?? 0
  }

  reinitialize(seed: number): void {
    this.seed = seed
    this.dropoutCalls = 0
    tf.tidy(() => {
      this.loraA.assign(initialA(this.config, this.inFeatures, seed))
      this.loraB.assign(tf.zerosLike(this.loraB))
    })
  }

  stateDict(): Record<string, tf.Tensor> {
    return { [A_KEY]: this.loraA.clone(), [B_KEY]: this.loraB.clone() }
  }

  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>): void {
    const expected = { [A_KEY]: this.loraA, [B_KEY]: this.loraB }
    for (const key of Object.keys(tensors)) {
      if (!(key in expected)) {
        throw new InvalidCheckpoint({ path: this.moduleName, tensor: key, reason: "unexpected tensor for a LoRA adapter" })
      }
    }
    for (const [key, variable] of Object.entries(expected)) {
      const tensor = tensors[key]
      if (tensor === undefined) throw new InvalidCheckpoint({ path: this.moduleName, tensor: key, reason: "missing" })
      if (!tf.util.arraysEqual(tensor.shape, variable.shape)) {
        throw new ShapeMismatch({ what: `${this.moduleName}.${key}`, expected: variable.shape, actual: tensor.shape })
      }
    }
    tf.tidy(() => {
      for (const [key, variable] of Object.entries(expected)) variable.assign(tf.cast(tensors[key]! as tf.Tensor2D, "float32"))
    })
  }

  dispose(): void {
    this.loraA.dispose()
    this.loraB.dispose()
  }
}

/** The LoRA variant. Decode user input with `loraConfig` first: `create` trusts its config. */
export const lora: AdapterVariant<LoraConfig> = {
  name: "lora",
  create: (target, config, seed) => new LoraAdapter(target.name, config, target.inFeatures, target.outFeatures, seed)
}

/** Decodes a user LoRA config; throws `ConfigError` naming the field. */
export const loraConfig = (input: LoraConfigInput = {}): LoraConfig => decodeConfigSync(LoraConfig, input, "lora")

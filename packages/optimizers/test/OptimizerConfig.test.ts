import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { ConfigError, decodeConfig } from "@peftkit/core"
import { adam, adamw, lion, makeOptimizer, OptimizerConfig, sgd } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const configError = (f: () => unknown): ConfigError => {
  try {
    f()
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return error as ConfigError
  }
  return expect.unreachable("expected a ConfigError")
}

describe("makeOptimizer", () => {
  it("builds each optimizer by name with its options and defaults", () => {
    const a = makeOptimizer({ name: "adamw", lr: 5e-4, betas: [0.9, 0.95] }, [])
    expect(a.name).toBe("adamw")
    expect(a.options).toEqual({ lr: 5e-4, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.01 })
    expect(a.lr).toBe(5e-4)
    expect(makeOptimizer({ name: "adam" }, []).options).toEqual(adam([]).options)
    expect(makeOptimizer({ name: "sgd", momentum: 0.9, nesterov: true }, []).options).toEqual({
      lr: 1e-3, momentum: 0.9, dampening: 0, nesterov: true, weightDecay: 0
    })
    expect(makeOptimizer({ name: "lion", weightDecay: 1 }, []).options).toEqual({ lr: 1e-4, betas: [0.9, 0.99], weightDecay: 1 })
  })

  it("an unknown key is a ConfigError naming it", () => {
    const error = configError(() => makeOptimizer({ name: "adamw", weight_decay: 0.1 } as unknown as OptimizerConfig, []))
    expect(error.field).toBe("weight_decay")
    expect(error.reason).toBe("unknown key")
    // A key of another optimizer is unknown too.
    expect(configError(() => makeOptimizer({ name: "adamw", momentum: 0.9 } as unknown as OptimizerConfig, [])).field).toBe("momentum")
  })

  it("a negative learning rate is a ConfigError naming `lr`", () => {
    const error = configError(() => makeOptimizer({ name: "adamw", lr: -1e-3 }, []))
    expect(error.field).toBe("lr")
    expect(error.message).toContain("'lr'")
  })

  it("names nested and prefixed fields", () => {
    expect(configError(() => makeOptimizer({ name: "adam", betas: [0.9, 1] }, [])).field).toBe("betas.1")
    expect(configError(() => makeOptimizer({ name: "lion", lr: Number.NaN }, [], "optimizer")).field).toBe("optimizer.lr")
    expect(configError(() => makeOptimizer({ name: "adamw", eps: 0 }, [])).field).toBe("eps")
    expect(configError(() => makeOptimizer({ name: "sgd", nesterov: true }, [])).field).toBe("nesterov")
    expect(configError(() => makeOptimizer({ name: "rmsprop" } as unknown as OptimizerConfig, [])).field).toBe("name")
  })

  it("direct constructors validate their options the same way", () => {
    expect(configError(() => adamw([], { weightDecay: -0.1 })).field).toBe("weightDecay")
    expect(configError(() => sgd([], { momentum: -0.5 })).field).toBe("momentum")
    expect(configError(() => lion([], { betas: [-0.1, 0.99] })).field).toBe("betas.0")
    expect(configError(() => adam([], { lr: "1e-3" } as unknown as { lr: number })).field).toBe("lr")
  })

  it("OptimizerConfig embeds in a larger config schema", async () => {
    const RunConfig = Schema.Struct({ steps: Schema.Number, optimizer: OptimizerConfig })
    const ok = await Effect.runPromise(decodeConfig(RunConfig, { steps: 10, optimizer: { name: "sgd", lr: 0.1 } }))
    expect(ok.optimizer).toEqual({ name: "sgd", lr: 0.1 })
    const bad = await Effect.runPromise(Effect.flip(decodeConfig(RunConfig, { steps: 10, optimizer: { name: "adamw", lr: -1 } })))
    expect(bad.field).toBe("optimizer.lr")
  })
})

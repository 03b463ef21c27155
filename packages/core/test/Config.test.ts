/** Config decoding: errors name the field, and a value outside a set of literals lists them all. */
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { ConfigError, decodeConfig, decodeConfigSync, PositiveInt } from "../src/index.js"

const Options = Schema.Struct({
  schedule: Schema.optionalWith(Schema.Literal("constant", "linear", "cosine"), { default: () => "linear" as const }),
  method: Schema.Literal("lora", "cola"),
  valBatches: Schema.optional(Schema.Union(Schema.Literal(-1), PositiveInt)),
  nested: Schema.optional(Schema.Struct({ mode: Schema.Literal("a", "b") }))
})

const failure = (input: unknown): ConfigError => {
  try {
    decodeConfigSync(Options, input, "train")
  } catch (error) {
    return error as ConfigError
  }
  throw new Error("expected a ConfigError")
}

describe("decodeConfig", () => {
  it("a value outside a literal union lists every allowed value, not just the first", () => {
    const optional = failure({ schedule: "cosin", method: "lora" })
    expect(optional).toBeInstanceOf(ConfigError)
    expect(optional.field).toBe("train.schedule")
    expect(optional.reason).toBe('expected one of "constant", "linear", "cosine" (got "cosin")')
    const required = failure({ method: "dora" })
    expect(required.field).toBe("train.method")
    expect(required.reason).toBe('expected one of "lora", "cola" (got "dora")')
    const nested = failure({ method: "lora", nested: { mode: "c" } })
    expect(nested.field).toBe("train.nested.mode")
    expect(nested.reason).toBe('expected one of "a", "b" (got "c")')
    const numeric = failure({ method: 1 })
    expect(numeric.reason).toBe('expected one of "lora", "cola" (got 1)')
  })

  it("other failures keep their own messages", () => {
    expect(failure({ method: "lora", valBatches: 0 }).reason).not.toContain("expected one of")
    expect(failure({ method: "lora", extra: 1 }).reason).toBe("unknown key")
    expect(failure({}).field).toBe("train.method")
  })

  it("the Effect form fails with the same error", async () => {
    const error = await Effect.runPromise(Effect.flip(decodeConfig(Options, { schedule: "cosin", method: "lora" })))
    expect(error.field).toBe("schedule")
    expect(error.reason).toContain('expected one of "constant", "linear", "cosine"')
  })
})

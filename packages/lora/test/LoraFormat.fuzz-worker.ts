// Fuzz target for adapter_config.json decoding, run in a worker by LoraFormat.fuzz.test.ts.
import { Cause, Effect, Exit, Option } from "effect"
import fc from "fast-check"
import { runFuzzTargets, type Outcome } from "../../core/test/fuzz/worker.js"
import { fromPeftConfig, MAX_LORA_RANK } from "../src/index.js"

const base = { peft_type: "LORA", r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ["q_proj", "v_proj"], bias: "none", use_rslora: false }
const value = fc.oneof(
  fc.integer({ min: -2, max: 64 }),
  fc.constantFrom(9999999, 2147483648, 2 ** 53, 1e300, -0, 0.5, Number.NaN, null, "4", "LORA", "all-linear", ".*", "(", true, [], {}, ["q_proj"], { a: 1 }),
  fc.double(),
  fc.string({ maxLength: 6 }),
  fc.jsonValue({ maxDepth: 2 })
)
const key = fc.oneof(
  fc.constantFrom("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "use_dora", "fan_in_fan_out", "bias", "init_lora_weights", "rank_pattern", "alpha_pattern", "layers_to_transform", "modules_to_save", "__proto__"),
  fc.string({ maxLength: 5 })
)

void runFuzzTargets({
  adapterConfig: {
    arbitrary: fc.tuple(fc.array(fc.tuple(key, value), { maxLength: 4 }), fc.boolean()),
    run: async ([edits, drop]): Promise<Outcome> => {
      const json: Record<string, unknown> = drop ? {} : { ...base }
      for (const [k, v] of edits) Object.defineProperty(json, k, { value: v, enumerable: true, writable: true, configurable: true })
      const exit = await Effect.runPromiseExit(fromPeftConfig(json))
      if (Exit.isSuccess(exit)) {
        if (!(Number.isSafeInteger(exit.value.r) && exit.value.r >= 1 && exit.value.r <= MAX_LORA_RANK)) throw new Error(`accepted rank ${exit.value.r}`)
        return { ok: true }
      }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) return { ok: false, tag: failure.value._tag }
      throw new Error(`defect: ${Cause.pretty(exit.cause).split("\n")[0]}`)
    },
    typed: ["ConfigError"]
  }
})

/**
 * Issue 11, item 8 for rank_pattern / alpha_pattern: the per-module rank, alpha and scaling peftkit
 * resolves are the ones PEFT 0.21 resolved for the same adapter_config.json (recorded per module in
 * logits.json), and the PEFT-written pattern adapters on the tiny Llama and OPT give PEFT's logits
 * within 1e-4 (LoRA here; DoRA with patterns is in PeftInterop.dora.test.ts).
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { dora, fromPeftConfig, lora, loraAlpha, loraRank, loraScale } from "@peftkit/lora"
import { adapterDir, expectPeftLogits, FIXTURE_MODELS, reference, referenceAdapters } from "./peftInterop.js"

const PATTERNED = [["patterns", false], ["dora_patterns", true]] as const

describe.each(FIXTURE_MODELS)("PEFT interop, rank and alpha patterns, tiny %s", (model) => {
  it("the fixtures hold every case this file checks", () => {
    expect(referenceAdapters(model)).toEqual(expect.arrayContaining(PATTERNED.map(([adapter]) => adapter)))
  })

  it.each(PATTERNED)("%s: every module's r, lora_alpha and scaling are PEFT's", async (adapter, useDora) => {
    const json = JSON.parse(readFileSync(join(adapterDir(model, adapter), "adapter_config.json"), "utf8"))
    const config = await Effect.runPromise(fromPeftConfig(json, { dora: useDora }))
    const modules = reference().models[model].adapters[adapter]!.modules!
    expect(Object.keys(modules).length).toBeGreaterThan(0)
    for (const [name, peft] of Object.entries(modules)) {
      expect([name, loraRank(config, name), loraAlpha(config, name)]).toEqual([name, peft.r, peft.lora_alpha])
      expect(loraScale(config, name)).toBeCloseTo(peft.scaling!, 5)
    }
  })

  it("PEFT-written patterns: peftkit gives PEFT's logits (1e-4)", async () => {
    await expectPeftLogits({ model, adapter: "patterns", variants: [dora, lora] })
  })
})

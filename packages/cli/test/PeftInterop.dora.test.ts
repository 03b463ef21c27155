/**
 * Issue 11, item 8 for DoRA: adapters Python's PEFT 0.21 wrote with `use_dora: true` (plain, and with
 * rank/alpha patterns) on the tiny Llama and OPT of `fixtures/peft-variants` give, loaded in peftkit
 * with `[dora, lora]`, PEFT's logits within 1e-4; `[lora]` alone refuses them, naming `dora`.
 */
import { describe, expect, it } from "vitest"
import { dora, lora } from "@peftkit/lora"
import { adapterDir, expectPeftLogits, FIXTURE_MODELS, loadFailure, referenceAdapters } from "./peftInterop.js"

const PEFT_WRITTEN = ["dora", "dora_patterns"] as const

describe.each(FIXTURE_MODELS)("PEFT interop, DoRA, tiny %s", (model) => {
  it("the fixtures hold every case this file checks", () => {
    expect(referenceAdapters(model)).toEqual(expect.arrayContaining([...PEFT_WRITTEN]))
  })

  it.each(PEFT_WRITTEN)("PEFT-written %s: peftkit gives PEFT's logits (1e-4)", async (adapter) => {
    await expectPeftLogits({ model, adapter, variants: [dora, lora] })
  })

  it("LoRA alone refuses a DoRA file and names the dora variant", async () => {
    const failure = await loadFailure(model, adapterDir(model, "dora"), [lora])
    expect(failure).toContain("adapter_config.use_dora")
    expect(failure).toContain("`dora` variant")
  })
})

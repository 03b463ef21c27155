/**
 * Issue 11, item 8 (the LoRA family that loads today): adapters Python's PEFT 0.21 wrote for the tiny
 * Llama (GQA, untied head) and OPT (biases, LayerNorm, learned positions) of `fixtures/peft-variants`
 * give, loaded in peftkit, PEFT's logits within 1e-4. Adapters peftkit trained are checked in
 * `PeftInterop.peftkit-written.test.ts`; other variants' PEFT-written files (DoRA, patterns, VeRA, ...)
 * in their own files, with the same helper (`peftInterop.ts`).
 */
import { describe, expect, it } from "vitest"
import { lora } from "@peftkit/lora"
import { expectPeftLogits, FIXTURE_MODELS, maxAbsDiff, peftkitLogits, reference, referenceAdapters } from "./peftInterop.js"

// PEFT-written adapters that are plain LoRA files (pissa: PEFT converted it to a rank-2r LoRA on the original base).
const PEFT_WRITTEN = ["lora", "rslora", "all_linear", "regex", "pissa"] as const

describe.each(FIXTURE_MODELS)("PEFT interop, LoRA family, tiny %s", (model) => {
  it("the base model: peftkit's logits are transformers'", async () => {
    const diff = maxAbsDiff(await peftkitLogits(model, undefined), reference().models[model].base)
    console.log(`${model} base: max |peftkit - transformers| = ${diff.toExponential(2)}`)
    expect(diff).toBeLessThan(1e-4)
  })

  it.each(PEFT_WRITTEN)("PEFT-written %s: peftkit gives PEFT's logits (1e-4)", async (adapter) => {
    await expectPeftLogits({ model, adapter, variants: [lora] })
  })

  it("the fixtures hold every case this file checks", () => {
    expect(referenceAdapters(model)).toEqual(expect.arrayContaining([...PEFT_WRITTEN]))
  })
})

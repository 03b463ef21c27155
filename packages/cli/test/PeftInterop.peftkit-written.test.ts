/**
 * Issue 11, item 8 (the other direction): adapters `peftkit train` saved (make-adapters.mjs: LoRA,
 * DoRA and VeRA alone and in COLA chains, RAC-LoRA and XGBLoRA chains, on the tiny Llama and OPT)
 * give in Python's PEFT 0.21 the logits they give in peftkit, within 1e-4. They are loaded here the
 * way `peftkit eval` loads them, by dispatch over the CLI's installed variants; PeftkitWritten.test.ts
 * checks that today's peftkit still writes exactly these files.
 */
import { describe, expect, it } from "vitest"
import { installedVariants } from "../src/Variants.js"
// @ts-expect-error: a plain .mjs script without types; only its RUNS list is imported.
import { RUNS } from "./fixtures/peft-variants/make-adapters.mjs"
import { expectPeftLogits, FIXTURE_MODELS, referenceAdapters } from "./peftInterop.js"

const runs = RUNS as ReadonlyArray<{ readonly model: string; readonly name: string }>

describe.each(FIXTURE_MODELS)("peftkit-written adapters in PEFT, tiny %s", (model) => {
  const names = runs.filter((run) => run.model === model).map((run) => run.name)

  it("PEFT's logits were computed for every run", () => {
    expect([...referenceAdapters(model, "peftkit-written")].sort()).toEqual([...names].sort())
  })

  it.each(names)("%s: PEFT's logits with it are peftkit's (1e-4)", async (adapter) => {
    await expectPeftLogits({ model, adapter, variants: installedVariants, source: "peftkit-written" })
  })
})

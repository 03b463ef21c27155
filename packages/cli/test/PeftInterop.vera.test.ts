/**
 * Issue 11, item 6: VeRA adapters Python's PEFT 0.21 wrote (`save_projection: true`, so the shared
 * `base_model.vera_A` / `base_model.vera_B` are in the file) on the tiny Llama and OPT of
 * `fixtures/peft-variants` give, loaded in peftkit, PEFT's logits within 1e-4; dispatch picks VeRA
 * among [lora, vera]; and peftkit's own draw of the projections from `projection_prng_key` is the
 * file's bit for bit (so a `save_projection: false` file loads exactly too).
 */
import { ADAPTER_WEIGHTS_FILE, readSafetensors, Safetensors } from "@peftkit/core"
import { lora } from "@peftkit/lora"
import { mt19937, torchKaimingUniform, vera } from "@peftkit/vera"
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { adapterDir, expectPeftLogits, FIXTURE_MODELS, maxAbsDiff, peftkitLogits, reference, referenceAdapters, runWith } from "./peftInterop.js"

describe.each(FIXTURE_MODELS)("PEFT interop, VeRA, tiny %s", (model) => {
  it("the fixtures hold a PEFT-written VeRA", () => {
    expect(referenceAdapters(model)).toContain("vera")
  })

  it("PEFT-written vera: peftkit gives PEFT's logits (1e-4), dispatched among [lora, vera]", async () => {
    await expectPeftLogits({ model, adapter: "vera", variants: [lora, vera] })
  })

  it("the file's vera_A / vera_B are peftkit's torch-exact draw from projection_prng_key", async () => {
    const dir = adapterDir(model, "vera")
    const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as { projection_prng_key: number }
    const file = await runWith(readSafetensors(join(dir, ADAPTER_WEIGHTS_FILE)))
    const view = (name: string) => file.tensors.find((t) => t.name === name)!
    const a = view("base_model.vera_A")
    const b = view("base_model.vera_B")
    const next = mt19937(config.projection_prng_key)
    expect(Array.from(torchKaimingUniform(next, a.shape[0]!, a.shape[1]!))).toEqual(Array.from(Safetensors.toFloat32(a)))
    expect(Array.from(torchKaimingUniform(next, b.shape[0]!, b.shape[1]!))).toEqual(Array.from(Safetensors.toFloat32(b)))
  })

  it("the same adapter saved without projections (save_projection: false) gives PEFT's logits too", async () => {
    const source = adapterDir(model, "vera")
    const dir = mkdtempSync(join(tmpdir(), "peftkit-vera-noproj-"))
    const config = JSON.parse(readFileSync(join(source, "adapter_config.json"), "utf8")) as Record<string, unknown>
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...config, save_projection: false }))
    // PEFT ignores projections in a save_projection: false file; keep them, and they must not matter.
    copyFileSync(join(source, ADAPTER_WEIGHTS_FILE), join(dir, ADAPTER_WEIGHTS_FILE))
    const diff = maxAbsDiff(await peftkitLogits(model, dir, [vera]), reference().models[model].adapters["vera"]!.logits)
    console.log(`${model}/vera, projections re-drawn from the key: max |peftkit - PEFT| = ${diff.toExponential(2)}`)
    expect(diff).toBeLessThan(1e-4)
  })
})

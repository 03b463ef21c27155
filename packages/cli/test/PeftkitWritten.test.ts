/**
 * The peftkit-written interop fixtures are what today's peftkit writes: every run of
 * `fixtures/peft-variants/make-adapters.mjs` is repeated in-process with the same flags, and the
 * adapter it saves must equal the committed one (config and tensors). Together with
 * `PeftInterop.*.test.ts`, which checks that Python's PEFT gives with the committed files the logits
 * peftkit gives, this says: an adapter `peftkit train` saves today loads in PEFT and computes there
 * what it computes here.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { readSafetensorsHeader } from "./peftkitWrittenFiles.js"
// @ts-expect-error: a plain .mjs script without types; only its RUNS list is imported.
import { common, fixtureDir, RUNS } from "./fixtures/peft-variants/make-adapters.mjs"
import { cli } from "./helpers.js"

interface Run {
  readonly model: string
  readonly name: string
  readonly args: ReadonlyArray<string>
}

const scratch = mkdtempSync(join(tmpdir(), "peftkit-written-"))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe("peftkit-written fixtures are what peftkit writes today", () => {
  it.each((RUNS as ReadonlyArray<Run>).map((run) => [`${run.model}/${run.name}`, run] as const))("%s", async (_, run) => {
    const out = join(scratch, run.model, run.name)
    const result = await cli("train", "--model", join(fixtureDir, run.model), ...common, ...run.args, "--adapter-path", out)
    expect(result.code, result.stderr).toBe(0)
    const committed = join(fixtureDir, "peftkit-written", run.model, run.name)
    const config = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"))
    expect({ ...config, base_model_name_or_path: run.model }).toEqual(JSON.parse(readFileSync(join(committed, "adapter_config.json"), "utf8")))
    const fresh = readSafetensorsHeader(join(out, "adapter_model.safetensors"))
    const saved = readSafetensorsHeader(join(committed, "adapter_model.safetensors"))
    expect([...fresh.tensors.keys()].sort()).toEqual([...saved.tensors.keys()].sort())
    let maxDiff = 0
    for (const [name, values] of fresh.tensors) {
      const other = saved.tensors.get(name)!
      expect(values.length, name).toBe(other.length)
      for (let i = 0; i < values.length; i++) maxDiff = Math.max(maxDiff, Math.abs(values[i]! - other[i]!))
    }
    // Same code, same seed, same CPU backend: the same bytes, up to float32 rounding of a changed summation order.
    expect(maxDiff).toBeLessThan(1e-5)
  })
})

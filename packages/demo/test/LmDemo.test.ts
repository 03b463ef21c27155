/** The language-model main job in miniature: a built-in model from a small recipe, then the three methods. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Backend, MetricsLog, ProgressReporter } from "@peftkit/core"
import { providers } from "@peftkit/backend-cpu"
import { readHfTokenizer } from "@peftkit/tokenizers"
import { Effect, Layer } from "effect"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { spawnSync } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { ensureBuiltinModel } from "../src/lm/BuiltinModel.js"
import { factQuestions, factTable, stories } from "../src/lm/Corpus.js"
import { lmDemo } from "../src/lm/LmDemo.js"

const layers = Layer.mergeAll(Backend.layer("wasm", providers), ProgressReporter.silent, MetricsLog.none)

describe("built-in language model and the main job", () => {
  it("the corpus is seeded; the task B facts are one food per animal", () => {
    expect(stories(3, 5)).toEqual(stories(3, 5))
    expect(stories(3, 5)).not.toEqual(stories(3, 6))
    const qa = factQuestions(factTable(8))
    expect(qa.train).toHaveLength(120)
    expect(qa.valid).toHaveLength(40)
    expect(qa.valid[0]).toEqual({ prompt: "q : which food is for the fox ? a :", completion: ` the fox eats ${factTable(8).get("fox")} .` })
  })

  it("builds a real HF directory (tokenizer.json from our BPE), reuses it while the recipe is unchanged, and runs LoRA/COLA/full", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-builtin-"))
    const recipe = { seed: 3, stories: 300, vocabSize: 200, steps: 8, batchSize: 8, hiddenSize: 32, layers: 1, version: 1 }
    const first = await Effect.runPromise(Effect.provide(ensureBuiltinModel(dir, recipe).pipe(Effect.provide(layers)), NodeFileSystem.layer))
    expect(first.built).toBe(true)
    for (const file of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "builtin.json"]) expect(existsSync(join(dir, file)), file).toBe(true)
    const again = await Effect.runPromise(Effect.provide(ensureBuiltinModel(dir, recipe).pipe(Effect.provide(layers)), NodeFileSystem.layer))
    expect(again.built).toBe(false)
    const tokenizer = await Effect.runPromise(Effect.provide(readHfTokenizer(dir), NodeFileSystem.layer))
    const text = "mia has a red fox ."
    expect(tokenizer.decode(tokenizer.encode(text), { skipSpecialTokens: true })).toBe(text)
    expect(JSON.parse(readFileSync(join(dir, "config.json"), "utf8"))).toMatchObject({ model_type: "llama", hidden_size: 32, num_hidden_layers: 1, num_key_value_heads: 2 })

    const out = mkdtempSync(join(tmpdir(), "peftkit-lmdemo-"))
    const rows = await Effect.runPromise(Effect.provide(lmDemo({ out, modelDir: dir, backend: "wasm", seed: 0, iters: 12, recipe }).pipe(Effect.provide(layers)), NodeFileSystem.layer))
    expect(rows.map((r) => r.method)).toEqual(["lora", "cola", "dora", "dora-cola", "vera", "full"])
    expect(rows[0]!.params).toBe(rows[1]!.params)
    for (const row of rows) {
      expect(row.recall).toBeGreaterThanOrEqual(0)
      expect(row.recall).toBeLessThanOrEqual(1)
      expect(Number.isFinite(row.validLoss)).toBe(true)
    }
    expect(readFileSync(join(out, "report.html"), "utf8").match(/<polyline/g)).toHaveLength(6)
    expect(JSON.parse(readFileSync(join(out, "cola", "adapter_config.json"), "utf8")).r).toBe(16)
    expect(JSON.parse(readFileSync(join(out, "dora-cola", "adapter_config.json"), "utf8"))).toMatchObject({ r: 16, use_dora: true })
    expect(JSON.parse(readFileSync(join(out, "vera", "adapter_config.json"), "utf8"))).toMatchObject({ peft_type: "VERA", r: 64 })
  })
})

describe("the built main job as a program", () => {
  it("importing @peftkit/cli does not run the peftkit command (the demo is also called main.js)", () => {
    const main = fileURLToPath(new URL("../dist/main.js", import.meta.url))
    if (!existsSync(main)) return // built by `pnpm test`'s tsc -b before vitest runs
    const result = spawnSync(process.execPath, [main, "--help"], { encoding: "utf8" })
    expect(result.status).toBe(0)
    expect(result.stdout).toContain("usage: peftkit-demo")
    expect(result.stdout).not.toContain("Usage: peftkit <command>")
  })
})

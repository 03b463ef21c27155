/**
 * The playground as a person uses it, in headless Chromium: WebGPU (SwiftShader here) and wasm, the
 * built-in model and stories260K dropped as files. Each run's downloaded adapter is loaded with
 * peftkit in Node onto the same base and must give the logits the page reported for its trained
 * model. Screenshots of each stage go to reports/playground/.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { unzipSync } from "fflate"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { compareWithNode, type Probe } from "./support/nodeLogits.js"
import { chromiumPath, launchPlayground, lossEnds, type Playground, type PlaygroundPage, repoRoot } from "./support/playgroundBrowser.js"

const skip = existsSync(chromiumPath) ? undefined : "Debian's chromium is not installed (scripts/install-test-system-deps.sh installs it)"
if (skip !== undefined) console.log(`playground browser tests skipped: ${skip}`)
const storiesDir = join(repoRoot, "../shared/data/models/stories260K")
const apples = join(repoRoot, "packages/cli/test/fixtures/apples")
const minutes = (n: number) => n * 60_000

/** Downloads the adapter (two files) and the report; returns a directory with the adapter and the report's probe. */
const downloadAdapter = async (view: PlaygroundPage) => {
  const files = await view.download("#download-adapter", 2)
  expect(files.map((f) => f.name).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"])
  const dir = mkdtempSync(join(tmpdir(), "peftkit-downloaded-"))
  for (const file of files) writeFileSync(join(dir, file.name), readFileSync(file.path))
  const [report] = await view.download("#download-report")
  const parsed = JSON.parse(readFileSync(report!.path, "utf8")) as { probe: Probe; steps: number; backend: string }
  return { dir, report: parsed }
}

const expectLogitsMatch = async (modelPath: string, adapterDir: string, probe: Probe, label: string) => {
  const { maxDiff, maxAbs } = await compareWithNode(modelPath, adapterDir, probe)
  console.log(`${label}: page vs Node logits from the downloaded adapter: max |diff| ${maxDiff.toExponential(2)} (logits up to ${maxAbs.toFixed(1)})`)
  expect(maxDiff).toBeLessThanOrEqual(1e-4 * Math.max(1, maxAbs))
}

const trainCola = async (view: PlaygroundPage, steps: number, screenshot?: string) => {
  await view.page.selectOption("#method", "cola")
  await view.page.fill("#steps", String(steps))
  await view.page.fill("#links", "3")
  await view.page.fill("#eval-every", "10")
  await view.page.click("#train")
  if (screenshot !== undefined) {
    await view.until("half the run", `s.points.filter((p) => p.loss !== undefined).length >= ${Math.floor(steps / 2)}`, minutes(4))
    await view.screenshot(screenshot)
  }
  return view.until("the run to finish", "s.trained !== undefined", minutes(6))
}

describe.skipIf(skip !== undefined && process.env.CI !== "true")("the playground in headless Chromium", () => {
  let playground: Playground
  beforeAll(async () => {
    if (skip !== undefined) throw new Error(`the playground tests must run in CI on this machine kind, but: ${skip}`)
    playground = await launchPlayground()
  }, minutes(4))
  afterAll(async () => playground?.close())

  it("WebGPU, built-in model: 20 COLA steps, the loss falls, base and adapter side by side, the downloaded adapter reproduces the page's logits", async () => {
    const view = await playground.open("?backend=webgpu")
    expect((await view.state()).backend?.name).toBe("webgpu")
    await view.page.click("#use-builtin-model")
    const withModel = await view.until("the built-in model", "s.model !== undefined && s.busy === undefined")
    expect(withModel.model?.parameters).toBeGreaterThan(100_000)
    await view.page.click("#use-builtin-data")
    await view.until("the built-in data", "s.data !== undefined && s.busy === undefined")
    await view.screenshot("01-model-and-data")

    const trained = await trainCola(view, 20, "02-training-webgpu")
    expect(trained.trained).toMatchObject({ step: 20, stopped: false })
    expect(trained.knots).toHaveLength(2) // 3 links
    const { first, last, count } = lossEnds(trained)
    expect(count).toBe(20)
    expect(last, `train loss from ${first} to ${last}`).toBeLessThan(first)
    await view.screenshot("03-trained-webgpu")

    await view.page.click("#generate")
    const generated = await view.until("generation", "s.generated !== undefined && s.busy === undefined")
    expect(generated.generated!.base.length).toBeGreaterThan(0)
    expect(generated.generated!.adapted.length).toBeGreaterThan(0)
    await view.page.click("#evaluate")
    const evaluated = await view.until("evaluation", "s.evaluated !== undefined && s.busy === undefined")
    expect(evaluated.evaluated!.adapted.loss!, "validation loss with the adapter below the base's").toBeLessThan(evaluated.evaluated!.base.loss!)
    await view.screenshot("04-compare-webgpu")

    const { dir, report } = await downloadAdapter(view)
    expect(report.backend).toBe("webgpu")
    await view.screenshot("05-downloaded-webgpu")
    await expectLogitsMatch(join(playground.siteDir, "builtin/model"), dir, report.probe, "webgpu, built-in")
    await view.page.close()
  }, minutes(10))

  it.skipIf(!existsSync(join(storiesDir, "stories260K.bin")))("WebGPU, stories260K dropped as files: 20 COLA steps, the downloaded adapter reproduces the page's logits", async () => {
    const view = await playground.open("?backend=webgpu")
    await view.page.setInputFiles("#model-files", [join(storiesDir, "stories260K.bin"), join(storiesDir, "tok512.bin")])
    const loaded = await view.until("stories260K", "s.model !== undefined && s.busy === undefined")
    expect(loaded.model).toMatchObject({ architecture: "llama (llama2.c file)", vocabSize: 512 })
    await view.page.setInputFiles("#data-files", [join(apples, "train.jsonl"), join(apples, "valid.jsonl")])
    await view.until("the apples data", "s.data !== undefined && s.busy === undefined")
    await view.page.fill("#lr", "0.005")
    await view.page.fill("#targets", "q_proj, v_proj")
    await view.page.fill("#batch", "4") // SwiftShader is software: a smaller batch keeps the run short
    const trained = await trainCola(view, 20)
    expect(trained.trained).toMatchObject({ step: 20, stopped: false })
    const { first, last } = lossEnds(trained)
    expect(last, `train loss from ${first} to ${last}`).toBeLessThan(first)
    await view.page.click("#generate")
    await view.until("generation", "s.generated !== undefined && s.busy === undefined")
    await view.screenshot("06-stories260K-webgpu")
    const { dir, report } = await downloadAdapter(view)
    await expectLogitsMatch(join(storiesDir, "stories260K.bin"), dir, report.probe, "webgpu, stories260K")
    await view.page.close()
  }, minutes(10))

  it("wasm: Stop keeps a checkpoint in the browser, a reload resumes it, and the merged model download gives the page's logits", async () => {
    const view = await playground.open("?backend=wasm")
    expect((await view.state()).backend?.name).toBe("wasm")
    await view.page.click("#use-builtin-model")
    await view.until("the built-in model", "s.model !== undefined && s.busy === undefined")
    await view.page.click("#use-builtin-data")
    await view.until("the built-in data", "s.data !== undefined && s.busy === undefined")
    await view.page.fill("#steps", "150")
    await view.page.fill("#checkpoint-every", "10")
    await view.page.click("#train")
    await view.until("30 steps", "s.points.filter((p) => p.loss !== undefined).length >= 30", minutes(3))
    await view.page.click("#stop")
    const stopped = await view.until("the stop", "s.trained !== undefined")
    expect(stopped.trained!.stopped).toBe(true)
    const stopStep = stopped.trained!.step
    expect(stopStep).toBeLessThan(150)

    // A reload loses the page; the checkpoint is in IndexedDB.
    await view.page.reload()
    await view.until("the backend after the reload", "s.backend !== undefined && s.busy === undefined")
    expect(await view.page.isVisible("#resume-banner")).toBe(true)
    expect(await view.page.textContent("#resume-text")).toContain(`step ${stopStep} of 150`)
    await view.screenshot("07-resume-after-reload")
    await view.page.click("#resume")
    await view.until("the resumed run to start", "s.training === true && s.points.length > 0", minutes(2))
    // The form shows the run being resumed, not the page's defaults (60 steps).
    expect(await view.page.inputValue("#steps")).toBe("150")
    const resumed = await view.until("the resumed run", "s.trained !== undefined", minutes(4))
    expect(resumed.trained).toMatchObject({ step: 150, stopped: false })
    // The chart holds the whole run: the steps before the stop came from the checkpoint.
    const steps = resumed.points.filter((p) => p.loss !== undefined).map((p) => p.step)
    expect(steps[0]).toBeLessThanOrEqual(2)
    expect(steps.some((step) => step < stopStep)).toBe(true)
    expect(steps.at(-1)).toBe(150)
    await view.screenshot("08-resumed-wasm")

    const { dir, report } = await downloadAdapter(view)
    await expectLogitsMatch(join(playground.siteDir, "builtin/model"), dir, report.probe, "wasm, built-in, resumed")
    const [merged] = await view.download("#download-merged")
    const unzipped = unzipSync(readFileSync(merged!.path))
    const mergedDir = mkdtempSync(join(tmpdir(), "peftkit-merged-"))
    for (const [name, bytes] of Object.entries(unzipped)) {
      mkdirSync(join(mergedDir, name, ".."), { recursive: true })
      writeFileSync(join(mergedDir, name), bytes)
    }
    expect(Object.keys(unzipped).sort()).toEqual(["peftkit-merged/config.json", "peftkit-merged/model.safetensors", "peftkit-merged/tokenizer.json", "peftkit-merged/tokenizer_config.json"])
    // The merged model alone (no adapter: an empty adapter dir is not loaded) gives the same logits.
    const { maxDiff, maxAbs } = await compareWithNode(join(mergedDir, "peftkit-merged"), undefined, report.probe)
    console.log(`wasm, merged model download: max |diff| ${maxDiff.toExponential(2)} (logits up to ${maxAbs.toFixed(1)})`)
    expect(maxDiff).toBeLessThanOrEqual(1e-4 * Math.max(1, maxAbs))
    await view.page.close()
  }, minutes(10))

  it("WebGPU missing: the page falls back to wasm, says why, and trains", async () => {
    const view = await playground.open("?backend=webgpu", { webgpu: false })
    const state = await view.state()
    expect(state.backend?.name).toBe("wasm")
    expect(state.backend?.reason).toContain("WebGPU is not available here")
    expect(await view.page.textContent("#errors")).toContain("the page trains on wasm")
    await view.page.click("#use-builtin-model")
    await view.until("the built-in model", "s.model !== undefined && s.busy === undefined")
    await view.page.click("#use-builtin-data")
    await view.until("the built-in data", "s.data !== undefined && s.busy === undefined")
    await view.page.fill("#steps", "5")
    await view.page.click("#train")
    expect((await view.until("a short run", "s.trained !== undefined")).trained!.step).toBe(5)
    await view.screenshot("10-webgpu-missing")
    await view.page.close()
  }, minutes(3))

  it("switching the backend loads the same model and data again on the new one", async () => {
    const view = await playground.open("?backend=wasm")
    await view.page.click("#use-builtin-model")
    await view.until("the built-in model", "s.model !== undefined && s.busy === undefined")
    await view.page.click("#use-builtin-data")
    await view.until("the built-in data", "s.data !== undefined && s.busy === undefined")
    await view.page.selectOption("#backend-select", "cpu")
    const switched = await view.until("the model and data on cpu", "s.backend?.name === 'cpu' && s.model !== undefined && s.data !== undefined && s.busy === undefined")
    expect(switched.model?.source).toBe("built-in tiny Llama")
    await view.page.fill("#steps", "3")
    await view.page.click("#train")
    expect((await view.until("a short run on cpu", "s.trained !== undefined")).trained!.step).toBe(3)
    await view.page.close()
  }, minutes(3))

  it("a task from its dropped official files: SST-2 sampled as MeZO samples it, accuracy for base and adapter", async () => {
    const sst2 = join(repoRoot, "../shared/data/glue/SST-2")
    if (!existsSync(join(sst2, "train.tsv"))) return console.log("shared data absent: the task test did not run")
    const view = await playground.open("?backend=wasm")
    await view.page.click("#use-builtin-model")
    await view.until("the built-in model", "s.model !== undefined && s.busy === undefined")
    await view.page.selectOption("#task-select", "sst2")
    await view.page.setInputFiles("#data-files", [join(sst2, "train.tsv"), join(sst2, "dev.tsv")])
    const loaded = await view.until("SST-2", "s.data !== undefined && s.busy === undefined")
    expect(loaded.data).toMatchObject({ train: 1000, valid: 500 })
    await view.page.fill("#steps", "10")
    await view.page.click("#train")
    await view.until("a short run", "s.trained !== undefined")
    await view.page.click("#evaluate")
    const evaluated = await view.until("evaluation", "s.evaluated !== undefined && s.busy === undefined", minutes(3))
    expect(evaluated.evaluated!.split).toContain("SST-2 test (first 200 of 872)")
    expect(evaluated.evaluated!.base.accuracy).toBeGreaterThan(0)
    expect(evaluated.evaluated!.adapted.accuracy).toBeGreaterThan(0)
    await view.screenshot("11-task-sst2")
    await view.page.close()
  }, minutes(5))

  it("says what is wrong, in the page, and loses nothing: a non-model file, a tokenizer that does not match, a model too big for the tab, a bad jsonl line", async () => {
    const view = await playground.open("?backend=wasm")
    await view.page.click("#use-builtin-model")
    await view.until("the built-in model", "s.model !== undefined && s.busy === undefined")
    await view.page.click("#use-builtin-data")
    await view.until("the built-in data", "s.data !== undefined && s.busy === undefined")
    const work = mkdtempSync(join(tmpdir(), "peftkit-bad-inputs-"))
    const errorAfter = async (action: () => Promise<void>) => {
      const before = (await view.state()).errors.length
      await action()
      const after = await view.page
        .waitForFunction((n) => (window as unknown as { playground: { errors: Array<string>; busy?: string } }).playground.errors.length > n, before, { timeout: 60_000 })
        .then(() => view.state())
      return after.errors.at(-1)!
    }

    writeFileSync(join(work, "notes.txt"), "not a model")
    expect(await errorAfter(() => view.page.setInputFiles("#model-files", [join(work, "notes.txt")]))).toContain("this is not a model")

    // The built-in model's files with a tokenizer of more tokens than its embedding has rows.
    const builtin = join(playground.siteDir, "builtin/model")
    const mismatched = join(work, "mismatched")
    mkdirSync(mismatched)
    for (const name of ["config.json", "model.safetensors", "tokenizer_config.json"]) writeFileSync(join(mismatched, name), readFileSync(join(builtin, name)))
    const tokenizer = JSON.parse(readFileSync(join(builtin, "tokenizer.json"), "utf8")) as { model: { vocab: Record<string, number> } }
    const size = Object.keys(tokenizer.model.vocab).length
    for (let i = 0; i < 300; i++) tokenizer.model.vocab[`extra${i}`] = size + i
    writeFileSync(join(mismatched, "tokenizer.json"), JSON.stringify(tokenizer))
    const mismatch = await errorAfter(() => view.page.setInputFiles("#model-files", ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"].map((n) => join(mismatched, n))))
    expect(mismatch).toMatch(/the tokenizer has \d+ tokens but the model's embedding has \d+ rows/)

    // A 70B-class config: refused from its config alone, before any weights are read.
    const huge = join(work, "huge")
    mkdirSync(huge)
    const config = JSON.parse(readFileSync(join(builtin, "config.json"), "utf8")) as Record<string, unknown>
    writeFileSync(join(huge, "config.json"), JSON.stringify({ ...config, hidden_size: 8192, intermediate_size: 28672, num_hidden_layers: 80, num_attention_heads: 64, num_key_value_heads: 8, head_dim: 128, vocab_size: 128256 }))
    writeFileSync(join(huge, "model.safetensors"), readFileSync(join(builtin, "model.safetensors")))
    writeFileSync(join(huge, "tokenizer.json"), readFileSync(join(builtin, "tokenizer.json")))
    const tooBig = await errorAfter(() => view.page.setInputFiles("#model-files", ["config.json", "model.safetensors", "tokenizer.json"].map((n) => join(huge, n))))
    expect(tooBig).toMatch(/\(6\d{4}M parameters\) needs about [\d.]+ GiB to train in this tab/)

    // One file of any name: its last tenth is held out, and a bad line there is still named by the file's own line number.
    const lines = Array.from({ length: 12 }, (_, i) => (i === 10 ? `{"text": broken` : JSON.stringify({ text: `line ${i + 1}` })))
    writeFileSync(join(work, "notes.jsonl"), `${lines.join("\n")}\n`)
    expect(await errorAfter(() => view.page.setInputFiles("#data-files", [join(work, "notes.jsonl")]))).toMatch(/invalid dataset notes\.jsonl:11: not valid JSON/)

    // A combination a chain policy cannot train is refused before the run starts.
    await view.page.selectOption("#method", "xgb")
    await view.page.selectOption("#variant", "dora")
    expect(await errorAfter(() => view.page.click("#train"))).toContain("XGBLoRA merges each link with a step size")
    await view.page.selectOption("#method", "cola")
    await view.page.selectOption("#variant", "lora")
    await view.screenshot("09-errors")
    await view.until("the page to be idle", "s.busy === undefined && s.training === false")

    // Nothing was lost: the built-in model and data are still loaded, and train.
    const state = await view.state()
    expect(state.model?.source).toBe("built-in tiny Llama")
    expect(state.data?.describe).toContain("built-in")
    await view.page.fill("#steps", "3")
    await view.page.click("#train")
    const trained = await view.until("a short run after the errors", "s.trained !== undefined")
    expect(trained.trained!.step).toBe(3)
    await view.page.close()
  }, minutes(6))
})

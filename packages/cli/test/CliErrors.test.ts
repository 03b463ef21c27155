/**
 * The new user's first-hour errors (issue 10, item 11): each bad input is one line on stderr about
 * what was wrong, with the exit code of its kind (2 usage, 1 other), and `--backend auto` keeps
 * Dawn's Vulkan noise out of every command's output.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { cli, data, haveShared, lastLine, repo, stories } from "./helpers.js"


/** The failure is exactly one `error:` line, with `code`, and the line is `message` (or contains it). */
const expectError = async (argv: Array<string>, code: number, message: string | RegExp) => {
  const result = await cli(...argv)
  const label = argv.join(" ")
  expect(result.code, label).toBe(code)
  const errors = result.stderr.split("\n").filter((line) => line.startsWith("error:"))
  expect(errors, label).toHaveLength(1)
  if (typeof message === "string") expect(lastLine(result.stderr), label).toBe(message)
  else expect(lastLine(result.stderr), label).toMatch(message)
  expect(result.stderr, label).not.toContain("    at ")
  return result
}

const model = haveShared ? stories : "model.bin" // usage errors are found before the model is read

describe("peftkit: a bad value is named with what it should be", () => {
  it("a value outside a set lists every allowed value", async () => {
    await expectError(["train", "--model", model, "--data", data, "--schedule", "cosin"], 2, 'error: --schedule: expected one of "constant", "linear", "cosine" (got "cosin")')
    await expectError(["train", "--model", model, "--data", data, "--method", "dora"], 2, 'error: --method: expected one of "lora", "cola", "rac", "xgb", "full" (got "dora")')
    await expectError(["train", "--model", model, "--data", data, "--knot-optimizer", "kept"], 2, 'error: --knot-optimizer: expected one of "reset", "keep" (got "kept")')
    await expectError(["eval", "--model", model, "--data", data, "--split", "train"], 2, 'error: --split: expected one of "test", "valid" (got "train")')
    await expectError(["generate", "--model", model, "--backend", "tpu"], 2, /^error: --backend: expected one of "auto", "node-gpu", "webgpu", "node", "wasm", "cpu" \(got "tpu"\)$/)
  })

  it("a negative number after a flag is its value, and the error is about the value", async () => {
    await expectError(["train", "--model", model, "--data", data, "--rank", "-1"], 2, "error: --rank: must be a positive integer")
    await expectError(["train", "--model", model, "--data", data, "--iters", "-5"], 2, "error: --iters: must be a positive integer")
    await expectError(["train", "--model", model, "--data", data, "--warmup", "-1"], 2, "error: --warmup: must be a non-negative integer")
    await expectError(["train", "--model", model, "--data", data, "--learning-rate", "-1e-3"], 2, /^error: --learning-rate: .*positive/)
    // A negative value that is valid passes on to the next error.
    await expectError(["train", "--model", model, "--data", data, "--seed", "-3", "--val-batches", "-1", "--schedule", "x"], 2, /^error: --schedule: expected one of/)
    // A missing value is still said as such.
    await expectError(["train", "--model", model, "--data", data, "--rank", "--iters", "2"], 2, /^error: --rank: /)
  })

  it("--data that is a jsonl file says --data takes a directory and names the file's directory", async () => {
    const file = join(data, "train.jsonl")
    await expectError(["train", "--model", model, "--data", file], 2, `error: --data: takes a directory holding train.jsonl, not a file; give the file's directory: --data ${data}`)
    await expectError(["eval", "--model", model, "--data", file, "--no-adapter"], 2, `error: --data: takes a directory holding test.jsonl (or valid.jsonl), not a file; give the file's directory: --data ${data}`)
    // The same from a config file.
    const dir = mkdtempSync(join(tmpdir(), "peftkit-clierr-"))
    writeFileSync(join(dir, "run.json"), JSON.stringify({ model, data: file }))
    await expectError(["train", "--config", join(dir, "run.json")], 2, `error: --data: takes a directory holding train.jsonl, not a file; give the file's directory: --data ${data}`)
  })

  it("a missing adapter directory says so and suggests --no-adapter (merge, which has no --no-adapter, does not)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-clierr-"))
    const none = join(dir, "adapters")
    const hint = "give --adapter-path DIR with an adapter_config.json"
    await expectError(["generate", "--model", model, "--adapter-path", none, "--backend", "cpu"], 2, `error: --adapter-path: adapter directory ${none} does not exist (${hint}; to use the model without an adapter, pass --no-adapter)`)
    await expectError(["eval", "--model", model, "--adapter-path", none, "--data", data, "--backend", "cpu"], 2, `error: --adapter-path: adapter directory ${none} does not exist (${hint}; to use the model without an adapter, pass --no-adapter)`)
    await expectError(["merge", "--model", model, "--adapter-path", none, "--save-path", join(dir, "merged"), "--backend", "cpu"], 2, `error: --adapter-path: adapter directory ${none} does not exist (${hint})`)
    await expectError(["generate", "--model", model, "--adapter-path", dir, "--backend", "cpu"], 2, `error: --adapter-path: ${dir} holds no adapter_config.json, so no adapter (${hint}; to use the model without an adapter, pass --no-adapter)`)
    expect(existsSync(join(dir, "merged"))).toBe(false)
  })

  it("a file that is no model checkpoint says so instead of reading a header of garbage", async () => {
    const file = join(data, "train.jsonl")
    const result = await expectError(
      ["generate", "--model", file, "--no-adapter", "--backend", "cpu"],
      1,
      /^error: invalid checkpoint .*train\.jsonl: not a model checkpoint: expected a Hugging Face model directory or a llama2\.c \.bin file/
    )
    expect(result.stderr).not.toMatch(/dim \d|n_layers|hidden_dim/)
    const dir = mkdtempSync(join(tmpdir(), "peftkit-clierr-"))
    const binary = join(dir, "random.bin")
    writeFileSync(binary, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24)))
    await expectError(["train", "--model", binary, "--data", data, "--iters", "1", "--backend", "cpu", "--adapter-path", join(dir, "out")], 1, /not a model checkpoint: expected a Hugging Face model directory or a llama2\.c \.bin file$/)
    expect(existsSync(join(dir, "out"))).toBe(false)
  })
})

describe.skipIf(!haveShared)("peftkit: --target-modules all-linear (stories260K, shared data)", () => {
  it("trains every linear layer but the head, and the adapter loads in eval and generate", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-clierr-"))
    const adapter = join(dir, "all-linear")
    const trained = await cli("train", "--model", stories, "--data", data, "--target-modules", "all-linear", "--iters", "2", "--backend", "cpu", "--adapter-path", adapter)
    expect(trained.code, trained.stderr).toBe(0)
    const config = JSON.parse(readFileSync(join(adapter, "adapter_config.json"), "utf8")) as { target_modules: unknown }
    expect(config.target_modules).toBe("all-linear")
    const evaluated = await cli("eval", "--model", stories, "--adapter-path", adapter, "--data", data, "--backend", "cpu")
    expect(evaluated.code, evaluated.stderr).toBe(0)
    // 5 layers x (q, k, v, o, gate, up, down); lm_head left out, as PEFT does.
    expect(evaluated.stderr).toContain("35 layers")
    // ["all-linear"] in a config file means the same.
    writeFileSync(join(dir, "run.json"), JSON.stringify({ model: stories, data, targetModules: ["all-linear"], method: "cola", links: 2, iters: 2, backend: "cpu", adapterPath: join(dir, "cola") }))
    const chained = await cli("train", "--config", join(dir, "run.json"))
    expect(chained.code, chained.stderr).toBe(0)
    const generated = await cli("generate", "--model", stories, "--adapter-path", join(dir, "cola"), "--max-tokens", "2", "--backend", "cpu")
    expect(generated.code, generated.stderr).toBe(0)
    expect(generated.stderr).toContain("35 layers")
  })
})

describe.skipIf(!haveShared)("peftkit: --backend auto probes WebGPU quietly", () => {
  it("auto does not load Dawn into the process unless it picks WebGPU, and says why in the selection line", async () => {
    const result = await cli("generate", "--model", stories, "--no-adapter", "--max-tokens", "1", "--backend", "auto")
    expect(result.code, result.stderr).toBe(0)
    const selection = result.stderr.split("\n").find((line) => line.startsWith("backend: ")) ?? ""
    expect(selection).toMatch(/\bwebgpu\b/)
    if (selection.startsWith("backend: webgpu")) return // a hardware adapter: loaded because picked
    const navigatorGpu = (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu
    if (/webgpu unavailable \(package @peftkit\/backend-webgpu/.test(selection)) return // not installed here
    expect(navigatorGpu, selection).toBeUndefined()
    expect(selection).toMatch(/webgpu unavailable \((no WebGPU adapter found \(probed quietly|.*not a hardware GPU.*probed quietly|the `webgpu` package)/)
  })

  it("with no Vulkan driver (as on a machine without one), auto names Dawn's reason in the selection line", async () => {
    const saved = { icd: process.env.VK_ICD_FILENAMES, drivers: process.env.VK_DRIVER_FILES }
    // The probe's child process inherits these: the Vulkan loader then finds no driver.
    process.env.VK_ICD_FILENAMES = "/nonexistent/peftkit-no-icd.json"
    process.env.VK_DRIVER_FILES = "/nonexistent/peftkit-no-icd.json"
    try {
      const result = await cli("generate", "--model", stories, "--no-adapter", "--max-tokens", "1", "--backend", "auto")
      expect(result.code, result.stderr).toBe(0)
      const selection = result.stderr.split("\n").find((line) => line.startsWith("backend: ")) ?? ""
      if (/webgpu unavailable \(package @peftkit\/backend-webgpu|the `webgpu` package \(Dawn for Node\) is not installed/.test(selection)) return
      expect(selection).toMatch(/webgpu unavailable \(no WebGPU adapter found \(probed quietly; Dawn: [^)]+\)\)/)
      expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined()
    } finally {
      for (const [name, value] of [["VK_ICD_FILENAMES", saved.icd], ["VK_DRIVER_FILES", saved.drivers]] as const) {
        if (value === undefined) delete process.env[name]
        else process.env[name] = value
      }
    }
  })

  // The native stderr (file descriptor 2) is only visible from outside: run the built CLI.
  const main = join(repo, "packages/cli/dist/main.js")
  const built = (source: string, output: string) => existsSync(output) && statSync(output).mtimeMs >= statSync(source).mtimeMs
  const fresh =
    built(join(repo, "packages/cli/src/InstalledBackends.ts"), join(repo, "packages/cli/dist/InstalledBackends.js")) &&
    built(join(repo, "packages/backend-webgpu/src/WebGpu.ts"), join(repo, "packages/backend-webgpu/dist/WebGpu.js"))
  it.skipIf(!fresh)("no Dawn warning or native stack reaches the terminal (built CLI, tsc -b)", async () => {
    const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [main, "generate", "--model", stories, "--no-adapter", "--max-tokens", "1"], { cwd: repo, timeout: 60_000 }, (error, _stdout, stderr) =>
        resolve({ code: error === null ? 0 : Number((error as { code?: unknown }).code ?? 1), stderr: String(stderr) })
      )
    })
    expect(code, stderr).toBe(0)
    const picked = /^backend: webgpu/m.test(stderr)
    if (!picked) {
      expect(stderr).not.toMatch(/^Warning:/m)
      expect(stderr).not.toMatch(/artificially reduced|Couldn't load Vulkan|CheckVkSuccessImpl/)
    }
  })
})

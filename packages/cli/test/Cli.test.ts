/**
 * The `peftkit` command line end to end, in-process: a short train on stories260K (shared data),
 * then eval, generate, merge and export on what it saved; and the documented errors.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { providers } from "@peftkit/backend-cpu"
import { Backend, loadAdapter } from "@peftkit/core"
import { lora } from "@peftkit/lora"
import { loadCausalLM } from "@peftkit/models"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { cli, data, haveShared, lastLine, repo, stories } from "./helpers.js"


describe("peftkit (errors and help)", () => {
  it("--help lists the commands; each command has its own help", async () => {
    const help = await cli("--help")
    expect(help.code).toBe(0)
    for (const name of ["train", "eval", "generate", "merge", "export"]) expect(help.stdout).toContain(`  ${name} `)
    const trainHelp = await cli("train", "--help")
    expect(trainHelp.stdout).toContain("--learning-rate LR")
    expect(trainHelp.stdout).toContain("--method M")
  })

  it("bad flags, bad values and bad files are one-line errors with non-zero exit codes", async () => {
    const cases: Array<[Array<string>, number, string]> = [
      [["frobnicate"], 2, "error: unknown command 'frobnicate'. Run 'peftkit --help'."],
      [["train", "--model", stories, "--data", data, "--rnak", "2"], 2, "error: --rnak: unknown flag '--rnak'"],
      [["train", "--model", stories, "--data", data, "--rank=-2"], 2, "error: --rank: must be a positive integer"],
      [["train", "--model", stories, "--data", data, "--method", "dora"], 2, "error: --method:"],
      [["train", "--model", stories], 2, "error: --data: give exactly one of --data DIR or --task NAME"],
      [["train", "--model", "/nope/model", "--data", data, "--backend", "cpu"], 1, "error: cannot stat /nope/model"],
      [["generate", "--model", stories, "--backend", "tpu"], 2, "error: --backend:"]
    ]
    for (const [argv, code, message] of cases) {
      const result = await cli(...argv)
      expect(result.code, argv.join(" ")).toBe(code)
      expect(lastLine(result.stderr), argv.join(" ")).toContain(message)
      expect(result.stderr).not.toContain("    at ") // no stack trace without --verbose
    }
  })

  it("a config file is decoded with the same rules: unknown keys are named", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-cfg-"))
    writeFileSync(join(dir, "bad.json"), JSON.stringify({ model: stories, data, learningRte: 1e-3 }))
    const result = await cli("train", "--config", join(dir, "bad.json"))
    expect(result.code).toBe(2)
    expect(lastLine(result.stderr)).toContain("--learning-rte: unknown key")
  })
})

describe.skipIf(!haveShared)("peftkit on stories260K (shared data)", () => {
  let out: string
  beforeAll(async () => {
    out = mkdtempSync(join(tmpdir(), "peftkit-cli-"))
  })
  afterAll(() => undefined)

  it("train (COLA, 2 links, a checkpoint), then eval, generate, merge and export on what it saved", async () => {
    const adapter = join(out, "cola")
    const trained = await cli("train", "--model", stories, "--data", data, "--method", "cola", "--links", "2", "--iters", "12", "--batch-size", "4", "--learning-rate", "5e-3", "--adapter-path", adapter, "--save-every", "6", "--backend", "wasm", "--seed", "1")
    expect(trained.code, trained.stderr).toBe(0)
    expect(trained.stderr).toContain("saved the 2-link chain as one PEFT LoRA of rank 16")
    const config = JSON.parse(readFileSync(join(adapter, "adapter_config.json"), "utf8"))
    expect(config).toMatchObject({ peft_type: "LORA", r: 16, lora_alpha: 16, task_type: "CAUSAL_LM" })
    const metrics = readFileSync(join(adapter, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    expect(metrics.filter((m) => m.event === "report").map((m) => m.step)).toEqual([10, 12])
    expect(existsSync(join(adapter, "checkpoints", "step-000012", "chain_state.json"))).toBe(true)
    expect(readFileSync(join(adapter, "report.html"), "utf8")).toContain("<polyline")

    const withAdapter = await cli("eval", "--model", stories, "--adapter-path", adapter, "--data", data, "--backend", "wasm")
    const base = await cli("eval", "--model", stories, "--no-adapter", "--data", data, "--backend", "wasm")
    const loss = (text: string) => Number(/Test loss ([\d.]+)/.exec(text)![1])
    expect(loss(withAdapter.stderr)).toBeLessThan(loss(base.stderr))

    const generated = await cli("generate", "--model", stories, "--no-adapter", "--prompt", "Once upon a time", "--max-tokens", "20", "--backend", "wasm")
    expect(generated.stdout.startsWith("Once upon a time, there was a little girl named Lily.")).toBe(true)
    const adapted = await cli("generate", "--model", stories, "--adapter-path", adapter, "--prompt", "Tom had 5 apples.", "--max-tokens", "12", "--backend", "wasm")
    expect(adapted.code).toBe(0)
    expect(adapted.stdout.startsWith("Tom had 5 apples.")).toBe(true)

    // merge: the merged HF directory gives the adapted model's loss without any adapter.
    const merged = join(out, "merged")
    expect((await cli("merge", "--model", stories, "--adapter-path", adapter, "--save-path", merged, "--backend", "wasm")).code).toBe(0)
    const mergedEval = await cli("eval", "--model", merged, "--no-adapter", "--data", data, "--backend", "wasm")
    expect(Math.abs(loss(mergedEval.stderr) - loss(withAdapter.stderr))).toBeLessThan(1e-3)
    // And logit by logit: base + adapter vs the merged HF directory (llama2.c RoPE layout converted to HF's on save).
    const logits = await Effect.runPromise(
      Effect.provide(Effect.gen(function* () {
        const ids = tf.tensor2d([[1, 403, 407, 261, 378, 432, 383, 286]], [1, 8], "int32")
        const adapted = (yield* loadCausalLM(stories)).model
        yield* loadAdapter(adapter, adapted, [lora])
        const fused = (yield* loadCausalLM(merged)).model
        const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(adapted.forward(ids), fused.forward(ids)))).dataSync()[0]!)
        adapted.dispose()
        fused.dispose()
        return diff
      }).pipe(Effect.provide(Backend.layer("wasm", providers))), NodeFileSystem.layer)
    )
    expect(logits).toBeLessThan(1e-4)

    // export: compress the rank-16 chain to rank 8; the error is reported and the result loads.
    const exported = await cli("export", "--adapter-path", adapter, "--save-path", join(out, "r8"), "--rank", "8", "--backend", "wasm")
    expect(exported.stderr).toMatch(/compressed rank 16 -> 8: relative Frobenius error 0\.\d{4}/)
    expect(JSON.parse(readFileSync(join(out, "r8", "adapter_config.json"), "utf8")).r).toBe(8)
    expect((await cli("eval", "--model", stories, "--adapter-path", join(out, "r8"), "--data", data, "--backend", "wasm")).code).toBe(0)
  })

  it("--resume continues an interrupted run from its newest checkpoint, and refuses changed options", async () => {
    const adapter = join(out, "lora")
    const args = ["--model", stories, "--data", data, "--method", "lora", "--batch-size", "4", "--learning-rate", "5e-3", "--adapter-path", adapter, "--save-every", "4", "--backend", "wasm", "--iters", "12"]
    expect((await cli("train", ...args)).code).toBe(0)
    const uninterrupted = readFileSync(join(adapter, "adapter_model.safetensors"))
    // The "crash": the run's last checkpoint never got written.
    rmSync(join(adapter, "checkpoints", "step-000012"), { recursive: true })
    const resumed = await cli("train", ...args, "--resume")
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stderr).toContain("at step 8")
    expect(readFileSync(join(adapter, "adapter_model.safetensors")).equals(uninterrupted)).toBe(true)

    const changed = await cli("train", ...args.map((a) => (a === "12" ? "16" : a)), "--resume")
    expect(changed.code).toBe(2)
    expect(lastLine(changed.stderr)).toMatch(/^error: --iters: differs from the checkpoint being resumed \(12, now 16\)/)
    const otherMethod = await cli("train", ...args.map((a) => (a === "lora" ? "cola" : a)), "--resume")
    expect(otherMethod.code).toBe(2)
    expect(lastLine(otherMethod.stderr)).toMatch(/^error: --resume: the checkpoint in .* is from --method lora, not cola$/)
  })

  it("train and eval on one of the paper's tasks (RTE, MeZO prompts and sampling)", async () => {
    const adapter = join(out, "rte")
    const taskData = join(repo, "../shared/data")
    const trained = await cli("train", "--model", stories, "--task", "rte", "--task-data", taskData, "--iters", "3", "--batch-size", "2", "--max-seq-length", "128", "--adapter-path", adapter, "--backend", "wasm", "--val-batches", "2")
    expect(trained.code, trained.stderr).toBe(0)
    expect(trained.stderr).toContain("task RTE (MeZO sampling, seed 0: 1000 train, 500 valid, 277 test)")
    const evaluated = await cli("eval", "--model", stories, "--adapter-path", adapter, "--task", "rte", "--task-data", taskData, "--limit", "8", "--max-seq-length", "128", "--backend", "wasm")
    expect(evaluated.code, evaluated.stderr).toBe(0)
    expect(lastLine(evaluated.stderr)).toMatch(/^RTE test: accuracy \d+\.\d{2} \(8 examples\)$/)
  })
})

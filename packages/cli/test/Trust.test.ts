/**
 * `peftkit train` loses nothing and never reports a broken file as intact: Ctrl-C saves and resumes
 * to the byte-identical adapter with the whole run's history; a diverging run refuses to save
 * non-finite weights; an output directory holding another run is refused (or replaced on request),
 * locked while in use, and cleaned of a killed run's temp files; a truncated newest checkpoint falls
 * back to the one before it. In-process, on stories260K (shared data).
 */
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { Safetensors } from "@peftkit/core"
import { data, lastLine, repo, runCli as cli, stories } from "./helpers.js"


const fresh = (name: string) => join(mkdtempSync(join(tmpdir(), "peftkit-trust-")), name)
const base = (adapter: string, iters = 12) =>
  ["train", "--model", stories, "--data", data, "--method", "cola", "--links", "2", "--batch-size", "4", "--learning-rate", "5e-3", "--adapter-path", adapter, "--backend", "wasm", "--iters", String(iters), "--steps-per-report", "2", "--seed", "3"]

const allFinite = (file: string) => Safetensors.decodeSync(new Uint8Array(readFileSync(file))).tensors.every((view) => Safetensors.toFloat32(view).every(Number.isFinite))

describe.skipIf(!existsSync(stories))("peftkit train: nothing lost, nothing broken saved", () => {
  it("Ctrl-C saves a checkpoint and says how to resume; --resume ends at the uninterrupted run's adapter, byte for byte, with the whole history", async () => {
    const whole = fresh("whole")
    expect((await cli(base(whole))).code).toBe(0)
    const expected = readFileSync(join(whole, "adapter_model.safetensors"))

    const cut = fresh("cut")
    let signalled = false
    const interrupted = await cli(base(cut), (chunk) => {
      // The first signal, as a terminal's Ctrl-C delivers it, right after the report of step 4.
      if (!signalled && chunk.includes("Iter 4:")) {
        signalled = true
        process.emit("SIGINT", "SIGINT")
      }
    })
    expect(interrupted.code, interrupted.stderr).toBe(130)
    expect(interrupted.stderr).toContain("SIGINT: stopping after this step and writing a checkpoint")
    expect(interrupted.stderr).toContain("continue with the same command and --resume")
    expect(lastLine(interrupted.stderr)).toMatch(/^error: interrupted after step \d+; a checkpoint of it was written$/)
    expect(existsSync(join(cut, "adapter_model.safetensors"))).toBe(false)
    expect(readdirSync(join(cut, "checkpoints"))).toHaveLength(1)

    const resumed = await cli([...base(cut), "--resume"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(readFileSync(join(cut, "adapter_model.safetensors")).equals(expected)).toBe(true)
    // The report plots every step of the run, and the token count continues across the resume.
    const report = readFileSync(join(cut, "report.html"), "utf8")
    expect(report).toBe(readFileSync(join(whole, "report.html"), "utf8").replace(whole, cut).replaceAll(whole, cut))
    const tokens = (dir: string) =>
      readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((line) => JSON.parse(line)).filter((r) => r.event === "report").map((r) => [r.step, r.trainedTokens])
    expect(tokens(cut).slice(-3)).toEqual(tokens(whole).slice(-3))
  })

  // A real signal needs a real process: the built CLI (`pnpm test` builds before it tests).
  const main = join(repo, "packages/cli/dist/main.js")
  const built = ["commands/Train", "Signals", "OutputDirectory"].every((name) => {
    const output = join(repo, `packages/cli/dist/${name}.js`)
    return existsSync(output) && statSync(output).mtimeMs >= statSync(join(repo, `packages/cli/src/${name}.ts`)).mtimeMs
  })
  it.skipIf(!built && process.env.CI !== "true")("kill -INT on a running `peftkit train` process: exit 130 with a checkpoint; --resume gives the uninterrupted adapter", async () => {
    const whole = fresh("whole-real")
    expect((await cli(base(whole, 16))).code).toBe(0)
    const cut = fresh("cut-real")
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [main, ...base(cut, 16)], { cwd: repo, stdio: ["ignore", "ignore", "pipe"] })
      let stderr = ""
      let sent = false
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString()
        if (!sent && stderr.includes("Iter 4:")) {
          sent = true
          child.kill("SIGINT")
        }
      })
      child.on("close", (exitCode) => resolve({ code: exitCode, stderr }))
    })
    expect(code, stderr).toBe(130)
    expect(stderr).toContain("continue with the same command and --resume")
    const resumed = await cli([...base(cut, 16), "--resume"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(readFileSync(join(cut, "adapter_model.safetensors")).equals(readFileSync(join(whole, "adapter_model.safetensors")))).toBe(true)
  })

  it("a diverging run saves nothing non-finite: the checkpoint is refused and the message names the last good one", async () => {
    const adapter = fresh("diverge")
    const result = await cli([...base(adapter, 6), "--learning-rate", "1e38", "--save-every", "1"])
    expect(result.code).toBe(1)
    expect(lastLine(result.stderr)).toMatch(/^error: (parameter '.*' holds NaN or Inf after step \d+; refusing to save it|loss became (NaN|-?Infinity) at step \d+; stopping without saving) \((no checkpoint was written in this run|the last checkpoint of this run \(step \d+\) is intact)\)/)
    expect(existsSync(join(adapter, "adapter_model.safetensors"))).toBe(false)
    const checkpoints = existsSync(join(adapter, "checkpoints")) ? readdirSync(join(adapter, "checkpoints")) : []
    for (const name of checkpoints) {
      for (const file of readdirSync(join(adapter, "checkpoints", name)).filter((f) => f.endsWith(".safetensors"))) {
        expect(allFinite(join(adapter, "checkpoints", name, file)), `${name}/${file}`).toBe(true)
      }
    }
  })

  it("an adapter directory holding a run is refused unless --resume or --overwrite; a live lock refuses, a stale one is taken over; a killed run's temp files are removed", async () => {
    const adapter = fresh("dir")
    expect((await cli(base(adapter, 4))).code).toBe(0)
    const again = await cli(base(adapter, 4))
    expect(again.code).toBe(2)
    expect(lastLine(again.stderr)).toMatch(/^error: --adapter-path: .* already holds a run \(.*adapter_config\.json.*\); pass --resume to continue it or --overwrite to replace it$/)

    // Another live process holds the lock (the test runner's parent).
    writeFileSync(join(adapter, ".peftkit-train.lock"), JSON.stringify({ pid: process.ppid }))
    const locked = await cli([...base(adapter, 4), "--overwrite"])
    expect(locked.code).toBe(2)
    expect(lastLine(locked.stderr)).toBe(`error: --adapter-path: another run (pid ${process.ppid}) is training into ${adapter}; wait for it, or choose another --adapter-path`)

    // A killed run: its lock names a pid that is gone, and it left temp files behind.
    writeFileSync(join(adapter, ".peftkit-train.lock"), JSON.stringify({ pid: 2 ** 22 + 12345 }))
    writeFileSync(join(adapter, ".adapter_model.safetensors.1a2b3c.tmp"), "half")
    mkdirSync(join(adapter, "checkpoints", ".step-000004.4d5e6f.tmp"), { recursive: true })
    const replaced = await cli([...base(adapter, 4), "--overwrite"])
    expect(replaced.code, replaced.stderr).toBe(0)
    expect(replaced.stderr).toContain("taking over a stale lock")
    expect(replaced.stderr).toContain("removed 2 temp file(s) a killed run left")
    expect(readdirSync(adapter).filter((name) => name.endsWith(".tmp") || name.endsWith(".lock"))).toEqual([])
  })

  it("a truncated newest checkpoint: --resume says so and uses the one before it", async () => {
    const adapter = fresh("truncated")
    expect((await cli([...base(adapter, 8), "--save-every", "4"])).code).toBe(0)
    const newest = join(adapter, "checkpoints", "step-000008")
    const state = readdirSync(newest).find((name) => name.endsWith(".safetensors"))!
    writeFileSync(join(newest, state), readFileSync(join(newest, state)).subarray(0, 40))
    const resumed = await cli([...base(adapter, 8), "--save-every", "4", "--resume"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stderr).toMatch(/warning: checkpoint .*step-000008 is unusable \(.*\); trying the one before it/)
    expect(resumed.stderr).toContain("at step 4")
  })

  it("an --adapter-path under a pseudo file system fails at once instead of hanging", async () => {
    // It used to never return (Node's recursive mkdir spins there); the test's timeout would catch that.
    const result = await cli([...base("/proc/peftkit-no-such/adapter", 2)])
    expect(result.code).toBe(1)
    expect(lastLine(result.stderr)).toMatch(/^error: cannot mkdir \/proc\/peftkit-no-such: /)
  })

  it("more links than steps, and --task without --task-data, are refused", async () => {
    const links = await cli([...base(fresh("links"), 2), "--links", "5"])
    expect(links.code).toBe(2)
    expect(lastLine(links.stderr)).toBe("error: --links: 5 links need at least 5 steps; this run has 2 (raise --iters or lower --links)")
    const task = await cli(["train", "--model", stories, "--task", "rte", "--adapter-path", fresh("task"), "--backend", "wasm"])
    expect(task.code).toBe(2)
    expect(lastLine(task.stderr)).toBe("error: --task-data: --task rte needs --task-data DIR, the folder holding the GLUE/SuperGLUE task files")
  })
})

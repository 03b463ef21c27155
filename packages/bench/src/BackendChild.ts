/**
 * One process per backend. tfjs has a single global backend and its memory counters are
 * process-wide, so each backend is measured in a fresh `node main.js --child <backend>`: backends
 * cannot interfere (a WebGPU device, the wasm heap) and peak memory is that backend's alone. The
 * child prints progress on stderr (passed through) and its `BackendRun` as one marked JSON line
 * on stdout.
 */
import type { BackendName } from "@peftkit/core"
import { spawn } from "node:child_process"
import { Effect } from "effect"
import type { BackendRun } from "./Results.js"

const RESULT_MARKER = "@peftkit/bench:result "

/** Child side: the one line the parent looks for; resolves once it is written. */
export const printChildResult = (run: BackendRun): Promise<void> =>
  new Promise((done) => process.stdout.write(`${RESULT_MARKER}${JSON.stringify(run)}\n`, () => done()))

/** Parent side: the run in the child's stdout, if it printed one. */
export const parseChildResult = (stdout: string): BackendRun | undefined => {
  const line = stdout.split("\n").reverse().find((l) => l.startsWith(RESULT_MARKER))
  if (line === undefined) return undefined
  try {
    return JSON.parse(line.slice(RESULT_MARKER.length)) as BackendRun
  } catch {
    return undefined
  }
}

/**
 * Runs `script --child backend ...childArgs` with this Node. A child that crashes or prints no
 * result becomes an "unavailable" run saying how it ended, so one broken backend does not stop the bench.
 */
export const runBackendChild = (script: string, backend: BackendName, childArgs: ReadonlyArray<string>): Effect.Effect<BackendRun> =>
  Effect.async<BackendRun>((resume) => {
    const child = spawn(process.execPath, [script, "--child", backend, ...childArgs], { stdio: ["ignore", "pipe", "inherit"] })
    let stdout = ""
    let settled = false
    const settle = (run: BackendRun) => {
      if (settled) return
      settled = true
      resume(Effect.succeed(run))
    }
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.on("error", (error) => settle({ status: "unavailable", backend, reason: `could not start the child process: ${error.message}` }))
    child.on("close", (code, signal) => {
      const run = parseChildResult(stdout)
      settle(run ?? { status: "unavailable", backend, reason: `the child process ended (${signal ?? `exit code ${code}`}) without a result` })
    })
    return Effect.sync(() => void child.kill())
  })

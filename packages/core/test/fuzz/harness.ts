/**
 * Fuzz harness for the parsers (issue 10): a fast-check property runs in a worker thread built from
 * the target file with esbuild, with a fixed seed and case count. From outside, the main thread
 * fails the run when one case takes longer than `caseTimeoutMs` (the worker is terminated: a hang
 * cannot stop the clock), when the worker's heap passes `heapMb` (V8's resource limit kills it),
 * or when the ArrayBuffer memory held at the end of a case passes `arrayBufferMb`. Inside, a case
 * must end in success or one of the target's typed errors; an untyped exception or a defect fails.
 */
import { buildSync } from "esbuild"
import { mkdtempSync, readdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"

export interface FuzzOptions {
  readonly seed: number
  readonly numRuns: number
  readonly caseTimeoutMs?: number
  readonly heapMb?: number
  readonly arrayBufferMb?: number
}

export interface FuzzReport {
  readonly runs: number
  /** How many cases ended in success ("ok") or each typed error. */
  readonly outcomes: Readonly<Record<string, number>>
}

const packagesDir = fileURLToPath(new URL("../../../", import.meta.url))
const alias = Object.fromEntries(readdirSync(packagesDir).map((name) => [`@peftkit/${name}`, join(packagesDir, name, "src", "index.ts")]))
const bundles = new Map<string, string>()

/** The worker entry bundled once per file (CommonJS, every workspace package from source). */
// ignoreAnnotations: packages such as tfjs-backend-cpu declare "sideEffects" for their ESM files only,
// and their registration (a side-effect import) must survive in the CommonJS bundle.
const bundle = (entry: string): string => {
  const cached = bundles.get(entry)
  if (cached !== undefined) return cached
  const outfile = join(mkdtempSync(join(tmpdir(), "peftkit-fuzz-")), "worker.cjs")
  buildSync({ entryPoints: [entry], bundle: true, platform: "node", format: "cjs", target: "node20", outfile, alias, logLevel: "error", ignoreAnnotations: true })
  bundles.set(entry, outfile)
  return outfile
}

/** Runs target `name` of the worker file `entry` and resolves with its report, or rejects naming the failing case. */
export const runFuzz = (entry: URL, name: string, options: FuzzOptions): Promise<FuzzReport> => {
  const { seed, numRuns, caseTimeoutMs = 3000, heapMb = 256, arrayBufferMb = 256 } = options
  const file = bundle(fileURLToPath(entry))
  return new Promise((resolve, reject) => {
    const worker = new Worker(file, {
      workerData: { name, seed, numRuns },
      resourceLimits: { maxOldGenerationSizeMb: heapMb, maxYoungGenerationSizeMb: 32 },
      stdout: true,
      stderr: true
    })
    let current = "(before the first case)"
    let timer: NodeJS.Timeout | undefined
    let settled = false
    const finish = (error: Error | undefined, report?: FuzzReport) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      void worker.terminate()
      if (error !== undefined) reject(error)
      else resolve(report!)
    }
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => finish(new Error(`${name}: a case ran past ${caseTimeoutMs} ms (seed ${seed}): ${current}`)), caseTimeoutMs)
    }
    arm()
    worker.on("message", (message: { type: string; n: number; input?: string; arrayBuffers?: number; runs?: number; outcomes?: Record<string, number>; failure?: string }) => {
      if (message.type === "start") {
        current = `case ${message.n}: ${message.input}`
        arm()
      } else if (message.type === "end") {
        if (message.arrayBuffers! > arrayBufferMb * 2 ** 20) {
          finish(new Error(`${name}: ${Math.round(message.arrayBuffers! / 2 ** 20)} MiB of ArrayBuffers held after ${current} (bound ${arrayBufferMb} MiB)`))
        }
        arm()
      } else if (message.type === "done") {
        if (message.failure !== undefined) finish(new Error(`${name}: ${message.failure}`))
        else finish(undefined, { runs: message.runs!, outcomes: message.outcomes! })
      }
    })
    worker.on("error", (error) => finish(new Error(`${name}: worker failed during ${current}: ${error.message}`)))
    worker.on("exit", (code) => finish(new Error(`${name}: worker exited (code ${code}) during ${current}`)))
  })
}

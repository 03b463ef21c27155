/**
 * The browser half of the newcomer test (issue 9, deliverable 6): the root README's "Using it"
 * program, installed from the packed tarballs with the README's own install line (as in
 * `test/Install.test.ts`), bundled by esbuild for `platform: "browser"` with no externals and no Node
 * shims, and run in headless Chromium (Debian's `/usr/bin/chromium` through playwright-core, no
 * browser download).
 *
 * The one change to the program is its file-system layer: a browser has no Node file system, so the
 * harness (`browserProgram` in `test/harness.ts`) removes the `@effect/platform-node` import and
 * replaces each `<binding>.layer` of it (`NodeFileSystem.layer`, `NodeContext.layer`) with core's
 * `MemoryFileSystem.layerOf(files)` merged with `@effect/platform`'s portable `Path.layer`, so the
 * files the program writes can be read back. Everything else (imports, training code,
 * `Backend.layer("auto")`, `ProgressReporter.terminal()`, which prints through `console.log` where
 * there is no `process.stderr`) is the README's.
 *
 * The page gets the program's bundle and tfjs-backend-wasm's `.wasm` binaries next to it (where
 * tfjs looks by default, as any app serving the wasm backend does), from 127.0.0.1.
 */
import { build } from "esbuild"
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { chromium } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  browserErrorKey,
  browserProgram,
  type BrowserResult,
  browserResultKey,
  expectedOutputs,
  installFromReadme,
  readmePath,
  usingItProgram
} from "./harness.js"

const chromiumPath = "/usr/bin/chromium"
const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run"
]
const skip = existsSync(chromiumPath) ? undefined : "Debian's chromium is not installed (scripts/install-test-system-deps.sh installs it)"
if (skip !== undefined) console.log(`browser e2e skipped: ${skip}`)

const minutes = (n: number) => n * 60_000
const contentTypes: Record<string, string> = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html", ".map": "application/json" }

const serve = (dir: string) =>
  new Promise<{ url: string; close: () => void }>((resolve) => {
    const server = createServer((request, response) => {
      const name = (request.url ?? "/").split("?")[0]!
      if (name === "/favicon.ico") return void response.writeHead(204).end()
      const file = join(dir, name === "/" ? "index.html" : name.slice(1))
      if (!file.startsWith(dir) || !existsSync(file)) return void response.writeHead(404).end()
      const type = contentTypes[file.slice(file.lastIndexOf("."))] ?? "application/octet-stream"
      response.writeHead(200, { "content-type": type }).end(readFileSync(file))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as { port: number }
      resolve({ url: `http://127.0.0.1:${address.port}/`, close: () => server.close() })
    })
  })

/** The training losses the terminal reporter printed (`[train] Iter N: Train loss X, ...`). */
const printedLosses = (lines: ReadonlyArray<string>) =>
  lines.flatMap((line) => [...line.matchAll(/Iter \d+: Train loss ([^,\s]+)/g)].map((m) => Number(m[1])))

describe.skipIf(skip !== undefined)("the README program, bundled for the browser from the installed packages, trains in headless Chromium", () => {
  const readme = readFileSync(readmePath, "utf8")
  const work = mkdtempSync(join(tmpdir(), "peftkit-e2e-browser-"))
  const site = join(work, "site")
  let project = ""

  beforeAll(async () => {
    project = (await installFromReadme(readme, work)).project
  }, minutes(9))

  afterAll(() => rmSync(work, { recursive: true, force: true }))

  it("bundles with esbuild for platform browser, no externals, from the user's node_modules only", async () => {
    mkdirSync(site, { recursive: true })
    const result = await build({
      stdin: { contents: browserProgram(usingItProgram(readme)), loader: "ts", resolveDir: project, sourcefile: "example.ts" },
      absWorkingDir: project,
      outfile: join(site, "bundle.js"),
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      nodePaths: [],
      metafile: true,
      logLevel: "silent"
    })
    // Everything came from the project, nothing from the workspace. `(disabled):x` entries are modules a
    // package's own `browser` field maps to false (node-fetch's, tfjs's util/crypto), not shims of ours.
    const outside = Object.keys(result.metafile.inputs).filter(
      (input) => input !== "example.ts" && !input.startsWith("node_modules/") && !input.startsWith("(disabled):")
    )
    console.log(`bundle: ${(statSync(join(site, "bundle.js")).size / 1e6).toFixed(1)} MB from ${Object.keys(result.metafile.inputs).length} inputs`)
    expect(outside, "bundle inputs from outside the user's project").toEqual([])
    const wasmDir = join(project, "node_modules/@tensorflow/tfjs-backend-wasm/dist")
    for (const file of readdirSync(wasmDir).filter((f) => f.endsWith(".wasm"))) copyFileSync(join(wasmDir, file), join(site, file))
    writeFileSync(join(site, "index.html"), `<!doctype html><meta charset="utf-8"><title>peftkit e2e</title><script type="module" src="bundle.js"></script>`)
  }, minutes(2))

  it("runs: exit without error, a finite loss that falls, and the files it writes", async () => {
    expect(existsSync(join(site, "bundle.js")), "the bundle step failed (see above)").toBe(true)
    const server = await serve(site)
    const context = await chromium.launchPersistentContext(mkdtempSync(join(work, "chromium-")), {
      executablePath: chromiumPath,
      headless: true,
      args: chromiumArgs
    })
    const consoleLines: Array<string> = []
    const pageErrors: Array<string> = []
    try {
      const page = await context.newPage()
      page.on("console", (message) => consoleLines.push(message.text()))
      page.on("pageerror", (error) => pageErrors.push(error.stack ?? error.message))
      await page.goto(server.url)
      await page.waitForFunction(
        ([resultKey, errorKey]) => resultKey! in globalThis || errorKey! in globalThis,
        [browserResultKey, browserErrorKey],
        { timeout: minutes(4), polling: 250 }
      )
      const error = await page.evaluate((key) => (globalThis as Record<string, unknown>)[key], browserErrorKey)
      console.log(consoleLines.slice(0, 2).join("\n"), "\n...\n", consoleLines.slice(-2).join("\n"))
      expect(error, `the program failed in the browser:\n${String(error)}\n${pageErrors.join("\n")}`).toBeUndefined()
      const { result, files } = (await page.evaluate((key) => (globalThis as Record<string, unknown>)[key], browserResultKey)) as BrowserResult

      // The loss the program returns is finite; the printed training losses are finite and fall.
      expect(typeof result === "number" && Number.isFinite(result), `returned loss ${String(result)}`).toBe(true)
      const losses = printedLosses(consoleLines)
      expect(losses.length, `printed training losses in:\n${consoleLines.join("\n")}`).toBeGreaterThan(1)
      expect(losses.every(Number.isFinite), `finite losses ${losses.join(", ")}`).toBe(true)
      expect(losses.at(-1)!, "the printed loss falls").toBeLessThan(losses[0]!)

      // The files it says it writes, in the in-memory file system (relative paths are taken from "/").
      const { adapterDirs, files: named } = expectedOutputs(usingItProgram(readme))
      for (const dir of adapterDirs) {
        const config = JSON.parse(String(files[`/${dir}/adapter_config.json`] ?? "null")) as Record<string, unknown> | null
        expect(config?.peft_type, `/${dir}/adapter_config.json (files: ${Object.keys(files).join(", ")})`).toBeTypeOf("string")
        expect(files[`/${dir}/adapter_model.safetensors`], `/${dir}/adapter_model.safetensors bytes`).toBeGreaterThan(8)
      }
      for (const file of named) {
        expect(files[`/${file}`], `/${file} (files: ${Object.keys(files).join(", ")})`).toBeDefined()
        if (file.endsWith(".jsonl")) {
          const logged = String(files[`/${file}`])
            .split("\n")
            .filter((l) => l.trim() !== "")
            .map((l) => (JSON.parse(l) as { trainLoss?: number }).trainLoss)
            .filter((loss): loss is number => loss !== undefined)
          expect(logged.length, `/${file}: train-loss records`).toBeGreaterThan(1)
          expect(logged.at(-1)!, `/${file}: the loss falls`).toBeLessThan(logged[0]!)
        }
      }
    } finally {
      await context.close()
      server.close()
    }
  }, minutes(6))
})

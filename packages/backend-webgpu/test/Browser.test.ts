/**
 * The conformance suite in headless Chromium's WebGPU (Debian's chromium, driven by playwright-core:
 * no browser download). The suite is bundled with esbuild, served from 127.0.0.1 (WebGPU needs a
 * secure context: file:// or localhost, not data: URLs) and run on the browser's adapter (SwiftShader
 * here), each case compared with the CPU backend in the same page. Skips, saying why, where Chromium
 * is absent.
 */
import type { CaseReport } from "@peftkit/conformance"
import { formatReport } from "@peftkit/conformance"
import { build } from "esbuild"
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import { describe, expect, it } from "vitest"

const chromiumPath = "/usr/bin/chromium"
const packagesDir = fileURLToPath(new URL("../..", import.meta.url))
const skip = existsSync(chromiumPath) ? undefined : "Debian's chromium is not installed (scripts/install-test-system-deps.sh installs it)"
if (skip !== undefined) console.log(`browser conformance skipped: ${skip}`)

const bundle = async (dir: string) => {
  const alias = Object.fromEntries(readdirSync(packagesDir).map((name) => [`@peftkit/${name}`, join(packagesDir, name, "src/index.ts")]))
  await build({
    entryPoints: [fileURLToPath(new URL("./browser/entry.ts", import.meta.url))],
    outfile: join(dir, "bundle.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    alias,
    // Node-only paths (Dawn, fs) are never taken in a browser.
    external: ["webgpu", "node:*"],
    logLevel: "error"
  })
  writeFileSync(join(dir, "index.html"), `<!doctype html><meta charset="utf-8"><title>peftkit conformance</title><script type="module" src="bundle.js"></script>`)
}

const serve = (dir: string) =>
  new Promise<{ url: string; close: () => void }>((resolve) => {
    const server = createServer((request, response) => {
      const file = join(dir, (request.url ?? "/") === "/" ? "index.html" : (request.url ?? "").slice(1))
      if (!file.startsWith(dir) || !existsSync(file)) return void response.writeHead(404).end()
      response.writeHead(200, { "content-type": file.endsWith(".js") ? "text/javascript" : "text/html" }).end(readFileSync(file))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as { port: number }
      resolve({ url: `http://127.0.0.1:${address.port}/`, close: () => server.close() })
    })
  })

// In CI (CI=true) this machine kind can run it, so a missing browser fails instead of skipping.
describe.skipIf(skip !== undefined && process.env.CI !== "true")("conformance in headless Chromium (WebGPU)", () => {
  it("every case agrees with the CPU reference within its tolerance and leaks no tensor", async () => {
    if (skip !== undefined) throw new Error(`the browser conformance must run in CI on this machine kind, but: ${skip}`)
    const dir = mkdtempSync(join(tmpdir(), "peftkit-browser-"))
    await bundle(dir)
    const server = await serve(dir)
    const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "peftkit-chromium-")), {
      executablePath: chromiumPath,
      headless: true,
      args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    })
    try {
      const page = await context.newPage()
      const errors: Array<string> = []
      page.on("pageerror", (error) => errors.push(error.message))
      await page.goto(server.url)
      await page.waitForFunction(() => "__conformance" in globalThis || "__conformanceError" in globalThis, undefined, { timeout: 240_000 })
      const error = await page.evaluate(() => (globalThis as { __conformanceError?: string }).__conformanceError)
      expect(error, errors.join("; ")).toBeUndefined()
      const reports = (await page.evaluate(() => (globalThis as { __conformance?: unknown }).__conformance)) as Array<CaseReport>
      console.log(reports.map(formatReport).join("\n"))
      expect(reports).toHaveLength(6)
      for (const report of reports) {
        expect(report.backend).toBe("webgpu")
        expect(report.leaked, report.name).toBe(0)
        expect(report.maxError, `${report.name}: worst at ${report.worst}`).toBeLessThanOrEqual(report.tolerance)
      }
    } finally {
      await context.close()
      server.close()
    }
  }, 300_000)
})

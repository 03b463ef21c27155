/**
 * Driving the playground in headless Chromium (Debian's /usr/bin/chromium through playwright-core;
 * no browser download): the site built into a temporary folder, served with COOP/COEP, one page per
 * test, with waits on the state the page publishes as `window.playground`.
 */
import { mkdirSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type BrowserContext, chromium, type Download, type Page } from "playwright-core"
import { buildSite } from "../../src/node/SiteBuild.js"
import { type RunningServer, serveSite } from "../../src/node/SiteServer.js"

export const chromiumPath = "/usr/bin/chromium"
export const repoRoot = fileURLToPath(new URL("../../../..", import.meta.url))
export const screenshotsDir = join(repoRoot, "reports/playground")

/** What the page publishes as `window.playground` (a subset: what the tests read). */
export interface PageState {
  readonly backend?: { readonly name: string; readonly device: string; readonly reason: string; readonly isolated: boolean }
  readonly model?: { readonly source: string; readonly parameters: number; readonly architecture: string; readonly vocabSize: number }
  readonly data?: { readonly train: number; readonly valid: number; readonly describe: string }
  readonly training: boolean
  readonly busy: string | undefined
  readonly points: ReadonlyArray<{ readonly step: number; readonly loss?: number; readonly validLoss?: number; readonly tokensPerSecond: number }>
  readonly knots: ReadonlyArray<number>
  readonly trained?: { readonly step: number; readonly totalSteps: number; readonly stopped: boolean; readonly seconds: number; readonly adapterFiles: ReadonlyArray<string> }
  readonly generated?: { readonly prompt: string; readonly base: string; readonly adapted: string }
  readonly evaluated?: { readonly split: string; readonly base: Record<string, number>; readonly adapted: Record<string, number> }
  readonly errors: ReadonlyArray<string>
  readonly downloads: ReadonlyArray<string>
  readonly checkpoints: ReadonlyArray<number>
}

export interface Playground {
  readonly url: string
  readonly siteDir: string
  /** A page in this browser (WebGPU enabled), or in a second one started without WebGPU. */
  readonly open: (query?: string, options?: { readonly webgpu?: boolean }) => Promise<PlaygroundPage>
  readonly close: () => Promise<void>
}

export interface PlaygroundPage {
  readonly page: Page
  readonly state: () => Promise<PageState>
  /** Waits until `predicate(state)` holds; fails early, with the page's errors, when a new error shows. */
  readonly until: (what: string, predicate: string, timeoutMs?: number) => Promise<PageState>
  readonly screenshot: (name: string) => Promise<void>
  readonly download: (button: string, count?: number) => Promise<ReadonlyArray<{ readonly name: string; readonly path: string }>>
}

export const launchPlayground = async (): Promise<Playground> => {
  const work = mkdtempSync(join(tmpdir(), "peftkit-playground-"))
  const site = await buildSite({ dir: join(work, "site"), log: () => {} })
  const server: RunningServer = await serveSite(site.dir, { port: 0 })
  const launch = (name: string, webgpu: boolean) =>
    chromium.launchPersistentContext(join(work, name), {
      executablePath: chromiumPath,
      headless: true,
      acceptDownloads: true,
      viewport: { width: 1280, height: 1300 },
      args: [webgpu ? "--enable-unsafe-webgpu" : "--disable-gpu", "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    })
  const context: BrowserContext = await launch("profile", true)
  let withoutGpu: BrowserContext | undefined
  mkdirSync(screenshotsDir, { recursive: true })
  const downloads = join(work, "downloads")
  mkdirSync(downloads, { recursive: true })

  const open = async (query = "", options: { readonly webgpu?: boolean } = {}): Promise<PlaygroundPage> => {
    const page = options.webgpu === false ? await (withoutGpu ??= await launch("profile-without-gpu", false)).newPage() : await context.newPage()
    const pageErrors: Array<string> = []
    page.on("pageerror", (error) => pageErrors.push(error.message))
    await page.goto(`${server.url}${query}`)
    const state = () => page.evaluate(() => (window as unknown as { playground: PageState }).playground)
    const until = async (what: string, predicate: string, timeoutMs = 120_000) => {
      const errorsBefore = (await state()).errors.length
      await page
        .waitForFunction(
          ([test, before]) => {
            const s = (window as unknown as { playground: PageState }).playground
            // eslint-disable-next-line no-new-func
            return new Function("s", `return ${test as string}`)(s) === true || s.errors.length > (before as number)
          },
          [predicate, errorsBefore] as const,
          { timeout: timeoutMs, polling: 200 }
        )
        .catch(async (error: Error) => {
          throw new Error(`waiting for ${what}: ${error.message}\npage errors: ${pageErrors.join("; ")}\nstate: ${JSON.stringify(await state().catch(() => null))?.slice(0, 2000)}`)
        })
      const now = await state()
      if (now.errors.length > errorsBefore) throw new Error(`waiting for ${what}, the page showed an error: ${now.errors.slice(errorsBefore).join("; ")}`)
      return now
    }
    const screenshot = async (name: string) => {
      await page.waitForTimeout(150) // the chart redraws on the next animation frame
      await page.screenshot({ path: join(screenshotsDir, `${name}.png`), fullPage: true })
    }
    const download = async (button: string, count = 1) => {
      const received: Array<{ name: string; path: string }> = []
      const done = new Promise<void>((resolve) => {
        const onDownload = async (item: Download) => {
          const path = join(downloads, `${Date.now()}-${item.suggestedFilename()}`)
          await item.saveAs(path)
          received.push({ name: item.suggestedFilename(), path })
          if (received.length === count) {
            page.off("download", onDownload)
            resolve()
          }
        }
        page.on("download", onDownload)
      })
      await page.click(button)
      await Promise.race([done, page.waitForTimeout(60_000).then(() => Promise.reject(new Error(`${button}: ${received.length} of ${count} downloads after 60 s`)))])
      return received
    }
    await until("the backend to start", "s.backend !== undefined && s.busy === undefined", 60_000)
    return { page, state, until, screenshot, download }
  }

  return {
    url: server.url,
    siteDir: site.dir,
    open,
    close: async () => {
      await withoutGpu?.close()
      await context.close()
      await server.close()
    }
  }
}

/** Mean of the first and last `n` train losses the chart shows. */
export const lossEnds = (state: PageState, n = 4) => {
  const losses = state.points.flatMap((point) => (point.loss === undefined ? [] : [point.loss]))
  const mean = (values: ReadonlyArray<number>) => values.reduce((sum, value) => sum + value, 0) / values.length
  return { first: mean(losses.slice(0, n)), last: mean(losses.slice(-n)), count: losses.length }
}

#!/usr/bin/env node
/**
 * `pnpm playground [--port N] [--no-build]`: builds the site, serves it on 127.0.0.1 with COOP/COEP
 * and prints the URL. Everything runs in the page; the server only hands out files.
 */
import { buildSite, defaultSiteDir } from "./SiteBuild.js"
import { describeBuild } from "./describeBuild.js"
import { serveSite } from "./SiteServer.js"

const flag = (name: string) => {
  const at = process.argv.indexOf(name)
  return at > 0 ? process.argv[at + 1] : undefined
}
const port = Number(flag("--port") ?? process.env.PORT ?? 5173)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be an integer from 0 to 65535, got ${flag("--port")}`)
  process.exit(2)
}
if (!process.argv.includes("--no-build")) console.log(describeBuild(await buildSite()))
try {
  const running = await serveSite(defaultSiteDir, { port })
  console.log(`\npeftkit playground: ${running.url}  (Ctrl-C to stop)`)
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error))
  process.exit(1)
}

/**
 * Builds the playground's static site: the page and the training worker bundled by esbuild from the
 * packages' published (browser) entries, tfjs-backend-wasm's `.wasm` binaries next to them (where
 * tfjs looks by default), the stylesheets, and the built-in model and data.
 *
 * esbuild rather than Vite: the site is two bundles and a few copied files, esbuild is already the
 * workspace's bundler (tests bundle for Chromium with it), builds both in about a second, and brings
 * no dev server we would have to configure for COOP/COEP anyway (`SiteServer.ts` is 60 lines).
 */
import { build } from "esbuild"
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { type BuiltinAssets, writeBuiltinAssets } from "./BuiltinAssets.js"

const packageDir = fileURLToPath(new URL("../..", import.meta.url))
const require = createRequire(import.meta.url)

export const defaultSiteDir = join(packageDir, "dist/site")

export interface SiteBuild {
  readonly dir: string
  /** Bytes of each file the page loads before any model (the app, the worker, one wasm binary). */
  readonly sizes: Readonly<Record<string, number>>
  readonly builtin: BuiltinAssets
  readonly seconds: number
}

const copyInto = (dir: string, file: string, name = file.slice(file.lastIndexOf("/") + 1)) => copyFileSync(file, join(dir, name))

export const buildSite = async (options: { readonly dir?: string; readonly minify?: boolean; readonly log?: (line: string) => void } = {}): Promise<SiteBuild> => {
  const started = performance.now()
  const dir = options.dir ?? defaultSiteDir
  const log = options.log ?? ((line: string) => console.log(line))
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  await build({
    entryPoints: { app: join(packageDir, "src/page/main.ts"), worker: join(packageDir, "src/worker/worker.ts") },
    outdir: dir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: options.minify ?? true,
    sourcemap: "linked",
    // The Dawn binding is Node's way to WebGPU; a browser has navigator.gpu.
    external: ["webgpu"],
    logLevel: "error"
  })
  for (const name of ["index.html", "style.css", "favicon.svg"]) copyInto(dir, join(packageDir, "static", name))
  copyInto(dir, require.resolve("uplot/dist/uPlot.min.css"))
  const wasmDir = dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json"))
  for (const file of readdirSync(join(wasmDir, "dist")).filter((name) => name.endsWith(".wasm"))) copyInto(dir, join(wasmDir, "dist", file))
  log("building the built-in model (reused while its recipe is unchanged)...")
  const builtin = await writeBuiltinAssets(join(dir, "builtin"), log)
  const size = (name: string) => statSync(join(dir, name)).size
  const sizes = {
    "app.js": size("app.js"),
    "worker.js": size("worker.js"),
    "tfjs-backend-wasm-threaded-simd.wasm": size("tfjs-backend-wasm-threaded-simd.wasm"),
    "builtin/model.safetensors": size("builtin/model/model.safetensors")
  }
  return { dir, sizes, builtin, seconds: (performance.now() - started) / 1000 }
}

/**
 * Builds the JavaScript part of scripts/gpu-check.sh's payload: the bench (packages/bench/dist/main.js),
 * the conformance runner and the adapter probe, each one self-contained ESM file for Node 20, so the GPU
 * machine needs no node_modules. `webgpu` (Dawn, a native addon) stays external: gpu-check.sh copies
 * the package next to the bundles. tfjs-backend-wasm's .wasm files are not carried: the checks run the
 * webgpu backend and tfjs's plain CPU backend (the conformance reference) only.
 *
 * Usage (repo root, after `pnpm build`): node scripts/gpu-check/bundle.mjs OUTDIR
 */
import { build } from "esbuild"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const outdir = process.argv[2]
if (outdir === undefined) throw new Error("usage: node scripts/gpu-check/bundle.mjs OUTDIR")
const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, "../..")
const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["webgpu"],
  logLevel: "error",
  // Our packages say "sideEffects": false, but @peftkit/core registers tfjs's gradients by a bare
  // import; honouring the flag would drop it (COLA then fails with "reading 'clone'" of a null gradient).
  ignoreAnnotations: true,
  // Bundled CommonJS (tfjs) calls require() for Node built-ins.
  banner: { js: 'import { createRequire as __gpuCheckCreateRequire } from "node:module"; const require = __gpuCheckCreateRequire(import.meta.url);' }
}
await build({ ...common, entryPoints: [join(root, "packages/bench/dist/main.js")], outfile: join(outdir, "bench.mjs") })
// The runners import workspace packages: resolve them as packages/backend-webgpu does (its devDependencies).
for (const name of ["conformance", "adapter"]) {
  const file = join(here, `${name}.mjs`)
  const { readFileSync } = await import("node:fs")
  await build({
    ...common,
    stdin: { contents: readFileSync(file, "utf8"), resolveDir: join(root, "packages/backend-webgpu"), sourcefile: file, loader: "js" },
    outfile: join(outdir, `${name}.mjs`)
  })
}

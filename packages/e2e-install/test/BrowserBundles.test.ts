/**
 * Every library package bundles for the browser as it is: esbuild, `platform: "browser"`, no
 * externals and no Node shims, from the built `dist/` (what npm ships). A `node:*` import anywhere
 * in a package's graph, or in what it imports, fails the bundle and names the file. Node-only
 * pieces (the Node file system, the worker-thread matmul) are chosen by the application or by
 * `imports` conditions, never imported by library code a browser reaches.
 */
import { build } from "esbuild"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { isLibrary, publishablePackages } from "./harness.js"

// backend-node is tfjs-node's backend, Node by definition (it spawns nvidia-smi, reads the OS): it
// is the one library package a browser never imports, and it is left out here on purpose.
const nodeOnly = new Set(["@peftkit/backend-node"])
const libraries = publishablePackages().filter((pkg) => isLibrary(pkg) && !nodeOnly.has(pkg.manifest.name))

describe("browser bundles", () => {
  it("covers every library package", () => {
    expect(libraries.map((pkg) => pkg.manifest.name).sort()).toEqual(
      [
        "@peftkit/backend-cpu",
        "@peftkit/backend-webgpu",
        "@peftkit/cola",
        "@peftkit/conformance",
        "@peftkit/core",
        "@peftkit/data",
        "@peftkit/lora",
        "@peftkit/models",
        "@peftkit/optimizers",
        "@peftkit/tasks",
        "@peftkit/tokenizers",
        "@peftkit/vera"
      ]
    )
  })

  for (const pkg of libraries) {
    it(`${pkg.manifest.name} bundles for platform "browser" with no externals`, async () => {
      const result = await build({
        entryPoints: [join(pkg.dir, pkg.manifest.exports["."].default as string)],
        bundle: true,
        platform: "browser",
        format: "esm",
        write: false,
        logLevel: "silent",
        metafile: true
      }).catch((error: { errors?: Array<{ text: string; location?: { file: string } }> }) => {
        throw new Error((error.errors ?? []).map((e) => `${e.text} (${e.location?.file ?? "?"})`).join("\n") || String(error))
      })
      const inputs = Object.keys(result.metafile.inputs)
      expect(inputs.filter((input) => input.startsWith("node:") || /(^|\/)node_modules\/(fs|path|os|worker_threads)\//.test(input))).toEqual([])
      expect(result.outputFiles[0]!.contents.byteLength).toBeGreaterThan(0)
    })
  }
})

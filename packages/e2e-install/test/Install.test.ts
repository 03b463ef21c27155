/**
 * The packages install and run in a user's own project, as a newcomer would do it: pack every
 * publishable package with pnpm (as `pnpm publish` would), make a fresh `"type": "module"` npm
 * project in the OS temp directory (outside the workspace, so nothing resolves to it), install the
 * tarballs and their peers with the exact install line of the root README's "Using it" section,
 * compile that section's program (TypeScript to ESM, no bundling) and run it with Node.
 *
 * Needs the packages' `dist/` (`tsc -b`, which `pnpm test` runs first) and the npm registry.
 * `PEFTKIT_E2E_README=path` tries another README (a draft of a README edit) instead of the root one;
 * `PEFTKIT_E2E_KEEP=1` keeps the temporary directory (tarballs, the project) and prints its path.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  compileProgram,
  expectedOutputs,
  installArguments,
  installedCopies,
  installLineOf,
  isLibrary,
  makeUserProject,
  npm,
  packAll,
  programImports,
  publishablePackages,
  readmePath,
  run,
  safetensorsHeader,
  tail,
  tarballFiles,
  tarballManifest,
  usingItInstallLine,
  usingItProgram,
  type WorkspacePackage
} from "./harness.js"

const minutes = (n: number) => n * 60_000

describe("a newcomer installs the packed packages with the README's line and runs its program", () => {
  const readme = readFileSync(readmePath, "utf8")
  const work = mkdtempSync(join(tmpdir(), "peftkit-e2e-install-"))
  const project = join(work, "app")
  const cache = join(work, "npm-cache")
  const packages: Array<WorkspacePackage> = publishablePackages()
  const manifests = new Map<string, Record<string, any>>()
  let tarballs = new Map<string, string>()
  let installed = false

  beforeAll(async () => {
    tarballs = await packAll(packages, join(work, "tarballs"))
    for (const [name, tarball] of tarballs) manifests.set(name, await tarballManifest(tarball))
  }, minutes(5))

  afterAll(() => {
    if (process.env.PEFTKIT_E2E_KEEP === undefined) rmSync(work, { recursive: true, force: true })
    else console.log(`kept ${work} (PEFTKIT_E2E_KEEP)`)
  })

  it("every tarball holds its built entry points and no build info or tests; library peers are peers", async () => {
    expect(packages.filter(isLibrary).length, "library packages found").toBeGreaterThanOrEqual(10)
    for (const pkg of packages) {
      const tarball = tarballs.get(pkg.name)!
      const files = await tarballFiles(tarball)
      const manifest = manifests.get(pkg.name)!
      expect(files.filter((file) => file.endsWith(".tsbuildinfo")), `${pkg.name}: build info in the tarball`).toEqual([])
      expect(files.filter((file) => /(^|\/)(test|tests|__tests__)\//.test(file) || /\.test\.[cm]?[jt]s$/.test(file)), `${pkg.name}: tests in the tarball`).toEqual([])
      expect(manifest.type, `${pkg.name}: "type"`).toBe("module")
      const entry = manifest.exports?.["."] as { types?: string; default?: string } | undefined
      expect(entry?.types, `${pkg.name}: exports["."].types`).toBeDefined()
      expect(entry?.default, `${pkg.name}: exports["."].default`).toBeDefined()
      for (const target of [entry!.types!, entry!.default!]) {
        expect(files, `${pkg.name}: exports target ${target} missing from the tarball (was tsc -b run?)`).toContain(target.replace(/^\.\//, ""))
      }
      const specs = JSON.stringify({ ...manifest.dependencies, ...manifest.peerDependencies, ...manifest.optionalDependencies })
      expect(specs, `${pkg.name}: a workspace: protocol left in the published manifest`).not.toMatch(/workspace:/)
      if (!isLibrary(pkg)) continue
      for (const peer of ["effect", "@tensorflow/tfjs-core"]) {
        expect(manifest.peerDependencies?.[peer], `${pkg.name}: ${peer} is a peer dependency`).toBeDefined()
        expect(manifest.dependencies?.[peer], `${pkg.name}: ${peer} must not be a dependency (a second copy)`).toBeUndefined()
      }
      // effect 4 is not supported: the range must stop below it, so npm refuses effect 4 at install time.
      expect(manifest.peerDependencies.effect, `${pkg.name}: effect peer range`).toMatch(/^\^3\.\d+\.\d+$/)
    }
  })

  it("npm installs the README's install line into a fresh project without a peer-dependency error, with one effect and one tfjs-core", async () => {
    const line = usingItInstallLine(readme)
    expect(line[0], "the README's line is `npm install ...`").toMatch(/^(install|i|add)$/)
    // Every package the program imports is on the line (by name: the tarballs replace the @peftkit names).
    for (const name of programImports(usingItProgram(readme))) {
      expect(line.some((arg) => arg === name || arg.startsWith(`${name}@`)), `the install line lacks ${name}, which the program imports`).toBe(true)
    }
    makeUserProject(project)
    const args = installArguments(line, tarballs, manifests)
    console.log(`npm ${args.map((arg) => arg.replace(`${work}/`, "")).join(" ")}`)
    const started = Date.now()
    const result = await npm(project, cache, args)
    console.log(`npm install: exit ${result.status} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    expect(result.status, `npm install failed:\n${tail(result.output)}`).toBe(0)
    const peerComplaints = result.output.split("\n").filter((l) => /ERESOLVE|peer dep|Could not resolve dependency|conflicting peer|invalid: /i.test(l))
    expect(peerComplaints, `npm printed peer-dependency complaints:\n${tail(result.output)}`).toEqual([])
    installed = true

    for (const name of ["effect", "@tensorflow/tfjs-core"]) {
      const copies = installedCopies(project, name)
      expect(copies.map((c) => `${c.path.replace(`${project}/`, "")}@${c.version}`), `copies of ${name}`).toHaveLength(1)
    }
    const effectVersion = installedCopies(project, "effect")[0]!.version
    console.log(`installed effect ${effectVersion}, @tensorflow/tfjs-core ${installedCopies(project, "@tensorflow/tfjs-core")[0]!.version}`)
    // npm's own view agrees (it exits non-zero on missing or invalid peers).
    const ls = await npm(project, cache, ["ls", "effect", "@tensorflow/tfjs-core", "--all", "--parseable"])
    expect(ls.status, `npm ls:\n${tail(ls.output)}`).toBe(0)
    const paths = new Set(ls.stdout.split("\n").filter((p) => /node_modules\/(effect|@tensorflow\/tfjs-core)$/.test(p)))
    expect([...paths].sort()).toEqual([join(project, "node_modules/@tensorflow/tfjs-core"), join(project, "node_modules/effect")])
  }, minutes(9))

  it("the README's program, compiled to ESM, runs with node and writes what it says", async () => {
    expect(installed, "the install step failed (see above)").toBe(true)
    const program = usingItProgram(readme)
    writeFileSync(join(project, "example.mjs"), await compileProgram(program))
    const started = Date.now()
    const result = await run(process.execPath, ["example.mjs"], { cwd: project, timeoutMs: minutes(4) })
    console.log(`node example.mjs: exit ${result.status} in ${((Date.now() - started) / 1000).toFixed(1)} s\n${result.output.split("\n").slice(0, 2).join("\n")}\n...\n${tail(result.output, 2)}`)
    expect(result.status, `the README program failed:\n${tail(result.output)}`).toBe(0)
    expect(result.output, "Effect's version-mismatch warning (a second effect)").not.toMatch(/Executing an Effect versioned/)

    const { adapterDirs, files } = expectedOutputs(program)
    expect(adapterDirs.length + files.length, "the program writes no file this test recognises: update expectedOutputs").toBeGreaterThan(0)
    for (const dir of adapterDirs) {
      const config = JSON.parse(readFileSync(join(project, dir, "adapter_config.json"), "utf8")) as Record<string, unknown>
      expect(config.peft_type, `${dir}/adapter_config.json`).toBeTypeOf("string")
      expect(config.r, `${dir}/adapter_config.json r`).toBeTypeOf("number")
      const header = safetensorsHeader(join(project, dir, "adapter_model.safetensors"))
      expect(header.__metadata__?.format, `${dir}/adapter_model.safetensors metadata`).toBe("pt")
      expect(Object.keys(header).filter((key) => key !== "__metadata__").length, `${dir}: tensors`).toBeGreaterThan(0)
    }
    for (const file of files) {
      expect(existsSync(join(project, file)) && statSync(join(project, file)).size > 0, `${file} written and not empty`).toBe(true)
      if (file.endsWith(".jsonl")) {
        // The metrics log: the training loss is finite and falls.
        const losses = readFileSync(join(project, file), "utf8")
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => (JSON.parse(l) as { trainLoss?: number }).trainLoss)
          .filter((loss): loss is number => loss !== undefined)
        expect(losses.length, `${file}: train-loss records`).toBeGreaterThan(1)
        expect(losses.every(Number.isFinite), `${file}: finite losses`).toBe(true)
        expect(losses.at(-1)!, `${file}: the loss falls`).toBeLessThan(losses[0]!)
      }
    }
  }, minutes(5))

  it("every package README starts with an install line that names the package and its peers and resolves without a peer complaint", async () => {
    const failures: Array<string> = []
    for (const pkg of packages) {
      const line = installLineOf(readFileSync(join(pkg.dir, "README.md"), "utf8"))
      if (line === undefined) {
        failures.push(`${pkg.name}: README has no npm install line`)
        continue
      }
      const names = line.map((arg) => arg.replace(/^(@?[^@]+).*$/, "$1"))
      // The package itself, and every required peer of it and of the @peftkit packages it depends on.
      const closure = [pkg.name, ...Object.keys(manifests.get(pkg.name)!.dependencies ?? {}).filter((d) => d.startsWith("@peftkit/"))]
      const peers = new Set(
        closure.flatMap((name) => {
          const manifest = manifests.get(name) ?? {}
          return Object.keys(manifest.peerDependencies ?? {}).filter((peer) => manifest.peerDependenciesMeta?.[peer]?.optional !== true)
        })
      )
      // (The CLI pins its peers' packages as its own dependencies: those need no line.)
      for (const name of [pkg.name, ...peers]) if (!names.includes(name) && manifests.get(pkg.name)!.dependencies?.[name] === undefined) failures.push(`${pkg.name}: install line lacks ${name}`)
      const project = makeUserProject(join(work, `readme-${pkg.dir.split("/").at(-1)}`))
      const result = await npm(project, cache, [...installArguments(line, tarballs, manifests), "--dry-run"])
      const complaints = result.output.split("\n").filter((l) => /ERESOLVE|peer dep|Could not resolve dependency|conflicting peer/i.test(l))
      if (result.status !== 0 || complaints.length > 0) failures.push(`${pkg.name}: npm ${line.join(" ")} --dry-run: exit ${result.status}\n${tail(result.output, 15)}`)
    }
    expect(failures, failures.join("\n\n")).toEqual([])
  }, minutes(8))

  it("npm refuses effect 4 at install time with its ERESOLVE peer message", async () => {
    expect(installed, "the install step failed (see above)").toBe(true)
    const before = readFileSync(join(project, "package.json"), "utf8")
    const result = await npm(project, cache, ["install", "effect@4"])
    expect(result.status, `npm install effect@4 succeeded:\n${tail(result.output)}`).not.toBe(0)
    expect(result.output).toMatch(/code ERESOLVE/)
    expect(result.output).toMatch(/Could not resolve dependency/)
    expect(result.output).toMatch(/peer effect@"\^3\./)
    expect(readFileSync(join(project, "package.json"), "utf8"), "package.json untouched").toBe(before)
    expect(installedCopies(project, "effect").map((c) => c.version)[0], "effect 3 still installed").toMatch(/^3\./)
  }, minutes(5))
})

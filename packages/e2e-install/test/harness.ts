/**
 * What a newcomer does with peftkit, as functions: read the root README's "Using it" section (its
 * install line and its program), pack the workspace's packages as npm would publish them, make a
 * fresh npm project outside the workspace, install, compile and run. Shared by the Node test
 * (`test/Install.test.ts`) and the browser test (`pending/browser.test.ts`).
 *
 * Nothing is cached outside the temporary directory: npm gets its own cache folder in it, and the
 * caller removes the whole directory at the end.
 */
import { transform } from "esbuild"
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = fileURLToPath(new URL("../../..", import.meta.url))
export const packagesDir = join(repoRoot, "packages")
/** The pnpm the repository pins (root package.json `packageManager`); pnpm rewrites `workspace:^`. */
export const pnpm = ["--yes", "pnpm@10.34.9"] as const

/** The README under test; `PEFTKIT_E2E_README` points at another file (to try a README edit first). */
export const readmePath = process.env.PEFTKIT_E2E_README ?? join(repoRoot, "README.md")

// ---------------------------------------------------------------------------------------------
// Commands

export interface RunResult {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
  /** stdout and stderr as they interleaved. */
  readonly output: string
}

/** Variables vite/vitest set for the test process (`import.meta.env` mirrors): a user's shell has none. */
const testRunnerVariables = new Set(["NODE_ENV", "TEST", "PROD", "DEV", "SSR", "MODE", "BASE_URL", "FORCE_TTY", "INIT_CWD", "NODE_OPTIONS"])

/**
 * The environment of a user's shell: without what a `pnpm test` run injects (`npm_config_*`,
 * `npm_package_*`, pnpm's and vitest's variables) and above all without `NODE_PATH`, which pnpm's
 * bin shims point at the workspace's `node_modules/.pnpm/node_modules`: with it, `require.resolve`
 * from the user's project finds workspace packages the user never installed (core's backend discovery
 * then loaded the workspace's @peftkit/backend-webgpu and Dawn from a project that has neither).
 */
export const userEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|pnpm_|VITEST)/i.test(key) || key === "NODE_PATH" || testRunnerVariables.has(key)) continue
    env[key] = value
  }
  return { ...env, ...extra }
}

/** Runs a command to completion (no shell), killing it after `timeoutMs`. */
export const run = (command: string, args: ReadonlyArray<string>, options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }) =>
  new Promise<RunResult>((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? userEnv(), stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk
      output += chunk
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk
      output += chunk
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 300_000)
    child.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on("close", (status) => {
      clearTimeout(timer)
      resolvePromise({ status, stdout, stderr, output })
    })
  })

/** The last `lines` lines of a command's output, for assertion messages. */
export const tail = (text: string, lines = 40) => text.trimEnd().split("\n").slice(-lines).join("\n")

// ---------------------------------------------------------------------------------------------
// The README

/** The text of a `## heading` section, up to the next `## ` heading. */
export const readmeSection = (readme: string, heading: string): string => {
  const lines = readme.split("\n")
  const start = lines.findIndex((line) => line.trim() === `## ${heading}`)
  if (start < 0) throw new Error(`the README has no "## ${heading}" section`)
  const end = lines.findIndex((line, i) => i > start && line.startsWith("## "))
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n")
}

/** The fenced code blocks of a text, with their info string (`ts`, `sh`, ...). */
export const codeBlocks = (text: string): Array<{ readonly lang: string; readonly code: string }> =>
  [...text.matchAll(/^```([\w-]*)[^\n]*\n([\s\S]*?)^```/gm)].map((match) => ({ lang: match[1] ?? "", code: match[2] ?? "" }))

/** The first TypeScript block of "## Using it": the program a user copies. */
export const usingItProgram = (readme: string): string => {
  const block = codeBlocks(readmeSection(readme, "Using it")).find((b) => b.lang === "ts" || b.lang === "typescript")
  if (block === undefined) throw new Error(`the README's "## Using it" section has no \`\`\`ts block`)
  return block.code
}

/**
 * The `npm install ...` line of "## Using it", as arguments after `npm` (a trailing `# comment` is
 * dropped). The README must give one: without it a newcomer does not know what to install.
 */
export const usingItInstallLine = (readme: string): Array<string> => {
  const line = installLineOf(readmeSection(readme, "Using it"))
  if (line === undefined) {
    throw new Error(
      `the README's "## Using it" section gives no \`npm install ...\` line in a \`\`\`sh block, so a newcomer cannot know what to install; ` +
        `the program imports ${[...programImports(usingItProgram(readme))].join(", ")}`
    )
  }
  return line
}

/** The first `npm install ...` line in a text's shell blocks, as arguments after `npm` (comments dropped). */
export const installLineOf = (text: string): Array<string> | undefined =>
  codeBlocks(text)
    .filter((b) => b.lang === "sh" || b.lang === "bash" || b.lang === "shell" || b.lang === "")
    .flatMap((b) => b.code.split("\n"))
    .map((l) => l.replace(/^\s*\$\s*/, "").replace(/\s+#.*$/, "").trim())
    .find((l) => /^npm (install|i|add)\s/.test(l))
    ?.split(/\s+/)
    .slice(1)

/** The bare package names a program imports (`@scope/name`, `name`; `node:` builtins excluded). */
export const programImports = (program: string): Set<string> => {
  const names = new Set<string>()
  for (const match of program.matchAll(/(?:^|\n)\s*import\s[^"']*?["']([^"']+)["']/g)) {
    const spec = match[1]!
    if (spec.startsWith("node:") || spec.startsWith(".")) continue
    const parts = spec.split("/")
    names.add(spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!)
  }
  return names
}

/**
 * What the program says it writes, read from its string literals, so the expectations follow the
 * README: a literal passed as the first argument of a `save...(` call is a PEFT adapter directory
 * (adapter_config.json + adapter_model.safetensors); any other relative path literal with a file
 * extension (`out/metrics.jsonl`) is a file.
 */
export const expectedOutputs = (program: string): { readonly adapterDirs: Array<string>; readonly files: Array<string> } => {
  const code = program.replace(/^\s*import\s[^\n]*$/gm, "")
  const adapterDirs = [...code.matchAll(/\bsave\w*\(\s*["']([^"']+)["']/g)].map((m) => m[1]!)
  const files = [...code.matchAll(/["']([\w.-]+(?:\/[\w.-]+)*\/[\w.-]+\.[a-z0-9]+)["']/gi)]
    .map((m) => m[1]!)
    .filter((path) => !adapterDirs.includes(path) && !path.startsWith("@"))
  return { adapterDirs: [...new Set(adapterDirs)], files: [...new Set(files)] }
}

/** TypeScript to an ES module, as a user's `tsc`/`tsx` would, without bundling. */
export const compileProgram = async (program: string): Promise<string> =>
  (await transform(program, { loader: "ts", format: "esm", target: "node20", sourcefile: "example.ts" })).code

// ---------------------------------------------------------------------------------------------
// The workspace's packages and their tarballs

export interface WorkspacePackage {
  readonly dir: string
  readonly name: string
  readonly manifest: Record<string, any>
}

/** Every publishable package (not `private`) of `packages/`. */
export const publishablePackages = (): Array<WorkspacePackage> =>
  readdirSync(packagesDir)
    .filter((dir) => existsSync(join(packagesDir, dir, "package.json")))
    .map((dir) => {
      const manifest = JSON.parse(readFileSync(join(packagesDir, dir, "package.json"), "utf8")) as Record<string, any>
      return { dir: join(packagesDir, dir), name: manifest.name as string, manifest }
    })
    .filter((pkg) => pkg.manifest.private !== true)

/** A library package is a publishable one that is not an application (the CLI pins its peers). */
export const isLibrary = (pkg: WorkspacePackage) => pkg.manifest.bin === undefined

/** `pnpm pack` each package into `dest`; returns the tarball path by package name. */
export const packAll = async (packages: ReadonlyArray<WorkspacePackage>, dest: string): Promise<Map<string, string>> => {
  mkdirSync(dest, { recursive: true })
  const tarballs = new Map<string, string>()
  for (const pkg of packages) {
    const before = new Set(readdirSync(dest))
    const result = await run("npx", [...pnpm, "pack", "--pack-destination", dest], { cwd: pkg.dir, timeoutMs: 180_000 })
    const created = readdirSync(dest).filter((file) => file.endsWith(".tgz") && !before.has(file))
    if (result.status !== 0 || created.length !== 1) {
      throw new Error(`pnpm pack failed in ${pkg.dir} (exit ${result.status}, new tarballs ${created.join(", ") || "none"}):\n${tail(result.output)}`)
    }
    tarballs.set(pkg.name, join(dest, created[0]!))
  }
  return tarballs
}

/** The file list of a tarball (paths without the leading `package/`). */
export const tarballFiles = async (tarball: string): Promise<Array<string>> => {
  const result = await run("tar", ["-tzf", tarball], { cwd: repoRoot })
  if (result.status !== 0) throw new Error(`tar -tzf ${tarball}: ${result.stderr}`)
  return result.stdout.split("\n").filter((line) => line !== "").map((line) => line.replace(/^package\//, ""))
}

/** The package.json a tarball holds (what npm and the registry see). */
export const tarballManifest = async (tarball: string): Promise<Record<string, any>> => {
  const result = await run("tar", ["-xzOf", tarball, "package/package.json"], { cwd: repoRoot })
  if (result.status !== 0) throw new Error(`tar -xzOf ${tarball} package/package.json: ${result.stderr}`)
  return JSON.parse(result.stdout) as Record<string, any>
}

/**
 * The README's install arguments with each `@peftkit/<name>[@version]` replaced by its tarball. The
 * `@peftkit/*` packages those depend on are added as tarballs too: they stand in for the registry,
 * which does not have them (every other package comes from the real npm registry).
 */
export const installArguments = (line: ReadonlyArray<string>, tarballs: ReadonlyMap<string, string>, manifests: ReadonlyMap<string, Record<string, any>>): Array<string> => {
  const named: Array<string> = []
  const args = line.map((arg) => {
    const match = /^(@peftkit\/[\w.-]+)(?:@.*)?$/.exec(arg)
    if (match === null) return arg
    const tarball = tarballs.get(match[1]!)
    if (tarball === undefined) throw new Error(`the install line names ${match[1]}, which is no publishable workspace package`)
    named.push(match[1]!)
    return tarball
  })
  const closure = new Set<string>()
  const visit = (name: string) => {
    for (const dep of Object.keys(manifests.get(name)?.dependencies ?? {})) {
      if (dep.startsWith("@peftkit/") && !closure.has(dep) && !named.includes(dep)) {
        closure.add(dep)
        visit(dep)
      }
    }
  }
  named.forEach(visit)
  return [...args, ...[...closure].map((name) => tarballs.get(name)!)]
}

// ---------------------------------------------------------------------------------------------
// The user's project

/** `npm init`-like: a fresh ES-module project (as the package READMEs tell users to make). */
export const makeUserProject = (dir: string) => {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, "package.json"), `${JSON.stringify({ name: "peftkit-newcomer", version: "1.0.0", private: true, type: "module" }, null, 2)}\n`)
  return dir
}

/** npm in the user's project, with its cache inside the temporary directory. */
export const npm = (project: string, cache: string, args: ReadonlyArray<string>, timeoutMs = 480_000) =>
  run("npm", args, {
    cwd: project,
    timeoutMs,
    env: userEnv({
      npm_config_cache: cache,
      npm_config_update_notifier: "false",
      npm_config_fund: "false",
      npm_config_audit: "false",
      npm_config_loglevel: "warn"
    })
  })

/** Every installed copy of a package under `project/node_modules` (nested copies included). */
export const installedCopies = (project: string, name: string): Array<{ readonly path: string; readonly version: string }> => {
  const copies: Array<{ path: string; version: string }> = []
  const walk = (nodeModules: string) => {
    if (!existsSync(nodeModules)) return
    for (const entry of readdirSync(nodeModules)) {
      if (entry.startsWith(".")) continue
      const dirs = entry.startsWith("@") ? readdirSync(join(nodeModules, entry)).map((sub) => join(nodeModules, entry, sub)) : [join(nodeModules, entry)]
      for (const dir of dirs) {
        const manifestPath = join(dir, "package.json")
        if (existsSync(manifestPath)) {
          const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { name?: string; version?: string }
          if (manifest.name === name) copies.push({ path: dir, version: manifest.version ?? "?" })
        }
        walk(join(dir, "node_modules"))
      }
    }
  }
  walk(join(project, "node_modules"))
  return copies
}

/** Parses a safetensors file's header (u64 LE length, then JSON). */
export const safetensorsHeader = (path: string): Record<string, any> => {
  const bytes = readFileSync(path)
  const length = Number(bytes.readBigUInt64LE(0))
  return JSON.parse(bytes.subarray(8, 8 + length).toString("utf8")) as Record<string, any>
}

export const resolveIn = (project: string, path: string) => resolve(project, path)

/** Packs everything and installs the README's line into `work/app`; throws, saying why, on a failure. */
export const installFromReadme = async (readme: string, work: string): Promise<{ readonly project: string; readonly cache: string }> => {
  const packages = publishablePackages()
  const tarballs = await packAll(packages, join(work, "tarballs"))
  const manifests = new Map<string, Record<string, any>>()
  for (const [name, tarball] of tarballs) manifests.set(name, await tarballManifest(tarball))
  const project = makeUserProject(join(work, "app"))
  const cache = join(work, "npm-cache")
  const result = await npm(project, cache, installArguments(usingItInstallLine(readme), tarballs, manifests))
  if (result.status !== 0) throw new Error(`npm install failed:\n${tail(result.output)}`)
  return { project, cache }
}

// ---------------------------------------------------------------------------------------------
// The same program in a browser

/** Where the browser program leaves what the test reads back (`globalThis[browserResultKey]`). */
export const browserResultKey = "__peftkitE2e"
export const browserErrorKey = "__peftkitE2eError"

export interface BrowserResult {
  /** The value of the program's last top-level `const x = await ...` (the README returns the final loss). */
  readonly result: unknown
  /** Every file the program wrote, by absolute in-memory path, as text (binary files as their byte length). */
  readonly files: Record<string, string | number>
}

/**
 * The README's Node program as a browser program. A browser has no Node file system, so:
 *
 * - every import from `@effect/platform-node` (any subpath: `import * as NodeFileSystem from
 *   "@effect/platform-node/NodeFileSystem"`, `import { NodeContext } from "@effect/platform-node"`)
 *   is removed, and each `<binding>.layer` of it (`NodeFileSystem.layer`, `NodeContext.layer`) becomes
 *   core's in-memory file system with @effect/platform's portable `Path`:
 *   `Layer.mergeAll(MemoryFileSystem.layerOf(files), Path.layer)` (what a browser app provides,
 *   OPFS aside);
 * - the file system is created before the program runs and its files are published on
 *   `globalThis.__peftkitE2e.files` afterwards, with the program's last top-level
 *   `const x = await ...` value as `result`; a failure lands on `globalThis.__peftkitE2eError`.
 *
 * Nothing else changes: same imports, same training code, same `Backend.layer`. If the README starts
 * providing its Node layer another way, extend the binding rule here (the test fails saying so).
 */
export const browserProgram = (program: string): string => {
  const bindings: Array<string> = []
  const withoutNodeImports = program.replace(/^\s*import\s+([^;]+?)\s+from\s+["']@effect\/platform-node(?:\/[\w-]+)?["'];?[ \t]*$/gm, (_line, clause: string) => {
    const namespace = /^\*\s+as\s+(\w+)$/.exec(clause.trim())
    if (namespace !== null) bindings.push(namespace[1]!)
    else {
      const named = /\{([^}]*)\}/.exec(clause)
      for (const part of named?.[1]?.split(",") ?? []) {
        const name = part.trim().split(/\s+as\s+/).at(-1)
        if (name !== undefined && name !== "") bindings.push(name)
      }
      const fallback = /^(\w+)/.exec(clause.trim())
      if (fallback !== null && !clause.trim().startsWith("{")) bindings.push(fallback[1]!)
    }
    return ""
  })
  let swapped = 0
  let body = withoutNodeImports
  for (const binding of bindings) {
    body = body.replace(new RegExp(`\\b${binding}\\.layer\\b`, "g"), () => {
      swapped += 1
      return "__e2eBrowserFiles"
    })
  }
  if (swapped === 0) {
    throw new Error(
      `the README program provides no \`<binding>.layer\` imported from @effect/platform-node (found bindings: ${bindings.join(", ") || "none"}); ` +
        "update browserProgram in packages/e2e-install/test/harness.ts to swap its Node layer for a browser one"
    )
  }
  const last = [...body.matchAll(/^(?:const|let)\s+(\w+)\s*=\s*await\b/gm)].at(-1)?.[1]
  return [
    `import { MemoryFileSystem as __e2eMemoryFileSystem, makeMemoryFileSystem as __e2eMakeMemoryFileSystem } from "@peftkit/core"`,
    `import { Path as __e2ePath } from "@effect/platform"`,
    `import { Layer as __e2eLayer } from "effect"`,
    `const __e2eSetError = (error: unknown) => { (globalThis as any).${browserErrorKey} ??= error instanceof Error ? (error.stack ?? error.message) : String(error) }`,
    `globalThis.addEventListener?.("error", (event: any) => __e2eSetError(event.error ?? event.message))`,
    `globalThis.addEventListener?.("unhandledrejection", (event: any) => __e2eSetError(event.reason))`,
    `const __e2eFiles = __e2eMakeMemoryFileSystem()`,
    `const __e2eBrowserFiles = __e2eLayer.mergeAll(__e2eMemoryFileSystem.layerOf(__e2eFiles), __e2ePath.layer)`,
    body,
    `;(globalThis as any).${browserResultKey} = {`,
    `  result: ${last ?? "undefined"},`,
    `  files: Object.fromEntries([...__e2eFiles.files()].map(([path, bytes]) => [path, /\\.(json|jsonl|txt|md|html)$/.test(path) ? new TextDecoder().decode(bytes) : bytes.byteLength]))`,
    `}`
  ].join("\n")
}

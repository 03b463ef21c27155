/**
 * The backends the `peftkit` command offers: the application, not core, knows which backend
 * packages exist. `@peftkit/backend-cpu` is a dependency; `@peftkit/backend-node` and
 * `@peftkit/backend-webgpu` are used when installed next to the CLI (or in the working directory).
 * A missing one still answers for its backends, with a provider whose `load` fails saying what to
 * install, so `--backend webgpu` and `auto` explain themselves.
 */
import { providers as cpuProviders } from "@peftkit/backend-cpu"
import { Backend, type BackendChoice, type BackendProvider, backendUnavailable, type BackendUnavailable, firstLine, isModuleNotFound } from "@peftkit/core"
import { Effect, Layer } from "effect"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"

/** Every backend name `--backend` accepts, besides "auto". */
export const knownBackendNames = ["node-gpu", "webgpu", "node", "wasm", "cpu"] as const

/** "auto" or a backend the CLI knows. */
export type KnownBackendChoice = "auto" | (typeof knownBackendNames)[number]

/** Whether `value` is "auto" or a backend the CLI knows (flags and config files are plain strings). */
export const isKnownBackendChoice = (value: unknown): value is KnownBackendChoice =>
  value === "auto" || (knownBackendNames as ReadonlyArray<unknown>).includes(value)

/** The optional backend packages and what their providers are, for when one is not installed. */
const optionalPackages: ReadonlyArray<{
  readonly packageName: string
  readonly backends: ReadonlyArray<Pick<BackendProvider, "name" | "priority" | "device" | "autoRequiresHardwareGpu">>
}> = [
  { packageName: "@peftkit/backend-node", backends: [{ name: "node-gpu", priority: 400, device: "gpu" }, { name: "node", priority: 200, device: "cpu" }] },
  { packageName: "@peftkit/backend-webgpu", backends: [{ name: "webgpu", priority: 300, device: "gpu", autoRequiresHardwareGpu: true }] }
]

/**
 * Imports a package the CLI does not depend on. With a strict node_modules layout (pnpm) the CLI
 * cannot see packages installed beside it, so a miss is retried from the entry script and from
 * the working directory.
 */
const importPackage = async (specifier: string): Promise<unknown> => {
  try {
    return await import(/* @vite-ignore */ specifier)
  } catch (error) {
    if (!isModuleNotFound(error, specifier)) throw error
    for (const base of [process.argv[1], `${process.cwd()}/`]) {
      if (base === undefined) continue
      let resolved: string
      try {
        resolved = createRequire(base).resolve(specifier)
      } catch {
        continue
      }
      return await import(/* @vite-ignore */ pathToFileURL(resolved).href)
    }
    throw error
  }
}

const unavailableProviders = (
  packageName: string,
  backends: ReadonlyArray<Pick<BackendProvider, "name" | "priority" | "device" | "autoRequiresHardwareGpu">>,
  reason: string
): Array<BackendProvider> =>
  backends.map((backend) => {
    const install = `npm install ${packageName}`
    return { ...backend, packageName, install, load: Effect.fail(backendUnavailable(backend.name, reason, install)) }
  })

/**
 * The providers of every backend package the CLI knows, installed or not. With `quiet` (what
 * `auto` uses), a package that can probe without loading (`makeWebGpuProvider({ quietProbe })`:
 * Dawn asked for an adapter in a child process, its Vulkan warnings captured) gives that provider
 * instead, so a command that merely considers WebGPU prints nothing of Dawn's.
 */
const findBackends = (quiet: boolean): Effect.Effect<ReadonlyArray<BackendProvider>> =>
  Effect.promise(async () => {
    const found: Array<BackendProvider> = [...cpuProviders]
    for (const { packageName, backends } of optionalPackages) {
      try {
        const module = (await importPackage(packageName)) as { providers?: unknown; makeWebGpuProvider?: unknown } | null
        const list = module?.providers
        if (!Array.isArray(list)) throw new Error(`it exports no providers`)
        const quietWebGpu =
          quiet && typeof module?.makeWebGpuProvider === "function"
            ? (module.makeWebGpuProvider as (options: { readonly quietProbe: boolean }) => BackendProvider)({ quietProbe: true })
            : undefined
        found.push(...(list as ReadonlyArray<BackendProvider>).map((provider) => (quietWebGpu !== undefined && provider.name === quietWebGpu.name ? quietWebGpu : provider)))
      } catch (error) {
        const reason = isModuleNotFound(error, packageName)
          ? `package ${packageName} is not installed`
          : `package ${packageName} failed to import: ${firstLine(error)}`
        found.push(...unavailableProviders(packageName, backends, reason))
      }
    }
    return found
  })

/** The providers of every backend package the CLI knows, installed or not. */
export const installedBackends: Effect.Effect<ReadonlyArray<BackendProvider>> = findBackends(false)

/**
 * `Backend.layer(choice)` over {@link installedBackends}: what every command runs on. `auto`
 * probes WebGPU quietly (in a child process, see `findBackends`); a named backend loads as asked.
 */
export const backendLayer = (choice: BackendChoice): Layer.Layer<Backend, BackendUnavailable> =>
  Layer.unwrapEffect(Effect.map(findBackends(choice === "auto"), (providers) => Backend.layer(choice, providers)))

import { readdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// One vitest project per package (and per example); workspace imports resolve to source so tests never need a build.
const packagesDir = fileURLToPath(new URL("./packages", import.meta.url))
const examplesDir = fileURLToPath(new URL("./examples", import.meta.url))
const packages = readdirSync(packagesDir)
const examples = readdirSync(examplesDir)
const alias = Object.fromEntries(packages.map((name) => [`@peftkit/${name}`, `${packagesDir}/${name}/src/index.ts`]))

const project = (name: string, root: string) => ({
  resolve: { alias },
  test: {
    name,
    root,
    include: ["test/**/*.test.ts"],
    environment: "node" as const,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    passWithNoTests: true
  }
})

export default defineConfig({
  test: {
    reporters: ["default", "./scripts/vitest-summary-reporter.ts"],
    globalSetup: ["./scripts/vitest-temp-dir.ts"],
    projects: [
      ...packages.map((name) => project(name, `${packagesDir}/${name}`)),
      ...examples.map((name) => project(`example-${name}`, `${examplesDir}/${name}`))
    ]
  }
})

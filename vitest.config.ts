import { readdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// One vitest project per package; workspace imports resolve to source so tests never need a build.
const packagesDir = fileURLToPath(new URL("./packages", import.meta.url))
const packages = readdirSync(packagesDir)
const alias = Object.fromEntries(packages.map((name) => [`@peftkit/${name}`, `${packagesDir}/${name}/src/index.ts`]))

export default defineConfig({
  test: {
    reporters: ["default", "./scripts/vitest-summary-reporter.ts"],
    projects: packages.map((name) => ({
      resolve: { alias },
      test: {
        name,
        root: `${packagesDir}/${name}`,
        include: ["test/**/*.test.ts"],
        environment: "node",
        testTimeout: 60_000,
        hookTimeout: 60_000,
        passWithNoTests: true
      }
    }))
  }
})

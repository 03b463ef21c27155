/**
 * The browser harness's rewrite of the README program (`browserProgram`) keeps up with the README:
 * it finds the Node layer to swap and the result to publish, and the rewritten program still
 * compiles. Runs today, so `pending/browser.test.ts` does not rot while it waits for browser bundles.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { browserProgram, compileProgram, readmePath, usingItProgram } from "./harness.js"

describe("the README program, rewritten for a browser", () => {
  it("swaps every @effect/platform-node layer for the in-memory file system and publishes the result", async () => {
    const rewritten = browserProgram(usingItProgram(readFileSync(readmePath, "utf8")))
    expect(rewritten).not.toMatch(/@effect\/platform-node/)
    expect(rewritten).toMatch(/__e2eBrowserFiles\b[\s\S]*__e2eBrowserFiles\b/) // declared and used
    expect(rewritten).toMatch(/result: (?!undefined)\w+,/)
    await expect(compileProgram(rewritten)).resolves.toMatch(/__peftkitE2e/)
  })

  it("knows the Node layer forms a program may use", () => {
    for (const imports of [
      `import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"`,
      `import { NodeContext } from "@effect/platform-node"`,
      `import { NodeContext as Ctx, NodeRuntime } from "@effect/platform-node";`
    ]) {
      const layer = /\* as (\w+)/.exec(imports)?.[1] ?? /\{ (?:\w+ as )?(\w+)/.exec(imports)![1]!
      const program = `${imports}\nimport { Effect } from "effect"\nconst x = await Effect.runPromise(Effect.provide(Effect.succeed(1), ${layer}.layer))\n`
      const rewritten = browserProgram(program)
      expect(rewritten, imports).not.toMatch(/platform-node/)
      expect(rewritten, imports).toMatch(/Effect\.provide\(Effect\.succeed\(1\), __e2eBrowserFiles\)/)
      expect(rewritten, imports).toMatch(/result: x,/)
    }
    expect(() => browserProgram(`import { Effect } from "effect"\nawait Effect.runPromise(Effect.void)\n`)).toThrow(/no `<binding>.layer`/)
  })
})

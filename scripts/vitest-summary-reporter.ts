/**
 * Prints the run's plain closing lines after vitest's own summary: which backends the conformance
 * suite ran on and which it skipped (their tests print why), then `tests: N passed, N failed,
 * N skipped`, so CI logs and tools that only understand that line can read the result.
 */
import type { Reporter, TestModule } from "vitest/node"

// The backend packages' conformance suites are `describe("conformance on <backend>")` (or "in").
const CONFORMANCE = /conformance (?:on|in) ([^>]+?) >/
// The playground's browser tests name their backend first: "... > WebGPU, built-in model: ...".
const PLAYGROUND = /the playground in headless Chromium > (WebGPU|wasm)\b/

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    const backends = new Map<string, "ran" | "failed" | "skipped">()
    const playground = new Map<string, "ran" | "failed" | "skipped">()
    for (const testModule of testModules) {
      for (const test of testModule.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
        const page = PLAYGROUND.exec(test.fullName)?.[1]
        const pageState = state === "passed" ? "ran" : state === "failed" ? "failed" : "skipped"
        // Failed wins over ran, ran over skipped (a backend with one skipped test still ran).
        if (page !== undefined && playground.get(page) !== "failed" && !(playground.get(page) === "ran" && pageState === "skipped")) playground.set(page, pageState)
        const backend = CONFORMANCE.exec(test.fullName)?.[1]
        if (backend !== undefined && backends.get(backend) !== "failed") {
          backends.set(backend, state === "passed" ? "ran" : state === "failed" ? "failed" : "skipped")
        }
      }
      // A file that failed to load has no tests but is a failure.
      if (testModule.state() === "failed" && testModule.children.size === 0) failed++
    }
    const list = (kind: "ran" | "failed" | "skipped") => [...backends].filter(([, state]) => state === kind).map(([name]) => name)
    if (backends.size > 0) {
      const parts = [`ran ${list("ran").join(", ") || "none"}`]
      if (list("failed").length > 0) parts.push(`failed ${list("failed").join(", ")}`)
      if (list("skipped").length > 0) parts.push(`skipped ${list("skipped").join(", ")} (not installable here; see their test output)`)
      process.stdout.write(`\nbackends (conformance suite): ${parts.join("; ")}\n`)
    }
    if (playground.size > 0) {
      process.stdout.write(`playground (headless Chromium): ${[...playground].map(([name, state]) => `${name} ${state}`).join(", ")}\n`)
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`)
  }
}

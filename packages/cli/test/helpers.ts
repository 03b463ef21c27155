/**
 * What the CLI tests share: the paths of the real model (shared data) and the small fixture data
 * set, and the CLI run in-process with its stdout and stderr captured.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { vi } from "vitest"
import { run } from "../src/main.js"

export const repo = fileURLToPath(new URL("../../..", import.meta.url))
export const stories = join(repo, "../shared/data/models/stories260K/stories260K.bin")
export const data = fileURLToPath(new URL("./fixtures/apples", import.meta.url))
export const haveShared = existsSync(stories)

/** Runs the CLI in-process; `onStderr` sees each chunk as it is written (to send a signal at a chosen moment). */
export const runCli = async (argv: ReadonlyArray<string>, onStderr: (chunk: string) => void = () => undefined) => {
  let stdout = ""
  let stderr = ""
  const err = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
    stderr += String(chunk)
    onStderr(String(chunk))
    return true
  })
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => ((stdout += String(chunk)), true))
  try {
    const code = await run([...argv], (text) => void (stdout += text))
    return { code, stdout, stderr }
  } finally {
    err.mockRestore()
    out.mockRestore()
  }
}

/** `runCli` with the arguments spread. */
export const cli = (...argv: Array<string>) => runCli(argv)

export const lastLine = (text: string) => text.trim().split("\n").at(-1) ?? ""

/**
 * Gives the test run its own temporary directory (TMPDIR, so `os.tmpdir()` in every test worker and
 * child process points into it) and removes it when the run ends: tests make many scratch folders
 * and none is left behind in the machine's /tmp.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), "peftkit-test-run-"))
  process.env.TMPDIR = dir
  return () => rmSync(dir, { recursive: true, force: true })
}

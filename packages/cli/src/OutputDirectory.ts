/**
 * The run's output directory (`--adapter-path`), claimed for the length of a run:
 * - a directory holding an earlier run is refused unless the run resumes it (`--resume`) or replaces
 *   it (`--overwrite`, which removes the earlier run's files first), so nothing is silently mixed;
 * - a lock file with the owner's pid keeps two runs from interleaving in one directory; a lock whose
 *   process is gone (a killed run) is stale and taken over, saying so;
 * - temp files and directories a killed run left behind (`*.tmp`, from atomic writes and checkpoint
 *   directories) are removed.
 */
import { FileSystem } from "@effect/platform"
import { ConfigError, dirName, type FileError, joinPath, listDirectory, pathKind, removePath, toFileError } from "@peftkit/core"
import { Effect, type Scope } from "effect"

export const LOCK_FILE = ".peftkit-train.lock"
const CHECKPOINTS = "checkpoints"

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Removes `*.tmp` entries of `dir` (not recursive: atomic writes put their temp files beside the target). */
const removeLeftovers = (dir: string): Effect.Effect<ReadonlyArray<string>, FileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const leftovers = (yield* listDirectory(dir)).filter((name) => name.endsWith(".tmp"))
    for (const name of leftovers) yield* removePath(joinPath(dir, name))
    return leftovers
  })

/**
 * mkdir -p, one level at a time: Node's recursive mkdir never returns under some pseudo file
 * systems (`/proc/x/y` spins on ENOENT), where a plain mkdir fails at once with a clear error.
 */
const makeDirectoryStepwise = (fs: FileSystem.FileSystem, dir: string): Effect.Effect<void, FileError | ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const missing: Array<string> = []
    let at = dir
    while ((yield* pathKind(at)) === "missing" && dirName(at) !== at) {
      missing.push(at)
      at = dirName(at)
    }
    if ((yield* pathKind(at)) !== "directory") return yield* new ConfigError({ field: "train.adapterPath", reason: `${at} is not a directory` })
    for (const level of missing.reverse()) yield* fs.makeDirectory(level).pipe(Effect.mapError(toFileError(level, "mkdir")))
  })

const takeLock = (out: string, say: (text: string) => Effect.Effect<void>): Effect.Effect<void, FileError | ConfigError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const lock = joinPath(out, LOCK_FILE)
    const claim = fs.writeFileString(lock, `${JSON.stringify({ pid: process.pid, started: new Date().toISOString() })}\n`, { flag: "wx" })
    const first = yield* Effect.either(claim)
    if (first._tag === "Left") {
      if (first.left._tag !== "SystemError" || first.left.reason !== "AlreadyExists") return yield* Effect.fail(toFileError(lock, "write")(first.left))
      const owner = yield* fs.readFileString(lock).pipe(
        Effect.map((text) => {
          try {
            return (JSON.parse(text) as { pid?: unknown }).pid
          } catch {
            return undefined
          }
        }),
        Effect.orElseSucceed(() => undefined)
      )
      if (typeof owner === "number" && owner !== process.pid && isAlive(owner)) {
        return yield* new ConfigError({ field: "train.adapterPath", reason: `another run (pid ${owner}) is training into ${out}; wait for it, or choose another --adapter-path` })
      }
      yield* say(`note: taking over a stale lock in ${out} (its run, pid ${String(owner)}, is gone)`)
      yield* removePath(lock)
      yield* claim.pipe(Effect.mapError(toFileError(lock, "write")))
    }
    yield* Effect.addFinalizer(() => Effect.ignore(fs.remove(lock)))
  })

/**
 * Claims `out` for a run (see the module comment); the lock is released when the scope closes.
 * Fails with a `ConfigError` on `train.adapterPath` when the directory holds another run.
 */
export const claimOutputDirectory = (
  out: string,
  options: { readonly resume: boolean; readonly overwrite: boolean },
  say: (text: string) => Effect.Effect<void>
): Effect.Effect<void, FileError | ConfigError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const kind = yield* pathKind(out)
    if (kind !== "missing" && kind !== "directory") {
      return yield* new ConfigError({ field: "train.adapterPath", reason: `${out} exists and is not a directory` })
    }
    yield* makeDirectoryStepwise(fs, out)
    yield* takeLock(out, say)
    const cleaned = [...(yield* removeLeftovers(out)), ...(yield* removeLeftovers(joinPath(out, CHECKPOINTS)))]
    if (cleaned.length > 0) yield* say(`note: removed ${cleaned.length} temp file(s) a killed run left in ${out}`)
    const earlier = (yield* listDirectory(out)).filter((name) => name !== LOCK_FILE)
    if (earlier.length === 0 || options.resume) return
    if (!options.overwrite) {
      return yield* new ConfigError({
        field: "train.adapterPath",
        reason: `${out} already holds a run (${earlier.slice(0, 4).join(", ")}${earlier.length > 4 ? ", ..." : ""}); pass --resume to continue it or --overwrite to replace it`
      })
    }
    for (const name of earlier) yield* removePath(joinPath(out, name))
    yield* say(`note: --overwrite: removed the earlier run in ${out}`)
  })

/**
 * The metrics log service: one JSON object per line (JSONL), one line per report, evaluation or
 * event, so runs can be plotted or compared afterwards. `jsonl(path)` appends to a file for the
 * lifetime of its scope; `memory()` keeps records in an array (tests, in-process reports).
 */
import { Context, Effect, Layer } from "effect"
import { FileError } from "./Errors.js"

export type MetricsRecord = Readonly<Record<string, string | number | boolean | null>>

export interface MetricsLogShape {
  readonly write: (record: MetricsRecord) => Effect.Effect<void, FileError>
}

export class MetricsLog extends Context.Tag("@peftkit/core/MetricsLog")<MetricsLog, MetricsLogShape>() {
  /** Discards everything. */
  static readonly none: Layer.Layer<MetricsLog> = Layer.succeed(MetricsLog, { write: () => Effect.void })

  /** Collects records into `sink`. */
  static memory(sink: Array<MetricsRecord>): Layer.Layer<MetricsLog> {
    return Layer.succeed(MetricsLog, { write: (record) => Effect.sync(() => void sink.push(record)) })
  }

  /**
   * Writes JSON lines to `path` (created with its directory), flushed line by line, closed with the
   * scope. Appends by default (a resumed run continues its log); `{ append: false }` starts afresh.
   */
  static jsonl(path: string, options: { readonly append?: boolean } = {}): Layer.Layer<MetricsLog, FileError> {
    return Layer.scoped(
      MetricsLog,
      Effect.gen(function* () {
        const fs = yield* Effect.promise(() => import("node:fs"))
        const pathModule = yield* Effect.promise(() => import("node:path"))
        const fd = yield* Effect.acquireRelease(
          Effect.try({
            try: () => {
              fs.mkdirSync(pathModule.dirname(path), { recursive: true })
              return fs.openSync(path, options.append === false ? "w" : "a")
            },
            catch: (error) => new FileError({ path, operation: "write", reason: String((error as Error).message ?? error) })
          }),
          (handle) => Effect.sync(() => fs.closeSync(handle))
        )
        return {
          // Synchronous appends: a crash loses at most the line being written.
          write: (record) =>
            Effect.try({
              try: () => void fs.writeSync(fd, `${JSON.stringify(record)}\n`),
              catch: (error) => new FileError({ path, operation: "write", reason: String((error as Error).message ?? error) })
            })
        }
      })
    )
  }
}

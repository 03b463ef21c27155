/**
 * The metrics log service: one JSON object per line (JSONL), one line per report, evaluation or
 * event, so runs can be plotted or compared afterwards. `jsonl(path)` appends to a file (on the
 * program's `FileSystem`) for the lifetime of its scope; `memory()` keeps records in an array (tests, in-process reports).
 */
import { FileSystem } from "@effect/platform"
import { Context, Effect, Layer } from "effect"
import type { FileError } from "./Errors.js"
import { dirName, toFileError } from "./Files.js"

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
  static jsonl(path: string, options: { readonly append?: boolean } = {}): Layer.Layer<MetricsLog, FileError, FileSystem.FileSystem> {
    return Layer.scoped(
      MetricsLog,
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const dir = dirName(path)
        yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(toFileError(dir, "mkdir")))
        const file = yield* fs.open(path, { flag: options.append === false ? "w" : "a" }).pipe(Effect.mapError(toFileError(path, "write")))
        const encoder = new TextEncoder()
        return {
          // One write per line, unbuffered: a crash loses at most the line being written.
          write: (record) => file.writeAll(encoder.encode(`${JSON.stringify(record)}\n`)).pipe(Effect.mapError(toFileError(path, "write")))
        }
      })
    )
  }
}

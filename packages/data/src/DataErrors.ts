/**
 * The data package's typed error: a dataset file whose content is unusable. It names the file and,
 * when the problem is one line, the 1-based line number, so the message points at what to fix.
 */
import { Data } from "effect"

/** A jsonl line that is not JSON or matches no MLX-LM shape, a record that cannot be tokenized, ... */
export class InvalidDataset extends Data.TaggedError("InvalidDataset")<{
  /** The file (or a label for in-memory records). */
  readonly path: string
  /** 1-based line number in the file, when one line is at fault. */
  readonly line?: number
  readonly reason: string
}> {
  override get message(): string {
    return `invalid dataset ${this.path}${this.line === undefined ? "" : `:${this.line}`}: ${this.reason}`
  }
}

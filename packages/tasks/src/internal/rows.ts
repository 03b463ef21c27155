/**
 * Reading rows of the official files with errors that name the file, the line and the field:
 * a malformed data file is a `FileError` ("cannot read <file>: line 12: 'label' ...").
 */
import { FileError } from "@peftkit/core"

export type Json = Record<string, unknown>

export const rowError = (file: string, line: number, reason: string): FileError =>
  new FileError({ path: file, operation: "read", reason: `line ${line}: ${reason}` })

/** Splits a text file into its non-empty lines with 1-based line numbers (CRLF tolerated). */
export const lines = (text: string): Array<{ readonly line: number; readonly text: string }> => {
  const out: Array<{ line: number; text: string }> = []
  const raw = text.split("\n")
  for (let i = 0; i < raw.length; i++) {
    const t = raw[i]!.endsWith("\r") ? raw[i]!.slice(0, -1) : raw[i]!
    if (t.trim() !== "") out.push({ line: i + 1, text: t })
  }
  return out
}

/** Parses every line of a jsonl file as a JSON object. */
export const jsonl = (text: string, file: string): Array<{ readonly line: number; readonly row: Json }> =>
  lines(text).map(({ line, text: t }) => {
    let value: unknown
    try {
      value = JSON.parse(t)
    } catch (error) {
      throw rowError(file, line, `not valid JSON (${error instanceof Error ? error.message : String(error)})`)
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw rowError(file, line, "expected a JSON object")
    return { line, row: value as Json }
  })

/** Typed field access that fails with the file, line and field name. */
export class Row {
  constructor(readonly file: string, readonly line: number, readonly row: Json, readonly path = "") {}

  private name(key: string): string {
    return this.path === "" ? key : `${this.path}.${key}`
  }

  private fail(key: string, expected: string, value: unknown): never {
    throw rowError(this.file, this.line, `'${this.name(key)}' must be ${expected}, got ${value === undefined ? "nothing" : JSON.stringify(value)}`)
  }

  string(key: string): string {
    const v = this.row[key]
    return typeof v === "string" ? v : this.fail(key, "a string", v)
  }

  integer(key: string): number {
    const v = this.row[key]
    return typeof v === "number" && Number.isInteger(v) ? v : this.fail(key, "an integer", v)
  }

  boolean(key: string): boolean {
    const v = this.row[key]
    return typeof v === "boolean" ? v : this.fail(key, "true or false", v)
  }

  /** A label that is one of `values` (index returned); booleans and 0/1 integers are accepted for two values. */
  oneOf(key: string, values: ReadonlyArray<string>): number {
    const v = this.row[key]
    const i = typeof v === "string" ? values.indexOf(v) : -1
    return i >= 0 ? i : this.fail(key, `one of ${values.map((x) => JSON.stringify(x)).join(", ")}`, v)
  }

  /** 0/1 or false/true as 0/1. */
  binary(key: string): 0 | 1 {
    const v = this.row[key]
    if (v === true || v === 1) return 1
    if (v === false || v === 0) return 0
    return this.fail(key, "true/false or 0/1", v)
  }

  object(key: string): Row {
    const v = this.row[key]
    if (typeof v !== "object" || v === null || Array.isArray(v)) return this.fail(key, "an object", v)
    return new Row(this.file, this.line, v as Json, this.name(key))
  }

  array(key: string): Array<Row> {
    const v = this.row[key]
    if (!Array.isArray(v)) return this.fail(key, "an array", v)
    return v.map((item, i) => {
      if (typeof item !== "object" || item === null || Array.isArray(item)) return this.fail(`${key}[${i}]`, "an object", item)
      return new Row(this.file, this.line, item as Json, `${this.name(key)}[${i}]`)
    })
  }
}

/**
 * Config decoding with `effect/Schema`. Unknown keys are errors (a typo must not silently fall back
 * to a default), and every failure names the field, as a `ConfigError`.
 */
import { Effect, Either, ParseResult, Schema, SchemaAST } from "effect"
import { ConfigError } from "./Errors.js"

const parseOptions = { onExcessProperty: "error", errors: "first" } as const

/** The literals of a union made only of literals (an optional field's `undefined` aside), else undefined. */
const unionLiterals = (ast: SchemaAST.AST): ReadonlyArray<SchemaAST.LiteralValue> | undefined => {
  if (!SchemaAST.isUnion(ast)) return undefined
  const literals: Array<SchemaAST.LiteralValue> = []
  for (const member of ast.types) {
    if (SchemaAST.isLiteral(member)) literals.push(member.literal)
    else if (SchemaAST.isUnion(member)) {
      const nested = unionLiterals(member)
      if (nested === undefined) return undefined
      literals.push(...nested)
    } else if (!SchemaAST.isUndefinedKeyword(member)) return undefined
  }
  return literals.length > 0 ? literals : undefined
}

/**
 * The first failure (the one the ArrayFormatter reports) when it is a value outside a union of
 * literals: Schema's own message names only the union's first member (`Expected "constant"`), so
 * this one lists them all.
 */
const literalUnionMessage = (issue: ParseResult.ParseIssue): string | undefined => {
  switch (issue._tag) {
    case "Pointer":
    case "Transformation":
    case "Refinement":
      return literalUnionMessage(issue.issue)
    case "Composite": {
      const literals = unionLiterals(issue.ast)
      if (literals !== undefined) {
        if (issue.actual === undefined) return undefined
        const shown = (value: unknown) => (typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? String(value))
        return `expected one of ${literals.map(shown).join(", ")} (got ${shown(issue.actual)})`
      }
      const first = Array.isArray(issue.issues) ? issue.issues[0] : issue.issues
      return first === undefined ? undefined : literalUnionMessage(first as ParseResult.ParseIssue)
    }
    default:
      return undefined
  }
}

const toConfigError = (error: ParseResult.ParseError, prefix: string): ConfigError => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  const path = [prefix, ...(issue?.path ?? []).map(String)].filter((part) => part !== "").join(".")
  const reason = issue?._tag === "Unexpected" ? "unknown key" : (literalUnionMessage(error.issue) ?? issue?.message ?? "invalid value")
  return new ConfigError({ field: path, reason })
}

/** Decodes `input` with `schema`; failures are a `ConfigError` naming the field (prefixed by `prefix`). */
export const decodeConfig = <A, I>(schema: Schema.Schema<A, I>, input: unknown, prefix = ""): Effect.Effect<A, ConfigError> =>
  Schema.decodeUnknown(schema, parseOptions)(input).pipe(Effect.mapError((error) => toConfigError(error, prefix)))

/** Synchronous variant for constructors that sit inside plain code; throws `ConfigError`. */
export const decodeConfigSync = <A, I>(schema: Schema.Schema<A, I>, input: unknown, prefix = ""): A => {
  const result = Schema.decodeUnknownEither(schema, parseOptions)(input)
  if (Either.isLeft(result)) throw toConfigError(result.left, prefix)
  return result.right
}

/** A strictly positive integer (ranks, step counts). */
export const PositiveInt = Schema.Int.pipe(Schema.positive({ message: () => "must be a positive integer" }))
/** A non-negative integer. */
export const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative({ message: () => "must be a non-negative integer" }))
/** A finite number. */
export const FiniteNumber = Schema.Number.pipe(Schema.finite({ message: () => "must be a finite number" }))
/** A probability in [0, 1). */
export const Probability = Schema.Number.pipe(
  Schema.greaterThanOrEqualTo(0, { message: () => "must be in [0, 1)" }),
  Schema.lessThan(1, { message: () => "must be in [0, 1)" })
)

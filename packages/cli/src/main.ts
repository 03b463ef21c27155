#!/usr/bin/env node
/**
 * `peftkit`: fine-tune language models with LoRA and Chain of LoRA from a terminal.
 * One line of error and a non-zero exit code on failure; `--verbose` adds the full cause.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ConfigError, TrainingInterrupted } from "@peftkit/core"
import { Cause, Effect, Exit } from "effect"
import { realpathSync } from "node:fs"
import { pathToFileURL } from "node:url"
import { commands, usage } from "./Commands.js"
import { flagOf } from "./Flags.js"

/** The one-line message for a failure, in flag terms where it came from a flag. */
export const describeFailure = (cause: Cause.Cause<unknown>): { readonly message: string; readonly usageError: boolean } => {
  const failure = Cause.squash(cause)
  if (failure instanceof ConfigError) {
    // A command's own option ("train.rank") is a flag; other fields (a config file's) stay as they are.
    const where = /^(train|eval|generate|merge|export)\./.test(failure.field) || !failure.field.includes(".") ? flagOf(failure.field) : failure.field
    return { message: `${where}: ${failure.reason}`, usageError: true }
  }
  return { message: failure instanceof Error ? failure.message : String(failure), usageError: false }
}

export const run = async (argv: ReadonlyArray<string>, out: (text: string) => void = (t) => process.stdout.write(t)): Promise<number> => {
  const [name, ...rest] = argv
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    out(usage)
    return name === undefined ? 2 : 0
  }
  if (name === "--version") {
    out("peftkit 0.0.0\n")
    return 0
  }
  const command = commands[name]
  if (command === undefined) {
    process.stderr.write(`error: unknown command '${name}'. Run 'peftkit --help'.\n`)
    return 2
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    out(command.help)
    return 0
  }
  const exit = await Effect.runPromiseExit(command.run(rest).pipe(Effect.provide(NodeFileSystem.layer)))
  if (Exit.isSuccess(exit)) return 0
  const { message, usageError } = describeFailure(exit.cause)
  process.stderr.write(`error: ${message}\n`)
  if (rest.includes("--verbose")) process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
  // 128 + SIGINT, as shells report a run stopped by Ctrl-C (its checkpoint is written by then).
  if (Cause.squash(exit.cause) instanceof TrainingInterrupted) return 130
  return usageError ? 2 : 1
}

// Run only when this file is the program (through the `peftkit` bin link or directly), not when
// another program that happens to be called main.js imports the package.
const isEntry = (): boolean => {
  const entry = process.argv[1]
  if (entry === undefined) return false
  try {
    return pathToFileURL(realpathSync(entry)).href === import.meta.url
  } catch {
    return false
  }
}
if (isEntry()) process.exitCode = await run(process.argv.slice(2))

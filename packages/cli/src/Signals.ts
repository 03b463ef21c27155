/**
 * Ctrl-C (SIGINT) and SIGTERM during `train`: the first signal asks the training loop to stop after
 * the step in progress and write a checkpoint (it says so at once); a second one exits immediately.
 * The handlers are installed for the scope of the run only.
 */
import { Effect, type Scope } from "effect"

export interface StopSignal {
  /** True once a signal arrived. */
  readonly requested: () => boolean
}

export const stopOnSignals: Effect.Effect<StopSignal, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => {
    let requested = false
    const onSignal = (signal: NodeJS.Signals) => {
      if (requested) {
        process.stderr.write(`\n${signal} again: exiting now, without saving\n`)
        process.exit(130)
      }
      requested = true
      process.stderr.write(`\n${signal}: stopping after this step and writing a checkpoint (${signal} again to quit at once)\n`)
    }
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
    return { requested: () => requested, remove: () => void (process.off("SIGINT", onSignal), process.off("SIGTERM", onSignal)) }
  }),
  (handle) => Effect.sync(handle.remove)
)

/**
 * What a model exposes so adapters can be injected into it: its linear layers under their
 * Hugging Face module names.
 */
import type { Linear } from "./Linear.js"

export interface AdaptableModel {
  /** Every linear layer, in module order, each carrying its full module name. */
  linears(): ReadonlyArray<Linear>
  /** Output-head layer names, which `"all-linear"` leaves out (PEFT excludes the LM head). */
  readonly outputHeads?: ReadonlyArray<string>
}

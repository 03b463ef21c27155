/**
 * What a model exposes so adapters can be injected into it: its linear layers under their
 * Hugging Face module names.
 */
import type { Linear } from "./Linear.js"

/**
 * Where a module's output rows sit in Hugging Face / PEFT files, when the model keeps them in
 * another order: `order[i]` is the model row that file row `i` holds (a permutation of
 * 0..outFeatures-1), or undefined when the module's rows are already in file order. A llama2.c model
 * keeps q_proj/k_proj rows in its interleaved RoPE order, while HF checkpoints (and so PEFT adapters
 * for them) use the half-split order.
 */
export type PeftRowOrder = (moduleName: string) => ReadonlyArray<number> | undefined

export interface AdaptableModel {
  /** Every linear layer, in module order, each carrying its full module name. */
  linears(): ReadonlyArray<Linear>
  /** Output-head layer names, which `"all-linear"` leaves out (PEFT excludes the LM head). */
  readonly outputHeads?: ReadonlyArray<string>
  /**
   * Set when some modules' output rows are stored in a different order than in the model's Hugging
   * Face form. Core's PEFT writer permutes adapter tensors indexed by output row (`lora_B`, DoRA's
   * magnitude, ...) into file order on save and back on load, so variants never see it.
   */
  readonly peftRowOrder?: PeftRowOrder | undefined
}

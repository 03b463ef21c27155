/**
 * @peftkit/conformance: the one suite every backend runs (LoRA forward/backward, transformer blocks,
 * an optimizer step, a COLA knot, a short training run), compared with the CPU reference.
 */
export * from "./Cases.js"
export * from "./Runner.js"

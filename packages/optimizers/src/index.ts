/**
 * @peftkit/optimizers: AdamW, Adam, SGD and Lion on tfjs variables, implementing the core
 * `Optimizer` contract (parameter groups, reset at COLA knots, ReLoRA pruning, state save/load).
 */
export * from "./Adam.js"
export * from "./AdamW.js"
export * from "./Lion.js"
export * from "./OptimizerConfig.js"
export * from "./SGD.js"
export * from "./SlotOptimizer.js"

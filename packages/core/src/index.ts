/**
 * @peftkit/core: backend-agnostic interfaces of peftkit.
 */
import "./internal/registerGradients.js"

export * from "./AdaptableModel.js"
export * from "./Adapter.js"
export * from "./AdapterSet.js"
export * from "./Config.js"
export * from "./Errors.js"
export * from "./Linear.js"
export * from "./MetricsLog.js"
export * from "./Optimizer.js"
export * from "./Parameter.js"
export * from "./Progress.js"
export * from "./Schedule.js"
export * from "./Seed.js"
export * from "./TargetModules.js"

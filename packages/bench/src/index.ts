/**
 * @peftkit/bench (private): the pieces of `pnpm bench`, exported for its tests and for anyone
 * reusing the measurements. The command itself is `main.ts`.
 */
export * from "./BackendChild.js"
export * from "./Flops.js"
export * from "./Machine.js"
export * from "./MatmulCeiling.js"
export * from "./Median.js"
export * from "./Report.js"
export * from "./Results.js"
export * from "./Shapes.js"
export * from "./TfjsRun.js"
export * from "./TorchReference.js"

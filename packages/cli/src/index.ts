/**
 * @peftkit/cli: the `peftkit` command line, also usable as a library (run the commands in-process).
 */
export * from "./Commands.js"
export { runEval, type EvalResult } from "./commands/Eval.js"
export { readAsChainLora, runExport } from "./commands/Export.js"
export { runGenerate } from "./commands/Generate.js"
export { runMerge } from "./commands/Merge.js"
export { decodeTrainOptions, loadTrainingData, meanLoss, runTrain } from "./commands/Train.js"
export * from "./Flags.js"
export * from "./InstalledBackends.js"
export * from "./LossReport.js"
export { describeFailure, run } from "./main.js"
export * from "./TrainOptions.js"

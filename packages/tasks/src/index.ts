/**
 * @peftkit/tasks: the COLA paper's tasks (SST-2, RTE, CB, BoolQ, WiC, WSC, MultiRC) with MeZO's
 * prompts, verbalizers and sampling; training examples with the loss on the label word only;
 * evaluation by the label words' log-likelihood; accuracy, macro-F1, F1a and exact match.
 */
export * from "./BoolQ.js"
export * from "./Cb.js"
export * from "./Evaluate.js"
export * from "./Metrics.js"
export * from "./MultiRc.js"
export * from "./NumpyRandom.js"
export * from "./Prompting.js"
export * from "./Rte.js"
export * from "./Sampling.js"
export * from "./Scoring.js"
export * from "./Sst2.js"
export * from "./Task.js"
export * from "./TaskData.js"
export * from "./TaskExample.js"
export * from "./Tasks.js"
export * from "./Wic.js"
export * from "./Wsc.js"

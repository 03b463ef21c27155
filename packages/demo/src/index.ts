/**
 * What other workspace tools reuse from the demo: the built-in model (pretrained from the repository
 * alone) and its second task, the table of animal facts. The playground ships both with its page.
 */
export { type BuiltinRecipe, defaultRecipe, ensureBuiltinModel } from "./lm/BuiltinModel.js"
export { DEMO_FACTS_SEED, factQuestions, factTable, type QaExample } from "./lm/Corpus.js"

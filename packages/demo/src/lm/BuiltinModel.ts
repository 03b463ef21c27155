/**
 * The language model built into the repository: a tiny Llama (RMSNorm, RoPE, grouped-query
 * attention, SwiGLU) pretrained from scratch on the generated stories of `Corpus.ts`, with a BPE
 * tokenizer trained by `BpeTrainer.ts`, saved as a real Hugging Face directory (config.json,
 * model.safetensors, tokenizer.json, tokenizer_config.json). Everything comes from the seed: no
 * downloads. The directory is reused while its recipe (`builtin.json`) is unchanged.
 */
import { makeSchedule, MetricsLog, ProgressReporter, train, writeFileAtomic } from "@peftkit/core"
import { type Batch, makeBatcher, tokenizeRecords } from "@peftkit/data"
import { causalLmLoss, Llama, type LlamaConfig, saveHfModel } from "@peftkit/models"
import { adamw } from "@peftkit/optimizers"
import { readHfTokenizer } from "@peftkit/tokenizers"
import { Effect } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { tokenizerConfigJson, tokenizerJson, trainBpe } from "./BpeTrainer.js"
import { factQuestions, factTable, stories } from "./Corpus.js"

export interface BuiltinRecipe {
  readonly seed: number
  readonly stories: number
  readonly vocabSize: number
  readonly steps: number
  readonly batchSize: number
  readonly hiddenSize: number
  readonly layers: number
  /** Bump when the corpus, tokenizer or training code changes meaning. */
  readonly version: number
}

export const defaultRecipe: BuiltinRecipe = { seed: 7, stories: 6000, vocabSize: 384, steps: 400, batchSize: 32, hiddenSize: 64, layers: 2, version: 1 }

const RECIPE_FILE = "builtin.json"

export const llamaConfig = (recipe: BuiltinRecipe, vocabSize: number): LlamaConfig => ({
  modelType: "llama",
  vocabSize,
  hiddenSize: recipe.hiddenSize,
  intermediateSize: Math.round((recipe.hiddenSize * 8) / 3 / 4) * 4,
  numHiddenLayers: recipe.layers,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: recipe.hiddenSize / 4,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxPositionEmbeddings: 128,
  tieWordEmbeddings: true,
  attentionBias: false,
  ropeLayout: "half",
  bosTokenId: 1,
  eosTokenId: [2]
})

/** Builds (or reuses) the built-in model in `dir`; returns what was done and how long pretraining took. */
export const ensureBuiltinModel = (dir: string, recipe: BuiltinRecipe = defaultRecipe) =>
  Effect.gen(function* () {
    const recipePath = join(dir, RECIPE_FILE)
    if (existsSync(recipePath) && existsSync(join(dir, "model.safetensors")) && readFileSync(recipePath, "utf8") === JSON.stringify(recipe)) {
      return { built: false, seconds: 0, finalLoss: Number.NaN }
    }
    const texts = stories(recipe.stories, recipe.seed)
    // The tokenizer also sees task B's text, so its words have tokens (their embeddings stay untrained).
    const qa = factQuestions(factTable(recipe.seed + 1))
    const bpe = trainBpe([...texts, ...qa.train.map((e) => e.prompt + e.completion)], recipe.vocabSize)
    yield* writeFileAtomic(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson(bpe)))
    yield* writeFileAtomic(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfigJson, null, 2))
    const tokenizer = yield* readHfTokenizer(dir)

    const config = llamaConfig(recipe, bpe.vocab.size)
    const model = Llama.init(config, recipe.seed)
    model.setTrainable(true)
    const { examples } = yield* tokenizeRecords(texts.map((text) => ({ text })), tokenizer, { maxSeqLength: 64 })
    const batcher = makeBatcher(examples, { batchSize: recipe.batchSize, padTokenId: tokenizer.padTokenId, seed: recipe.seed })
    const optimizer = adamw([{ params: model.parameters() }], { weightDecay: 0.01 })
    const result = yield* train({
      label: "pretrain",
      loss: (batch: Batch, training) => causalLmLoss(model.forward(batch.inputIds, { attentionMask: batch.attentionMask, training }), batch.inputIds, batch.lossMask),
      batch: (step) => batcher.batchAt(step),
      tokensPerBatch: (step) => batcher.tokensAt(step),
      optimizer,
      steps: recipe.steps,
      learningRate: makeSchedule({ kind: "cosine", peak: 1e-2, totalSteps: recipe.steps, warmupSteps: Math.min(50, recipe.steps), minRatio: 0.05 }),
      clipNorm: 1,
      reportEvery: 200,
      profileEvery: 0
    }).pipe(Effect.provide(ProgressReporter.terminal()), Effect.provide(MetricsLog.none))
    optimizer.dispose()
    const tensors = model.stateDict()
    yield* saveHfModel(dir, config, tensors)
    Object.values(tensors).forEach((t) => t.dispose())
    model.dispose()
    yield* writeFileAtomic(recipePath, JSON.stringify(recipe))
    const last = result.trainLoss.slice(-20)
    return { built: true, seconds: result.seconds, finalLoss: last.reduce((s, e) => s + e.loss, 0) / last.length }
  })

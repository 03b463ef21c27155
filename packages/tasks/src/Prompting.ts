/**
 * From an example to token ids, the way MeZO does it (princeton-nlp/MeZO, large_models/utils.py
 * `encode_prompt`, zero-shot/fine-tuning path without demonstrations):
 *
 *     prompt   = template.encode(sample).strip(' ')
 *     full     = ("\n\n" + template.verbalize(sample, cand).strip(' ')).lstrip().strip(' ')
 *     option_len = len(tokenizer.encode(full)) - len(tokenizer.encode(prompt))
 *     input_ids  = tokenizer.encode(full)            # the option is its LAST option_len tokens
 *
 * So the label word's tokens are whatever the tokenizer makes of the full text's tail: with a
 * GPT-2/OPT BPE " great" is one token carrying its space; with a character or SentencePiece
 * tokenizer the separating space may be a token of its own, and then it is part of the option (as
 * in MeZO). The full text is tokenized once, never as prompt ids + answer ids, so the ids are
 * those the model would see for that text. Both encodings add special tokens (BOS), which cancel
 * in the difference.
 *
 * Truncation (`maxLength`) follows MeZO too: a longer sequence keeps its first token when it is
 * BOS and the last `maxLength - 1` tokens (the answer sits at the end), else the last `maxLength`.
 */
import type { TokenizedExample } from "@peftkit/data"
import type { Tokenizer } from "@peftkit/tokenizers"
import { lstripWhitespace, stripSpaces } from "./internal/python.js"
import type { Task } from "./Task.js"
import type { TaskExample } from "./TaskExample.js"

export interface PromptOptions {
  /** Longest sequence the model takes; longer ones are truncated from the left, keeping BOS. */
  readonly maxLength?: number
}

/** One candidate answer, tokenized: the full sequence and how many of its last tokens are the answer. */
export interface EncodedCandidate {
  readonly inputIds: ReadonlyArray<number>
  /** The label word's tokens are `inputIds.slice(-optionLength)`; at least 1. */
  readonly optionLength: number
}

/** The prompt text MeZO tokenizes to measure the option: `template.encode(sample).strip(' ')`. */
export const promptText = <F>(task: Task<F>, fields: F): string => stripSpaces(task.prompt(fields))

/** The full text of candidate `candidate` as MeZO tokenizes it (no demonstrations). */
export const candidateText = <F>(task: Task<F>, fields: F, candidate: number): string =>
  // ("" + "\n\n" + eval_prompt).lstrip().strip(' '): the leading separator goes, and with it any
  // leading whitespace of the prompt; trailing spaces were stripped already.
  stripSpaces(lstripWhitespace(stripSpaces(task.verbalize(fields, candidate))))

const truncate = (ids: ReadonlyArray<number>, tokenizer: Tokenizer, maxLength: number | undefined): ReadonlyArray<number> => {
  if (maxLength === undefined || ids.length <= maxLength) return ids
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new RangeError(`maxLength must be an integer >= 2, got ${maxLength}`)
  const bos = tokenizer.bosTokenId
  return bos !== undefined && ids[0] === bos ? [bos, ...ids.slice(ids.length - (maxLength - 1))] : ids.slice(ids.length - maxLength)
}

const encodeWithPromptLength = <F>(
  task: Task<F>,
  fields: F,
  candidate: number,
  tokenizer: Tokenizer,
  promptLength: number,
  options: PromptOptions | undefined
): EncodedCandidate => {
  if (!Number.isInteger(candidate) || candidate < 0 || candidate >= task.labelWords.length) {
    throw new RangeError(`${task.name} has candidates 0..${task.labelWords.length - 1}, got ${candidate}`)
  }
  const ids = tokenizer.encode(candidateText(task, fields, candidate))
  const inputIds = truncate(ids, tokenizer, options?.maxLength)
  if (inputIds.length < 2) throw new RangeError(`${task.name}: candidate ${candidate} encodes to ${inputIds.length} token(s); scoring it needs a token before the answer`)
  // MeZO's option_len. A BPE merge across the prompt/answer boundary could make it 0 (Python would
  // then score the whole sequence), so at least the last token is the answer; the first token is
  // never one (nothing predicts it).
  const optionLength = Math.min(inputIds.length - 1, Math.max(1, ids.length - promptLength))
  return { inputIds, optionLength }
}

/** Candidate `candidate` of an example, tokenized as MeZO does. */
export const encodeCandidate = <F>(task: Task<F>, fields: F, candidate: number, tokenizer: Tokenizer, options?: PromptOptions): EncodedCandidate =>
  encodeWithPromptLength(task, fields, candidate, tokenizer, tokenizer.encode(promptText(task, fields)).length, options)

/** Every candidate of an example (one per label word, in MeZO's order), tokenized; the prompt is encoded once. */
export const encodeCandidates = <F>(task: Task<F>, example: TaskExample<F>, tokenizer: Tokenizer, options?: PromptOptions): ReadonlyArray<EncodedCandidate> => {
  const promptLength = tokenizer.encode(promptText(task, example.fields)).length
  return task.labelWords.map((_, c) => encodeWithPromptLength(task, example.fields, c, tokenizer, promptLength, options))
}

/**
 * A training example: the prompt followed by the gold label word, with `lossMask` 1 on the label
 * word's tokens only (MeZO's `--only_train_option`; DESIGN.md's "LM loss on the label word").
 */
export const encodeTrainingExample = <F>(task: Task<F>, example: TaskExample<F>, tokenizer: Tokenizer, options?: PromptOptions): TokenizedExample => {
  const { inputIds, optionLength } = encodeCandidate(task, example.fields, example.label, tokenizer, options)
  const lossMask = inputIds.map((_, i) => (i >= inputIds.length - optionLength ? 1 : 0))
  return { inputIds, lossMask }
}

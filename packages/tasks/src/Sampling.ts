/**
 * MeZO's sampling protocol, reproduced exactly (princeton-nlp/MeZO, large_models/tasks.py
 * `sample_train_sets` / `sample_subset`, and run.py `main`):
 *
 *   pool  = np.random.permutation(len(train))[:numTrain + numDev]  (seed = train_set_seed)
 *   dev   = pool[-numDev:]        # "dev set is included at the end of train set"
 *   train = pool[:-numDev]
 *   test  = np.random.permutation(len(validation))[:numEval]       (same seed)
 *
 * with the permutation of `NumpyRandom.ts`, so for the same files, order and seed the ids are the
 * ones MeZO's code picks. Where a pool is smaller than asked, everything is taken: the test set is
 * the whole (shuffled) validation pool, and when numTrain + numDev exceeds the train pool, dev
 * still takes the last numDev examples and train gets what is left before them (MeZO's Python
 * slicing: WSC's 554 examples give 54 train + 500 dev; CB's 250 give 150 + 100 with DEV=100).
 * Train, dev and test never share an example.
 */
import { ConfigError } from "@peftkit/core"
import { numpyPermutation } from "./NumpyRandom.js"
import type { SamplingSizes } from "./Task.js"
import type { TaskData } from "./TaskData.js"
import type { TaskExample } from "./TaskExample.js"

export interface SampleOptions extends Partial<SamplingSizes> {
  /** MeZO's `train_set_seed`, an integer in [0, 2^32 - 1]. */
  readonly seed: number
}

export interface Splits<T> {
  readonly train: ReadonlyArray<T>
  readonly dev: ReadonlyArray<T>
  readonly test: ReadonlyArray<T>
}

const checkCount = (field: string, value: number): void => {
  if (!Number.isInteger(value) || value < 0) throw new ConfigError({ field, reason: `must be a non-negative integer, got ${value}` })
}

/**
 * Samples train/dev from `trainPool` and test from `testPool` by MeZO's rule (see the module
 * comment). Throws `ConfigError` for a bad seed or size.
 */
export const sampleSplits = <T>(
  trainPool: ReadonlyArray<T>,
  testPool: ReadonlyArray<T>,
  options: SamplingSizes & { readonly seed: number }
): Splits<T> => {
  const { seed, numTrain, numDev, numEval } = options
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new ConfigError({ field: "seed", reason: `must be an integer between 0 and 2**32 - 1, got ${seed}` })
  checkCount("numTrain", numTrain)
  checkCount("numDev", numDev)
  checkCount("numEval", numEval)
  const pool = numpyPermutation(trainPool.length, seed).slice(0, numTrain + numDev).map((i) => trainPool[i]!)
  // Python's pool[-numDev:] and pool[:-numDev]; numDev = 0 means no dev set (MeZO's num_dev=None).
  const cut = Math.max(0, pool.length - numDev)
  const test = numpyPermutation(testPool.length, seed).slice(0, numEval).map((i) => testPool[i]!)
  return { train: pool.slice(0, cut), dev: pool.slice(cut), test }
}

/** `sampleSplits` on a loaded task with the task's default sizes (MeZO's) unless overridden. */
export const sampleTask = <F>(data: TaskData<F>, options: SampleOptions): Splits<TaskExample<F>> =>
  sampleSplits(data.trainPool, data.testPool, { ...data.task.sampling, ...definedOnly(options) })

const definedOnly = (options: SampleOptions): SampleOptions => {
  const out: { seed: number; numTrain?: number; numDev?: number; numEval?: number } = { seed: options.seed }
  if (options.numTrain !== undefined) out.numTrain = options.numTrain
  if (options.numDev !== undefined) out.numDev = options.numDev
  if (options.numEval !== undefined) out.numEval = options.numEval
  return out
}


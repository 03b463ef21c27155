/**
 * One labelled example of a task, before prompting: the raw fields MeZO's template reads, the gold
 * candidate, and a stable id.
 */

/** Which official file an example came from. */
export type SplitName = "train" | "validation"

export interface TaskExample<F> {
  /**
   * Unique within a task: `${split}/${idx}` with the official `idx` (SST-2: the 0-based row of the
   * TSV, which is Hugging Face's `idx`); MultiRC: `${split}/${paragraph}/${question}/${answer}`.
   */
  readonly id: string
  /** The gold candidate: an index into the task's `labelWords` (MeZO's `correct_candidate`). */
  readonly label: number
  /** The fields the prompt template reads. */
  readonly fields: F
  /** MultiRC only: the question this answer belongs to (`${split}/${paragraph}/${question}`), for exact match. */
  readonly group?: string
}

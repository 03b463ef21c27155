/**
 * The run kept in the browser so a reload resumes it: its settings, where its model and data came
 * from (dropped files are kept as `File` objects, which IndexedDB stores by reference to the bytes),
 * and its newest checkpoint's files. One run at a time; a finished run is removed. `idb-keyval`: a
 * 600-byte, well-kept promise wrapper over one IndexedDB object store, all this needs.
 */
import { createStore, del, get, set } from "idb-keyval"
import type { DataSource, ModelSource, ProgressPoint, SavedRunInfo, TrainSettings } from "../protocol.js"

export interface SavedRun {
  readonly settings: TrainSettings
  readonly model: ModelSource
  readonly modelName: string
  readonly data: DataSource
  readonly dataName: string
  readonly step: number
  readonly checkpoint: Readonly<Record<string, Uint8Array>>
  readonly history: ReadonlyArray<ProgressPoint>
  readonly savedAt: string
}

const store = () => createStore("peftkit-playground", "runs")
const KEY = "current"

export const RunStore = {
  save: (run: SavedRun): Promise<void> => set(KEY, run, store()),
  load: (): Promise<SavedRun | undefined> => get<SavedRun>(KEY, store()).catch(() => undefined),
  clear: (): Promise<void> => del(KEY, store()),
  info: (run: SavedRun): SavedRunInfo => ({
    step: run.step,
    totalSteps: run.settings.steps,
    model: run.modelName,
    data: run.dataName,
    method: `${run.settings.method} / ${run.settings.variant}`,
    savedAt: run.savedAt
  })
} as const

/**
 * The seven tasks of the COLA paper (the MeZO suite), and lookup by name.
 */
import { ConfigError } from "@peftkit/core"
import { boolq } from "./BoolQ.js"
import { cb } from "./Cb.js"
import { multirc } from "./MultiRc.js"
import { rte } from "./Rte.js"
import { sst2 } from "./Sst2.js"
import type { Task } from "./Task.js"
import { wic } from "./Wic.js"
import { wsc } from "./Wsc.js"

/** Every task, in the order of the COLA paper's tables. */
export const allTasks: ReadonlyArray<Task<any>> = [sst2, wsc, cb, wic, boolq, multirc, rte]

const key = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, "")

/**
 * Finds a task by its dataset name or MeZO's `--task_name`, ignoring case and punctuation
 * ("SST-2", "sst2", "WiC", "WIC", "multirc"); an unknown name is a `ConfigError` on `task`
 * listing the known ones.
 */
export const taskByName = (name: string): Task<any> => {
  const found = allTasks.find((t) => key(t.name) === key(name) || key(t.mezoName) === key(name))
  if (found === undefined) throw new ConfigError({ field: "task", reason: `unknown task ${JSON.stringify(name)}; known: ${allTasks.map((t) => t.name).join(", ")}` })
  return found
}

/**
 * MeZO's sampling protocol: synthetic pools for the rules, the real files (shared data) for
 * sizes, determinism, disjointness and the exact ids MeZO's code picks (computed with numpy 2.4.6
 * from the same files: np.random.seed(s); np.random.permutation(len(pool))[:num]).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { allTasks, boolq, boolqInTrainPool, cb, fnv1a32, loadTask, multirc, rte, sampleSplits, sampleTask, sst2, wic, wsc } from "../src/index.js"
import type { Task, TaskData } from "../src/index.js"
import { needSharedData } from "./helpers.js"

const range = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}${i}`)
const load = <F>(task: Task<F>, dir: string): Promise<TaskData<F>> => Effect.runPromise(Effect.provide(loadTask(task, dir), NodeFileSystem.layer))
const ids = (xs: ReadonlyArray<{ readonly id: string }>) => xs.map((x) => x.id)

describe("sampleSplits (MeZO's rule)", () => {
  it("train = first numTrain of the seeded permutation, dev = the next numDev, test = permutation of the test pool", () => {
    const s = sampleSplits(range(10, "t"), range(10, "v"), { seed: 0, numTrain: 4, numDev: 3, numEval: 5 })
    // numpy: seed 0, permutation(10) = [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]
    expect(s).toEqual({ train: ["t2", "t8", "t4", "t9"], dev: ["t1", "t6", "t7"], test: ["v2", "v8", "v4", "v9", "v1"] })
  })

  it("a pool smaller than numTrain + numDev: dev keeps the LAST numDev, train gets the rest (Python slicing), test takes all", () => {
    const s = sampleSplits(range(10, "t"), range(3, "v"), { seed: 0, numTrain: 8, numDev: 4, numEval: 1000 })
    expect(s.train).toEqual(["t2", "t8", "t4", "t9", "t1", "t6"])
    expect(s.dev).toEqual(["t7", "t3", "t0", "t5"])
    expect([...s.test].sort()).toEqual(["v0", "v1", "v2"])
    const tiny = sampleSplits(range(3, "t"), [], { seed: 0, numTrain: 8, numDev: 4, numEval: 1 })
    expect(tiny.train).toEqual([])
    expect(tiny.dev).toHaveLength(3)
    expect(tiny.test).toEqual([])
    expect(sampleSplits(range(10, "t"), [], { seed: 0, numTrain: 3, numDev: 0, numEval: 0 })).toEqual({ train: ["t2", "t8", "t4"], dev: [], test: [] })
  })

  it("rejects bad seeds and sizes with a ConfigError naming the field", () => {
    expect(() => sampleSplits([], [], { seed: -1, numTrain: 1, numDev: 1, numEval: 1 })).toThrow(expect.objectContaining({ _tag: "ConfigError", field: "seed" }))
    expect(() => sampleSplits([], [], { seed: 0, numTrain: 1.5, numDev: 1, numEval: 1 })).toThrow(expect.objectContaining({ _tag: "ConfigError", field: "numTrain" }))
    expect(() => sampleSplits([], [], { seed: 0, numTrain: 1, numDev: -2, numEval: 1 })).toThrow(expect.objectContaining({ field: "numDev" }))
  })

  it("the BoolQ pool rule is FNV-1a-32 of the title, 55% to train", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5)
    expect(fnv1a32("a")).toBe(0xe40c292c)
    expect(fnv1a32("foobar")).toBe(0xbf9cf968)
    const title = "American entry into Canada by land"
    expect(boolqInTrainPool(`${title} -- anything`)).toBe(fnv1a32(title) % 100 < 55)
    expect(boolqInTrainPool(`${title} -- a`)).toBe(boolqInTrainPool(`${title} -- b`))
  })
})

describe("the real files (shared data)", () => {
  it("loads every task's pools with the documented sizes (shared data)", async (ctx) => {
    const dir = needSharedData(ctx)
    const sizes: Record<string, [number, number]> = {}
    for (const task of allTasks) {
      const data = await load(task, dir)
      sizes[task.name] = [data.trainPool.length, data.testPool.length]
      expect(new Set(ids(data.trainPool)).size).toBe(data.trainPool.length)
      expect(new Set(ids(data.testPool)).size).toBe(data.testPool.length)
    }
    expect(sizes).toEqual({
      "SST-2": [67349, 872],
      WSC: [554, 104],
      CB: [250, 56],
      WiC: [5428, 638],
      BoolQ: [1797, 1473], // both halves of val.jsonl (3270 rows)
      MultiRC: [27243, 4848], // one example per answer
      RTE: [2490, 277]
    })
  })

  it("BoolQ's train and test pools are disjoint, cover val.jsonl, and share no passage title (shared data)", async (ctx) => {
    const data = await load(boolq, needSharedData(ctx))
    const title = (p: string) => p.slice(0, p.indexOf(" -- "))
    const trainIds = new Set(ids(data.trainPool))
    expect(data.testPool.some((e) => trainIds.has(e.id))).toBe(false)
    expect(trainIds.size + data.testPool.length).toBe(3270)
    const trainTitles = new Set(data.trainPool.map((e) => title(e.fields.passage)))
    expect(data.testPool.some((e) => trainTitles.has(title(e.fields.passage)))).toBe(false)
  })

  it("sampling is deterministic by seed, seeds differ, splits are disjoint, sizes are MeZO's (shared data)", async (ctx) => {
    const dir = needSharedData(ctx)
    const expected: Record<string, [number, number, number]> = {
      "SST-2": [1000, 500, 872],
      WSC: [54, 500, 104], // 554 < 1000 + 500: dev keeps the last 500 (MeZO's slicing)
      CB: [150, 100, 56], // MeZO's finetune.sh: DEV=100 for CB
      WiC: [1000, 500, 638],
      BoolQ: [1000, 500, 1000],
      MultiRC: [1000, 500, 1000],
      RTE: [1000, 500, 277]
    }
    for (const task of allTasks) {
      const data = await load(task, dir)
      const a = sampleTask(data, { seed: 0 })
      const b = sampleTask(data, { seed: 0 })
      const c = sampleTask(data, { seed: 1 })
      expect([a.train.length, a.dev.length, a.test.length], task.name).toEqual(expected[task.name])
      expect(ids(b.train)).toEqual(ids(a.train))
      expect(ids(b.dev)).toEqual(ids(a.dev))
      expect(ids(b.test)).toEqual(ids(a.test))
      expect(ids(c.train), task.name).not.toEqual(ids(a.train))
      expect(ids(c.test), task.name).not.toEqual(ids(a.test))
      const all = [...ids(a.train), ...ids(a.dev), ...ids(a.test)]
      expect(new Set(all).size, task.name).toBe(all.length)
    }
  })

  it("picks exactly the examples MeZO's numpy sampling picks (shared data)", async (ctx) => {
    const dir = needSharedData(ctx)
    const head = async <F>(task: Task<F>, seed: number) => {
      const s = sampleTask(await load(task, dir), { seed })
      return [ids(s.train.slice(0, 3)), ids(s.dev.slice(0, 3)), ids(s.test.slice(0, 3))]
    }
    expect(await head(sst2, 0)).toEqual([["train/43787", "train/16159", "train/59015"], ["train/2307", "train/42285", "train/56182"], ["validation/372", "validation/676", "validation/548"]])
    expect(await head(sst2, 1)).toEqual([["train/54735", "train/42630", "train/4203"], ["train/8208", "train/6268", "train/24647"], ["validation/523", "validation/731", "validation/180"]])
    expect(await head(rte, 0)).toEqual([["train/2325", "train/1450", "train/1047"], ["train/189", "train/505", "train/1893"], ["validation/218", "validation/225", "validation/190"]])
    expect(await head(cb, 0)).toEqual([["train/225", "train/122", "train/92"], ["train/85", "train/247", "train/141"], ["validation/45", "validation/33", "validation/40"]])
    expect(await head(wic, 0)).toEqual([["train/2708", "train/1625", "train/3158"], ["train/4527", "train/1595", "train/269"], ["validation/458", "validation/530", "validation/517"]])
    expect(await head(wsc, 0)).toEqual([["train/85", "train/132", "train/96"], ["train/506", "train/229", "train/449"], ["validation/26", "validation/61", "validation/2"]])
    expect(await head(multirc, 0)).toEqual([
      ["train/49/589/3085", "train/122/1419/7448", "train/198/2224/11614"],
      ["train/166/1836/9578", "train/403/4577/24183", "train/55/660/3474"],
      ["validation/9/93/415", "validation/17/173/910", "validation/46/536/2740"]
    ])
  })

  it("sizes can be overridden per call (shared data)", async (ctx) => {
    const data = await load(wsc, needSharedData(ctx))
    const s = sampleTask(data, { seed: 0, numDev: 100 })
    expect([s.train.length, s.dev.length, s.test.length]).toEqual([454, 100, 104])
  })
})

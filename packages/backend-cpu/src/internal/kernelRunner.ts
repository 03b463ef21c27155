/**
 * How peftkit's own kernels run: an instance's entry points over a range of independent blocks, on
 * one thread (any runtime) or on worker threads sharing the instance's memory (Node,
 * `kernelThreads.ts`). Callers lay operands out in `memory` past `heapBase` (`KernelArena`).
 */
import { decodeBase64 } from "./decodeBase64.js"
import { isNode } from "./isNode.js"

export interface KernelRunner<Entry extends string> {
  readonly memory: WebAssembly.Memory
  readonly heapBase: number
  readonly threads: number
  /** `argsFor(thread, start, end)`: the entry's arguments for one thread's block range; at most `most` threads. */
  run(entry: Entry, argsFor: (thread: number, start: number, end: number) => Array<number>, blocks: number, most: number): void
}

/** The single-thread build (its own memory), on the calling thread. */
export const singleThreadRunner = async <Entry extends string>(base64: string): Promise<KernelRunner<Entry>> => {
  const source = (await WebAssembly.instantiate(decodeBase64(base64) as BufferSource, {})) as unknown as WebAssembly.WebAssemblyInstantiatedSource
  const exports = source.instance.exports as unknown as Record<string, (...args: Array<number>) => number> & { memory: WebAssembly.Memory }
  return {
    memory: exports.memory,
    heapBase: exports["heapBase"]!(),
    threads: 1,
    run: (entry, argsFor, blocks) => void exports[entry]!(...argsFor(0, 0, blocks))
  }
}

/**
 * In Node: the shared-memory build on `threads` threads (default: one per core); undefined for one
 * thread, outside Node, or where that fails.
 */
export const threadedRunner = async <Entry extends string>(sharedBase64: string, threads: number | undefined, label: string): Promise<KernelRunner<Entry> | undefined> => {
  if (!isNode || (threads !== undefined && threads < 2) || typeof SharedArrayBuffer === "undefined") return undefined
  const path = "./kernelThreads.js"
  try {
    const { startKernelThreads } = (await import(/* @vite-ignore */ path)) as typeof import("./kernelThreads.js")
    return await startKernelThreads<Entry>(decodeBase64(sharedBase64), threads, label)
  } catch {
    return undefined
  }
}

// Targets that misbehave on purpose, to show the harness catches each kind of failure.
import fc from "fast-check"
import { runFuzzTargets } from "./worker.js"

let keep: Array<Uint8Array> = []
void runFuzzTargets({
  fine: { arbitrary: fc.nat(10), run: (n) => (n % 2 === 0 ? { ok: true } : { ok: false, tag: "Typed" }), typed: ["Typed"] },
  hangs: {
    arbitrary: fc.nat(10),
    run: (n) => {
      if (n === 7) for (;;);
      return { ok: true }
    },
    typed: []
  },
  throws: { arbitrary: fc.nat(10), run: (n) => (n === 5 ? JSON.parse("{") : { ok: true }), typed: [] },
  wrongTag: { arbitrary: fc.nat(10), run: () => ({ ok: false, tag: "Other" }), typed: ["Typed"] },
  holdsMemory: {
    arbitrary: fc.nat(10),
    run: () => {
      keep.push(new Uint8Array(64 * 2 ** 20))
      return { ok: true }
    },
    typed: []
  }
})
void keep
keep = keep

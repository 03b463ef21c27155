import { describe, expect, it } from "vitest"
import { ConfigError, selectTargets, targetMatcher } from "../src/index.js"

const names = [
  "model.embed_tokens",
  "model.layers.0.self_attn.q_proj",
  "model.layers.0.self_attn.v_proj",
  "model.layers.0.mlp.gate_proj",
  "model.layers.10.self_attn.q_proj",
  "model.layers.1.self_attn.xq_proj",
  "lm_head"
]

describe("target_modules (PEFT semantics)", () => {
  it("a list matches exact names or dotted suffixes, never substrings", () => {
    expect(selectTargets(names, ["q_proj", "v_proj"])).toEqual([
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.self_attn.v_proj",
      "model.layers.10.self_attn.q_proj"
    ])
    expect(selectTargets(names, ["self_attn.q_proj"])).toEqual(["model.layers.0.self_attn.q_proj", "model.layers.10.self_attn.q_proj"])
    expect(selectTargets(names, ["lm_head"])).toEqual(["lm_head"])
  })

  it("a string is a regular expression that must match the whole name", () => {
    expect(selectTargets(names, "model\\.layers\\.1\\d*\\.self_attn\\.(q|xq)_proj")).toEqual([
      "model.layers.10.self_attn.q_proj",
      "model.layers.1.self_attn.xq_proj"
    ])
    // A partial match is not a match (re.fullmatch).
    expect(targetMatcher("q_proj")("model.layers.0.self_attn.q_proj")).toBe(false)
    expect(targetMatcher(".*q_proj")("model.layers.0.self_attn.q_proj")).toBe(true)
  })

  it("all-linear selects everything except the output head", () => {
    expect(selectTargets(names, "all-linear", ["lm_head"])).toEqual(names.filter((n) => n !== "lm_head"))
  })

  it("no match, or a bad regex, is a ConfigError on targetModules", () => {
    expect(() => selectTargets(names, ["o_proj"])).toThrow(ConfigError)
    expect(() => selectTargets(names, "(")).toThrowError(/targetModules.*regular expression/)
  })
})

import { describe, expect, it } from "vitest"
import { gflopsPerSecond, loraStepFlops } from "../src/Flops.js"
import { stories260K, wide } from "../src/Shapes.js"

describe("loraStepFlops", () => {
  // d 4, 2 heads of 2 over 1 kv head, ffn 6, vocab 10, one layer; 1 x 3 tokens; rank 1 on q and v.
  const tiny = {
    config: { vocabSize: 10, hiddenSize: 4, intermediateSize: 6, numHiddenLayers: 1, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 2 },
    batch: 1,
    seqLen: 3,
    rank: 1,
    targetModules: ["q_proj", "v_proj"]
  }

  it("matches a hand count on a tiny config", () => {
    const flops = loraStepFlops(tiny)
    // q 4x4 + k 2x4 + v 2x4 + o 4x4 + gate 6x4 + up 6x4 + down 4x6 = 120, head 10x4 = 40.
    expect(flops.linearWeights).toBe(160)
    // 2 x 3 tokens x 160 weights.
    expect(flops.forwardLinear).toBe(960)
    // Q K^T and P V: 2 products x 2 FLOPs x 1 batch x 2 heads x 3 x 3 x headDim 2.
    expect(flops.forwardAttention).toBe(144)
    // q: 2 x 3 x 1 x (4 in + 4 out) = 48; v: 2 x 3 x 1 x (4 in + 2 out) = 36.
    expect(flops.forwardLora).toBe(84)
    // Input gradients of the linears (960), twice the attention (288), twice the LoRA (168).
    expect(flops.backward).toBe(1416)
    expect(flops.total).toBe(960 + 144 + 84 + 1416)
  })

  it("is dominated by 4 N W on the wide shape", () => {
    const flops = loraStepFlops({ config: wide.config, batch: wide.batch, seqLen: wide.seqLen, rank: 8, targetModules: ["q_proj", "v_proj"] })
    const tokens = wide.batch * wide.seqLen
    // 4 x (4 x 768^2 + 3 x 768 x 2048) + 8192 x 768 weights.
    expect(flops.linearWeights).toBe(4 * (4 * 768 * 768 + 3 * 768 * 2048) + 8192 * 768)
    expect(flops.total / (4 * tokens * flops.linearWeights)).toBeGreaterThan(1)
    expect(flops.total / (4 * tokens * flops.linearWeights)).toBeLessThan(1.05)
  })

  it("counts the tied head of stories260K as a matmul", () => {
    const flops = loraStepFlops({ config: stories260K.config, batch: 8, seqLen: 256, rank: 8, targetModules: ["q_proj", "v_proj"] })
    expect(flops.linearWeights).toBe(5 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 172) + 512 * 64)
  })

  it("rejects an unknown target module", () => {
    expect(() => loraStepFlops({ ...tiny, targetModules: ["qkv"] })).toThrow(/unknown target module 'qkv'/)
  })

  it("converts to GFLOP/s", () => {
    expect(gflopsPerSecond(2e9, 500)).toBe(4)
  })
})

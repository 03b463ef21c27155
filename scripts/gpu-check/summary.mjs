/**
 * scripts/gpu-check.sh's summary lines, one section per call (plain Node, no dependencies):
 *   node summary.mjs adapter ADAPTER.json MODE     which adapter Dawn picked; exit 1 (one line) if not the one wanted
 *   node summary.mjs conformance CONFORMANCE.log   pass/fail counts, the worst case
 *   node summary.mjs bench BENCH.json              webgpu ms/step and tokens/s per shape
 *   node summary.mjs torch TORCH.json BENCH.json   PyTorch's, and webgpu over PyTorch
 * MODE: nvidia (the adapter must be an NVIDIA hardware adapter on Vulkan), lavapipe (a software
 * Vulkan adapter, expected) or any.
 */
import { existsSync, readFileSync } from "node:fs"

const [section, file, extra] = process.argv.slice(2)
const fail = (line) => {
  console.log(`FAIL: ${line}`)
  process.exit(1)
}
const read = (path) => (path !== undefined && existsSync(path) ? readFileSync(path, "utf8") : undefined)
const json = (path) => {
  const text = read(path)
  if (text === undefined) return undefined
  try {
    return JSON.parse(text)
  } catch {
    // a log whose last JSON line is the result
  }
  const line = text.trim().split("\n").reverse().find((l) => l.trim().startsWith("{"))
  try {
    return line === undefined ? undefined : JSON.parse(line)
  } catch {
    return undefined
  }
}
const fixed = (n, digits = 1) => (typeof n === "number" && Number.isFinite(n) ? n.toFixed(digits) : "?")
const exp = (n) => (typeof n === "number" ? n.toExponential(1) : "?")

if (section === "adapter") {
  const probe = json(file)
  if (probe === undefined) fail(`the adapter probe printed no result (see adapter.log)`)
  const list = probe.adapters.map((a) => `${a.backend} '${a.name}'`).join(", ") || "none listed"
  const a = probe.default
  if (a === null) fail(`Dawn found no WebGPU adapter (adapters: ${list}${probe.errors.length ? `; ${probe.errors[0]}` : ""}); the Vulkan loader's messages are in adapter.log`)
  const software = a.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe|software/i.test(`${a.vendor} ${a.architecture} ${a.description}`)
  console.log(`adapter: vendor '${a.vendor}', architecture '${a.architecture}', device '${a.device}', description (driver) '${a.description}', ${software ? "SOFTWARE" : "hardware"}, maxBufferSize ${a.maxBufferSize}`)
  console.log(`adapters Dawn lists: ${list}`)
  const onVulkan = probe.vulkan !== null && probe.vulkan.description === a.description && probe.vulkan.device === a.device
  if (!onVulkan) fail(`the adapter Dawn picks by default ('${a.description}') is not its Vulkan adapter ('${probe.vulkan?.description ?? "none"}')`)
  if (extra === "nvidia" && (software || !/nvidia/i.test(`${a.vendor} ${a.description}`))) {
    fail(`Dawn picked '${a.description}' (vendor '${a.vendor}'), not an NVIDIA hardware adapter; the Vulkan loader's messages are in adapter.log`)
  }
  if (extra === "lavapipe" && !software) fail(`--icd lavapipe, but Dawn picked a hardware adapter ('${a.description}')`)
} else if (section === "conformance") {
  const line = (read(file) ?? "").split("\n").reverse().find((l) => l.startsWith("@gpu-check:conformance "))
  if (line === undefined) fail(`conformance: no result line (crashed or timed out; see conformance.log)`)
  const r = JSON.parse(line.slice("@gpu-check:conformance ".length))
  if (r.error !== undefined) fail(`conformance: ${r.error}`)
  const worst = [...r.cases].sort((x, y) => y.maxError / y.tolerance - x.maxError / x.tolerance)[0]
  console.log(`conformance: ${r.passed} passed, ${r.failed} failed in ${fixed(r.seconds)} s; closest to its tolerance: ${worst?.name} ${exp(worst?.maxError)} (tolerance ${exp(worst?.tolerance)})`)
  for (const c of r.cases.filter((c) => !c.passed)) console.log(`  FAILED ${c.name}: ${exp(c.maxError)} > ${exp(c.tolerance)} at ${c.worst}, leaked ${c.leaked}`)
  if (r.failed > 0) process.exit(1)
} else if (section === "bench") {
  const report = json(file)
  if (report === undefined) fail(`bench: no report (see bench.log)`)
  const run = report.backends.find((b) => b.backend === "webgpu")
  if (run === undefined || run.status !== "ok") fail(`bench: webgpu not measured: ${run?.reason ?? "no webgpu run"}`)
  console.log(`bench (webgpu on ${run.info.device}): matmul ceiling ${fixed(run.ceiling.gflops)} GFLOP/s (${run.ceiling.size}^3)`)
  for (const s of run.shapes) {
    console.log(`  ${s.shape}: LoRA ${fixed(s.lora.medianStepMs)} ms/step, ${fixed(s.lora.tokensPerSecond, 0)} tokens/s, ${fixed(s.lora.achievedGflops)} GFLOP/s; COLA ${fixed(s.cola.medianStepMs)} ms/step (${s.lora.steps} timed steps after ${s.lora.warmup} warm-up)`)
  }
  for (const f of run.failures) console.log(`  FAILED ${f.shape}: ${f.reason}`)
  if (run.failures.length > 0) process.exit(1)
} else if (section === "torch") {
  const torch = json(file)
  if (torch === undefined) fail(`pytorch: no result line (see torch.log)`)
  if (torch.status !== "ok") fail(`pytorch: ${torch.reason}`)
  const webgpu = json(extra)?.backends?.find((b) => b.backend === "webgpu" && b.status === "ok")
  console.log(`pytorch ${torch.torchVersion} (${torch.implementation}) on ${torch.device} (${torch.deviceName}): matmul ceiling ${fixed(torch.ceiling.gflops)} GFLOP/s (${torch.ceiling.size}^3 float32)`)
  for (const s of torch.shapes) {
    const ours = webgpu?.shapes.find((w) => w.shape === s.shape)
    const ratio = ours === undefined ? "" : `; webgpu / pytorch tokens/s ${fixed(ours.lora.tokensPerSecond / s.lora.tokensPerSecond, 3)}x`
    console.log(`  ${s.shape}: LoRA ${fixed(s.lora.medianStepMs)} ms/step, ${fixed(s.lora.tokensPerSecond, 0)} tokens/s, peak ${fixed(s.lora.peakBytes / 2 ** 20)} MiB; COLA ${fixed(s.cola.medianStepMs)} ms/step${ratio}`)
  }
} else {
  fail(`summary.mjs: unknown section '${section}'`)
}

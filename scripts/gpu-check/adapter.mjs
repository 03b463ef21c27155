/**
 * Which WebGPU adapter Dawn gives this process, for scripts/gpu-check.sh: the adapters Dawn lists
 * (backend and name, from `create(["adapter=..."])`'s error), then the adapter of a plain `create([])`
 * (what the conformance run and the bench get) and of `create(["backend=vulkan"])`, each with every
 * field of its GPUAdapterInfo. One JSON line on stdout; Dawn's and the Vulkan loader's messages go to
 * stderr. Run from the carried payload, where `webgpu` resolves to the carried Dawn.
 */
const out = { adapters: [], default: null, vulkan: null, errors: [] }
let dawn
try {
  dawn = await import("webgpu")
} catch (error) {
  out.errors.push(`cannot load the webgpu package (Dawn): ${String(error?.message ?? error).split("\n")[0]}`)
  console.log(JSON.stringify(out))
  process.exit(0)
}
const describe = async (options) => {
  try {
    const adapter = await dawn.create(options).requestAdapter({ powerPreference: "high-performance" })
    if (!adapter) return null
    const info = {}
    for (const key in adapter.info) if (typeof adapter.info[key] !== "function") info[key] = adapter.info[key]
    return { ...info, features: [...adapter.features].length, maxBufferSize: adapter.limits.maxBufferSize }
  } catch (error) {
    out.errors.push(`create(${JSON.stringify(options)}): ${String(error?.message ?? error).split("\n")[0]}`)
    return null
  }
}
try {
  await dawn.create(["adapter=gpu-check: list the adapters"]).requestAdapter()
} catch (error) {
  for (const match of String(error?.message ?? error).matchAll(/backend: '([^']*)', name: '([^']*)'/g)) out.adapters.push({ backend: match[1], name: match[2] })
}
out.default = await describe([])
out.vulkan = await describe(["backend=vulkan"])
console.log(JSON.stringify(out))
process.exit(0)

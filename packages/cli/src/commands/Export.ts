/**
 * `peftkit export`: write a PEFT LoRA adapter as a single standard adapter, optionally compressed to
 * a lower rank by truncated SVD (with the relative error that introduces). A COLA run's adapter is
 * already the whole chain as one LoRA of rank links x r; `--rank` shrinks it.
 */
import { ConfigError, type PeftSaveOptions, PositiveInt, readAdapterConfigJson, Safetensors } from "@peftkit/core"
import { type ChainLora, compressChain, saveChainLora } from "@peftkit/cola"
import { loraScale, readPeftLora } from "@peftkit/lora"
import { Effect, Schema } from "effect"
import { exportFlags } from "../CommandFlags.js"
import { baseLayers, say } from "../Runtime.js"
import { BackendFlag, decodeFlags } from "./Shared.js"

const ExportOptions = Schema.Struct({
  adapterPath: Schema.optionalWith(Schema.String, { default: () => "adapters" }),
  savePath: Schema.String,
  rank: Schema.optional(PositiveInt),
  backend: BackendFlag
})

/** A PEFT LoRA directory as host factors with the scale folded into B. */
export const readAsChainLora = (dir: string) =>
  Effect.gen(function* () {
    // Said in the CLI's terms before LoRA's reader refuses these in the library's.
    const json = yield* readAdapterConfigJson(dir)
    if (json.peft_type !== "LORA" || json.use_dora === true) {
      const kind = json.use_dora === true ? "a DoRA" : `a ${String(json.peft_type)}`
      return yield* new ConfigError({ field: "export.adapterPath", reason: `${dir} holds ${kind} adapter; export rewrites LoRA adapters only (use 'peftkit merge' for the others)` })
    }
    const { config, tensors } = yield* readPeftLora(dir)
    const updates = [...tensors].map(([moduleName, views]) => {
      // Per module: rank_pattern / alpha_pattern give each its own scale.
      const scale = loraScale(config, moduleName)
      const a = views["lora_A.weight"]!
      const b = views["lora_B.weight"]!
      const scaledB = Safetensors.toFloat32(b).map((value) => value * scale)
      return { moduleName, outFeatures: b.shape[0]!, inFeatures: a.shape[1]!, rank: a.shape[0]!, a: Safetensors.toFloat32(a).slice(), b: scaledB }
    })
    return { rank: updates[0]?.rank ?? 0, updates } satisfies ChainLora
  })

export const runExport = (options: typeof ExportOptions.Type, saveOptions: PeftSaveOptions = {}) =>
  Effect.gen(function* () {
    const lora = yield* readAsChainLora(options.adapterPath)
    if (options.rank === undefined || options.rank >= lora.rank) {
      yield* saveChainLora(options.savePath, lora, saveOptions)
      yield* say(`exported rank ${lora.rank} adapter (exact) to ${options.savePath}`)
      return { rank: lora.rank, relativeError: 0 }
    }
    const compressed = compressChain(lora, options.rank)
    yield* saveChainLora(options.savePath, compressed.lora, saveOptions)
    const worst = compressed.layers.reduce((max, layer) => Math.max(max, layer.relativeError), 0)
    yield* say(`compressed rank ${lora.rank} -> ${options.rank}: relative Frobenius error ${compressed.relativeError.toFixed(4)} overall, ${worst.toFixed(4)} worst layer; written to ${options.savePath}`)
    return { rank: options.rank, relativeError: compressed.relativeError }
  })

export const exportCommand = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const options = yield* decodeFlags(argv, exportFlags, ExportOptions, "export")
    yield* Effect.asVoid(runExport(options)).pipe(Effect.provide(baseLayers(options.backend)))
  })

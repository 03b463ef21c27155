/** The LoRA config the adapter methods build from `train`'s options. */
import { loraConfig } from "@peftkit/lora"
import type { TrainOptions } from "../../TrainOptions.js"

export const adapterConfigOf = (options: TrainOptions) =>
  loraConfig({ r: options.rank, alpha: options.alpha, dropout: options.dropout, useRslora: options.rslora, targetModules: options.targetModules })

export const describeAdapter = (options: TrainOptions): string => `r=${options.rank} alpha=${options.alpha}`

/** The methods `peftkit train --method` accepts, by name. */
import { chainMethod } from "./ChainMethod.js"
import { full } from "./Full.js"
import { loraMethod } from "./LoraMethod.js"
import type { Method } from "../TrainOptions.js"
import type { TrainingMethod } from "./Method.js"

export type { ActiveMethod, MethodContext, TrainingMethod } from "./Method.js"

export const methods: Readonly<Record<Method, TrainingMethod>> = { lora: loraMethod, cola: chainMethod("cola"), rac: chainMethod("rac"), xgb: chainMethod("xgb"), full }

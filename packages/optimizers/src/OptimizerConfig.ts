/**
 * One config for any optimizer in this package, discriminated by `name`, decoded strictly with
 * `effect/Schema` (an unknown key or a bad value is a `ConfigError` naming the field). Embed
 * `OptimizerConfig` in a larger config schema (a training run's) and pass the decoded value here.
 *
 * The config's `lr` is the default/peak learning rate only: the training loop passes the rate to
 * apply at each `step` (from its schedule), usually scheduling from this value.
 */
import { Schema } from "effect"
import { decodeConfigSync } from "@peftkit/core"
import type { ParameterGroup } from "@peftkit/core"
import { adam, AdamConfig } from "./Adam.js"
import { adamw, AdamWConfig } from "./AdamW.js"
import { lion, LionConfig } from "./Lion.js"
import { sgd, SgdConfig } from "./SGD.js"
import type { SlotOptimizer } from "./SlotOptimizer.js"

export const OptimizerConfig = Schema.Union(AdamWConfig, AdamConfig, SgdConfig, LionConfig)
export type OptimizerConfig = typeof OptimizerConfig.Encoded

/** The optimizer names `makeOptimizer` accepts. */
export type OptimizerName = OptimizerConfig["name"]

/**
 * Builds the optimizer `config.name` names over `groups`. Throws `ConfigError` naming the field
 * (prefixed with `prefix`, e.g. `"optimizer"` -> `optimizer.lr`) on bad input.
 */
export const makeOptimizer = (config: OptimizerConfig, groups: ReadonlyArray<ParameterGroup>, prefix = ""): SlotOptimizer => {
  // Decoding here names bad fields with `prefix`; the constructors re-check the (now valid) options.
  const decoded = decodeConfigSync(OptimizerConfig, config, prefix)
  switch (decoded.name) {
    case "adamw":
      return adamw(groups, withoutName(decoded))
    case "adam":
      return adam(groups, withoutName(decoded))
    case "sgd":
      return sgd(groups, withoutName(decoded))
    case "lion":
      return lion(groups, withoutName(decoded))
  }
}

const withoutName = <T extends { readonly name: string }>(config: T): Omit<T, "name"> => {
  const { name: _name, ...options } = config
  return options
}

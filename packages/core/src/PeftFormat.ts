/**
 * How an adapter variant reads and writes Hugging Face PEFT's `adapter_config.json`: its
 * `peft_type`, the config keys it owns and how they map to its own config. Save and load dispatch on
 * it, as PEFT's `PEFT_TYPE_TO_CONFIG_MAPPING` does: a directory is loaded by the first installed
 * variant whose format `accepts` its config. A variant without a format cannot be saved in PEFT's
 * layout (`NoPeftFormat`), never as a wrong file.
 */
import type { Effect } from "effect"
import type { ConfigError } from "./Errors.js"

export interface PeftFormat<Config> {
  /** PEFT's `peft_type`, e.g. "LORA", "VERA". */
  readonly peftType: string
  /** Whether an `adapter_config.json` is this variant's (its `peft_type`, and flags such as `use_dora`). */
  readonly accepts: (json: Readonly<Record<string, unknown>>) => boolean
  /** The `adapter_config.json` for `config`, with PEFT's keys (the writer adds `base_model_name_or_path` and `task_type`). */
  readonly encodeConfig: (config: Config) => Record<string, unknown>
  /** The variant's config from an `adapter_config.json`; unknown keys are ignored as PEFT does, unsupported features are errors. */
  readonly decodeConfig: (json: unknown) => Effect.Effect<Config, ConfigError>
}

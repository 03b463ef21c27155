/** Checks of the numbers in a model config that would otherwise fail deep inside tfjs. */
import { ConfigError } from "@peftkit/core"

export const requirePositiveInt = (prefix: string, config: object, fields: ReadonlyArray<string>): void => {
  for (const field of fields) {
    const value = (config as Record<string, unknown>)[field]
    if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
      throw new ConfigError({ field: `${prefix}.${field}`, reason: `must be a positive integer, got ${String(value)}` })
    }
  }
}

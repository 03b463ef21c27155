/**
 * The adapter variants the CLI can load from a PEFT directory: `eval`, `generate` and `merge`
 * dispatch an adapter's config to the first of these whose format accepts it.
 */
import type { AdapterVariant } from "@peftkit/core"
import { lora } from "@peftkit/lora"

export const installedVariants: ReadonlyArray<AdapterVariant<any>> = [lora]

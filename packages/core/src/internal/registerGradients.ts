/**
 * Registers tfjs-core's gradient functions (process-global registry), once.
 *
 * Order matters: tfjs-core itself must initialise first, so that the process-global engine and
 * Tensor class are its own; the generated bundle (see scripts/bundle-tfjs-gradients.mjs) then
 * finds and reuses them, as the `@tensorflow/tfjs` umbrella's bundle does.
 */
import "@tensorflow/tfjs-core"
import "../../gradients/register.js"

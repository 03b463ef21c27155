/**
 * Registers tfjs-core's gradient functions (process-global registry), once.
 * The bundle is generated at install time; see scripts/bundle-tfjs-gradients.mjs for why.
 */
import "../../gradients/register.js"

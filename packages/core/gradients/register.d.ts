// Side-effect module generated at install time by scripts/bundle-tfjs-gradients.mjs.
export {}

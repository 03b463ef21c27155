/** Whether this runs in Node (where peftkit's worker-thread paths apply), not a browser. */
export const isNode = typeof process !== "undefined" && typeof process.versions?.node === "string"

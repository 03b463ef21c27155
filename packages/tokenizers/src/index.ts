export * from "./HfTokenizer.js"
export * from "./Llama2cTokenizer.js"
export * from "./LoadTokenizer.js"
export * from "./Tokenizer.js"

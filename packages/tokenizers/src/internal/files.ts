/**
 * The file operations the tokenizer loaders use: core's, over the program's `FileSystem`.
 */
export { baseName, dirName, joinPath, listDirectory, pathKind, readHead, readFileBytes as readBytes, readText } from "@peftkit/core"

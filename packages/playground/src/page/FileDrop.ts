/**
 * Files from a drop zone, a file picker or a folder picker, each with its path inside what was given
 * (a dropped folder is walked: `my-model/config.json`), so a model folder arrives as one.
 */
import type { DroppedFile } from "../protocol.js"

const readEntries = (reader: FileSystemDirectoryReader) =>
  new Promise<Array<FileSystemEntry>>((resolve, reject) => reader.readEntries(resolve, reject))

const walk = async (entry: FileSystemEntry, out: Array<DroppedFile>): Promise<void> => {
  if (entry.isFile) {
    const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject))
    out.push({ path: entry.fullPath.replace(/^\//, ""), file })
    return
  }
  const reader = (entry as FileSystemDirectoryEntry).createReader()
  // readEntries returns batches (100 in Chromium) until an empty one.
  for (let batch = await readEntries(reader); batch.length > 0; batch = await readEntries(reader)) {
    for (const child of batch) await walk(child, out)
  }
}

export const fromFileList = (files: FileList | null): Array<DroppedFile> =>
  Array.from(files ?? []).map((file) => ({ path: file.webkitRelativePath || file.name, file }))

/** Makes `zone` accept drops and clicks (through its file input); calls `onFiles` with what came. */
export const acceptFiles = (zone: HTMLElement, input: HTMLInputElement, onFiles: (files: Array<DroppedFile>) => void) => {
  input.addEventListener("change", () => {
    if (input.files !== null && input.files.length > 0) onFiles(fromFileList(input.files))
    input.value = ""
  })
  zone.addEventListener("dragover", (event) => {
    event.preventDefault()
    zone.classList.add("over")
  })
  zone.addEventListener("dragleave", () => zone.classList.remove("over"))
  zone.addEventListener("drop", async (event) => {
    event.preventDefault()
    zone.classList.remove("over")
    const items = Array.from(event.dataTransfer?.items ?? []).map((item) => item.webkitGetAsEntry()).filter((entry): entry is FileSystemEntry => entry !== null)
    const files: Array<DroppedFile> = []
    if (items.length > 0) for (const entry of items) await walk(entry, files)
    else files.push(...fromFileList(event.dataTransfer?.files ?? null))
    if (files.length > 0) onFiles(files)
  })
}

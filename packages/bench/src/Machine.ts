/** What the numbers were measured on: the report's first line, since every ratio depends on it. */
import { arch, cpus, platform, totalmem } from "node:os"
import type { MachineInfo } from "./Results.js"

export const machineInfo = (): MachineInfo => {
  const list = cpus()
  return {
    cpuModel: list[0]?.model.trim() ?? "unknown CPU",
    cpuCount: list.length,
    platform: platform(),
    arch: arch(),
    totalMemoryBytes: totalmem(),
    node: process.version
  }
}

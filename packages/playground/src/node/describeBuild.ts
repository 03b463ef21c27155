import type { SiteBuild } from "./SiteBuild.js"

const kib = (bytes: number) => `${(bytes / 1024).toFixed(0)} KiB`

/** The build's one-paragraph summary: where, how long, how big. */
export const describeBuild = (site: SiteBuild): string =>
  [
    `playground built in ${site.seconds.toFixed(1)} s: ${site.dir}`,
    ...Object.entries(site.sizes).map(([name, bytes]) => `  ${name.padEnd(40)} ${kib(bytes)}`)
  ].join("\n")

#!/usr/bin/env node
/** `pnpm playground:build [--out DIR]`: writes the static site (any static host serves it; see the README for headers). */
import { resolve } from "node:path"
import { buildSite, defaultSiteDir } from "./SiteBuild.js"
import { describeBuild } from "./describeBuild.js"

const at = process.argv.indexOf("--out")
const dir = at > 0 && process.argv[at + 1] !== undefined ? resolve(process.argv[at + 1]!) : defaultSiteDir
const site = await buildSite({ dir })
console.log(describeBuild(site))

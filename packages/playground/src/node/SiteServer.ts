/**
 * Serves the built site on 127.0.0.1 with the headers a cross-origin-isolated page needs: COOP
 * `same-origin` and COEP `require-corp` make `SharedArrayBuffer` available, which tfjs's threaded
 * wasm binary needs (without them the page still works, on one thread).
 */
import { createReadStream, existsSync, statSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { extname, join, normalize } from "node:path"

const contentTypes: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".jsonl": "application/jsonl",
  ".wasm": "application/wasm",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png"
}

export const isolationHeaders = {
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
  "cross-origin-resource-policy": "same-origin"
} as const

export interface RunningServer {
  readonly url: string
  readonly server: Server
  readonly close: () => Promise<void>
}

const listen = (server: Server, port: number, host: string) =>
  new Promise<number>((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, host, () => {
      server.off("error", reject)
      resolve((server.address() as { port: number }).port)
    })
  })

/** Serves `dir`; `port` 0 takes any free port, a busy one is an error naming it. */
export const serveSite = async (dir: string, options: { readonly port?: number; readonly host?: string } = {}): Promise<RunningServer> => {
  const host = options.host ?? "127.0.0.1"
  const server = createServer((request, response) => {
    const path = decodeURIComponent((request.url ?? "/").split("?")[0]!)
    const file = normalize(join(dir, path === "/" ? "index.html" : path))
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404, { "content-type": "text/plain", ...isolationHeaders }).end("not found")
      return
    }
    response.writeHead(200, {
      "content-type": contentTypes[extname(file)] ?? "application/octet-stream",
      "content-length": statSync(file).size,
      "cache-control": "no-cache",
      ...isolationHeaders
    })
    createReadStream(file).pipe(response)
  })
  const port = await listen(server, options.port ?? 0, host).catch((error: NodeJS.ErrnoException) => {
    throw new Error(error.code === "EADDRINUSE" ? `port ${options.port} is in use: pass --port N (or 0 for any free port)` : error.message)
  })
  return { url: `http://${host}:${port}/`, server, close: () => new Promise((resolve) => server.close(() => resolve())) }
}

/**
 * The training worker: one `Session`, fed by the page's messages. Messages are handled one at a time,
 * except Stop, which must reach a run that is training (it only sets a flag the loop reads).
 */
import type { FromWorker, ToWorker } from "../protocol.js"
import { RunStore } from "./RunStore.js"
import { Session } from "./Session.js"

interface WorkerScope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null
  postMessage(message: FromWorker, transfer?: ReadonlyArray<Transferable>): void
  location: { href: string }
}
const scope = self as unknown as WorkerScope

const post = (message: FromWorker, transfer: ReadonlyArray<Transferable> = []) => scope.postMessage(message, transfer)
// The site's root (the worker bundle sits in it): where the wasm binaries and the built-in files are.
const session = new Session(post, new URL("./", scope.location.href).href)

const handle = async (message: ToWorker): Promise<void> => {
  switch (message.type) {
    case "init":
      return session.init(message.backend)
    case "load-model":
      return session.loadModel(message.source)
    case "load-data":
      return session.loadData(message.source)
    case "train":
      return session.train(message.settings)
    case "resume":
      return session.resume()
    case "discard-checkpoint":
      return RunStore.clear()
    case "generate":
      return session.generate(message.prompt, message.maxTokens, message.temperature)
    case "evaluate":
      return session.evaluate()
    case "download":
      return session.download(message.what)
    case "stop":
      return session.stop()
  }
}

let queue: Promise<void> = Promise.resolve()
scope.onmessage = (event) => {
  const message = event.data
  const run = () =>
    handle(message).catch((error: unknown) => {
      console.error(error)
      post({ type: "error", during: message.type, ...Session.describeError(error) })
    })
  if (message.type === "stop") void run()
  else queue = queue.then(run)
}

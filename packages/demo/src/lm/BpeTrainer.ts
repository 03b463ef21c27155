/**
 * A small byte-pair-encoding trainer, so the built-in model ships a real `tokenizer.json` made by
 * our own code: SentencePiece/Llama style (Metaspace "▁" for spaces, character base vocabulary,
 * merges learned by pair frequency), loadable by `@huggingface/tokenizers` like any HF tokenizer.
 */

const SPACE = "\u2581"

export interface TrainedBpe {
  readonly vocab: ReadonlyMap<string, number>
  readonly merges: ReadonlyArray<readonly [string, string]>
}

/** Learns up to `vocabSize` tokens (3 specials + characters + merges) from `texts`. */
export const trainBpe = (texts: ReadonlyArray<string>, vocabSize: number): TrainedBpe => {
  // Words with their counts; each word is a sequence of symbols, starting with the space marker.
  const counts = new Map<string, number>()
  for (const text of texts) for (const word of text.split(" ")) if (word !== "") counts.set(SPACE + word, (counts.get(SPACE + word) ?? 0) + 1)
  const words = [...counts].map(([word, count]) => ({ symbols: Array.from(word), count }))
  const vocab = new Map<string, number>([["<unk>", 0], ["<s>", 1], ["</s>", 2]])
  for (const symbol of [...new Set(words.flatMap((w) => w.symbols))].sort()) vocab.set(symbol, vocab.size)
  const merges: Array<readonly [string, string]> = []
  while (vocab.size < vocabSize) {
    const pairs = new Map<string, number>()
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]}\u0000${symbols[i + 1]}`
        pairs.set(key, (pairs.get(key) ?? 0) + count)
      }
    }
    // Most frequent pair; ties broken by the pair text so training is deterministic.
    let best: [string, number] | undefined
    for (const entry of pairs) if (best === undefined || entry[1] > best[1] || (entry[1] === best[1] && entry[0] < best[0])) best = entry
    if (best === undefined || best[1] < 2) break
    const [left, right] = best[0].split("\u0000") as [string, string]
    merges.push([left, right])
    vocab.set(left + right, vocab.size)
    for (const word of words) {
      const next: Array<string> = []
      for (let i = 0; i < word.symbols.length; i++) {
        if (i + 1 < word.symbols.length && word.symbols[i] === left && word.symbols[i + 1] === right) {
          next.push(left + right)
          i++
        } else next.push(word.symbols[i]!)
      }
      word.symbols = next
    }
  }
  return { vocab, merges }
}

/** The HF `tokenizer.json` for a trained BPE: Metaspace pre-tokenizer/decoder, BOS added. */
export const tokenizerJson = (bpe: TrainedBpe): unknown => ({
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [
    { id: 0, content: "<unk>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 1, content: "<s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 2, content: "</s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }
  ],
  normalizer: null,
  pre_tokenizer: { type: "Metaspace", replacement: SPACE, prepend_scheme: "always", split: false },
  post_processor: {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } }
  },
  decoder: { type: "Metaspace", replacement: SPACE, prepend_scheme: "always", split: false },
  model: {
    type: "BPE",
    dropout: null,
    unk_token: "<unk>",
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: true,
    byte_fallback: false,
    ignore_merges: false,
    vocab: Object.fromEntries(bpe.vocab),
    merges: bpe.merges.map(([a, b]) => [a, b])
  }
})

export const tokenizerConfigJson = {
  bos_token: "<s>",
  eos_token: "</s>",
  unk_token: "<unk>",
  pad_token: "</s>",
  add_bos_token: true,
  add_eos_token: false,
  model_max_length: 256,
  tokenizer_class: "LlamaTokenizer"
}

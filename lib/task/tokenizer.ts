/**
 * A small word-level tokenizer, fitted to a corpus. Text is cut into pieces, each piece is one token:
 *
 * 1. the special strings given at fit time (tags such as `<tool_call>`, JSON punctuation such as
 *    `{"name": "`, argument keys such as `"city": `), longest first;
 * 2. words: letters, digits and `_`, optionally joined by `@ . : -` (so `07:30`, `12.5`, `2025-06-14` and
 *    `ana@example.com` are one piece each, and a sentence's final period is not part of the word);
 * 3. a newline; a run of spaces; any other single character.
 *
 * A value copied from a query into a call (`Paris`, `250`) is then the same token in both places, which is
 * what lets a model with prompt-token features learn to copy. Decoding concatenates the pieces, so
 * `decode(encode(text)) === text` for every text made of known pieces; an unknown piece encodes as `<unk>`.
 * Ids 0, 1, 2 are `<pad>`, `<unk>`, `<eos>`; `<eos>` ends a completion and decodes to nothing.
 */
import { invalidArg } from '../errors.js'

export const PAD = '<pad>'
export const UNK = '<unk>'
export const EOS = '<eos>'

export interface TokenizerJSON {
  kind: 'node-grpo-word-tokenizer'
  version: 1
  specials: string[]
  vocab: string[]
}

const WORD = '[A-Za-z0-9_]+(?:[@.:\\-][A-Za-z0-9_]+)*'
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

export class WordTokenizer {
  readonly specials: readonly string[]
  readonly vocab: readonly string[]
  readonly padId = 0
  readonly unkId = 1
  readonly eosId = 2
  #ids: Map<string, number>
  #pattern: RegExp

  private constructor(specials: readonly string[], vocab: readonly string[]) {
    if (!Array.isArray(specials) || !Array.isArray(vocab) || !vocab.every((p) => typeof p === 'string')) {
      invalidArg('a tokenizer made by a WordTokenizer factory', 'new WordTokenizer()', vocab)
    }
    this.specials = Object.freeze([...specials])
    this.vocab = Object.freeze([...vocab])
    this.#ids = new Map(vocab.map((piece, i) => [piece, i]))
    const ordered = [...specials].sort((a, b) => b.length - a.length).map(escape)
    this.#pattern = new RegExp([...ordered, WORD, '\\n', ' +', '[^]'].join('|'), 'gu')
  }

  /**
   * Fits a vocabulary: the reserved tokens, then the specials, then every other piece of `texts` seen at least
   * `minCount` times, in order of first appearance (so the ids do not depend on hash-map iteration order).
   */
  static fit(texts: Iterable<string>, options: { specials?: readonly string[]; minCount?: number } = {}): WordTokenizer {
    if (typeof texts !== 'object' || texts === null || typeof (texts as Iterable<string>)[Symbol.iterator] !== 'function') {
      invalidArg('an iterable of strings', 'texts', texts)
    }
    if (typeof options !== 'object' || options === null) invalidArg('an options object', 'WordTokenizer.fit options', options)
    const specials = options.specials ?? []
    if (!Array.isArray(specials) || specials.some((s) => typeof s !== 'string' || s === '')) {
      invalidArg('an array of non-empty strings', 'specials', specials)
    }
    const minCount = options.minCount ?? 1
    if (!Number.isSafeInteger(minCount) || minCount < 1) invalidArg('an integer >= 1', 'minCount', minCount)
    const base = new WordTokenizer(specials, [PAD, UNK, EOS, ...new Set(specials)])
    const counts = new Map<string, number>()
    for (const text of texts) {
      if (typeof text !== 'string') invalidArg('a string', 'texts[]', text)
      for (const piece of base.pieces(text)) counts.set(piece, (counts.get(piece) ?? 0) + 1)
    }
    const vocab = [...base.vocab]
    const known = new Set(vocab)
    for (const [piece, count] of counts) {
      if (count >= minCount && !known.has(piece)) {
        vocab.push(piece)
        known.add(piece)
      }
    }
    return new WordTokenizer(specials, vocab)
  }

  static fromJSON(json: TokenizerJSON): WordTokenizer {
    if (typeof json !== 'object' || json === null || json.kind !== 'node-grpo-word-tokenizer' || json.version !== 1) {
      invalidArg('a node-grpo-word-tokenizer version 1 object', 'tokenizer JSON', json)
    }
    if (!Array.isArray(json.vocab) || json.vocab[0] !== PAD || json.vocab[1] !== UNK || json.vocab[2] !== EOS) {
      invalidArg(`a vocabulary starting with ${PAD}, ${UNK}, ${EOS}`, 'tokenizer JSON vocab', json.vocab)
    }
    if (!Array.isArray(json.specials)) invalidArg('an array of strings', 'tokenizer JSON specials', json.specials)
    return new WordTokenizer(json.specials, json.vocab)
  }

  toJSON(): TokenizerJSON {
    return { kind: 'node-grpo-word-tokenizer', version: 1, specials: [...this.specials], vocab: [...this.vocab] }
  }

  get vocabSize(): number {
    return this.vocab.length
  }

  /** The pieces of `text`, in order; their concatenation is `text`. */
  pieces(text: string): string[] {
    if (typeof text !== 'string') invalidArg('a string', 'text', text)
    return text.match(this.#pattern) ?? []
  }

  encode(text: string, options: { eos?: boolean } = {}): Int32Array {
    if (typeof options !== 'object' || options === null) invalidArg('an options object', 'encode options', options)
    const pieces = this.pieces(text)
    const out = new Int32Array(pieces.length + (options.eos ? 1 : 0))
    pieces.forEach((piece, i) => (out[i] = this.#ids.get(piece) ?? this.unkId))
    if (options.eos) out[pieces.length] = this.eosId
    return out
  }

  /** The text of `tokens`; `<eos>` and `<pad>` decode to nothing, ids outside the vocabulary are an error. */
  decode(tokens: ArrayLike<number>): string {
    if (!Array.isArray(tokens) && !(ArrayBuffer.isView(tokens) && !(tokens instanceof DataView))) invalidArg('an array of token ids', 'tokens', tokens)
    let text = ''
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i]!
      if (!Number.isInteger(id) || id < 0 || id >= this.vocab.length) invalidArg(`a token id in [0, ${this.vocab.length})`, `tokens[${i}]`, id)
      if (id === this.eosId || id === this.padId) continue
      text += this.vocab[id]
    }
    return text
  }

  /** The id of a piece, or undefined. */
  id(piece: string): number | undefined {
    return this.#ids.get(piece)
  }
}

/**
 * Tiny random Llama / Qwen2 / Qwen3 models in Hugging Face layout, for tests: `writeTinyModel(dir, options)`
 * writes config.json, generation_config.json, the weights (one model.safetensors, or sharded with an index),
 * and a small byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json with a ChatML chat template
 * that lists tools), and returns the config and the stored weights widened to float32 (what a loader must
 * produce). The weights are drawn from a seeded stream, so a seed names a model.
 *
 * The tokenizer is trained here, by the textbook BPE loop (most frequent adjacent pair merged, ties broken by
 * the pair's text), on a short corpus of tool-calling text, so its merges are real and its ids stable.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { float32ToBf16, float32ToF16, bf16ToFloat32, f16ToFloat32 } from '../../lib/dtype.js'
import { hf } from '../../lib/index.js'
import { Rng } from './random.js'

export interface TinyModelOptions {
  architecture: hf.Architecture
  seed?: number
  /** Write 3+ shards and an index instead of one model.safetensors. */
  sharded?: boolean
  /** Storage dtype of the weights (default f32). */
  dtype?: 'f32' | 'bf16' | 'f16'
  tieWordEmbeddings?: boolean
  hiddenSize?: number
  intermediateSize?: number
  numLayers?: number
  numHeads?: number
  numKvHeads?: number
  headDim?: number
  /** Llama / Qwen3 attention biases (q, k, v, o). */
  attentionBias?: boolean
  /** Llama MLP biases. */
  mlpBias?: boolean
  ropeTheta?: number
  ropeScaling?: hf.RopeScaling | null
  /** Extra ids past the tokenizer's (real checkpoints pad the embedding, as Qwen's 151936 > 151665). */
  vocabPadding?: number
  /** Standard deviation of the projection weights (default 0.3: large enough for attention to matter). */
  scale?: number
}

export interface TinyModel {
  dir: string
  config: hf.ModelConfig
  /** The stored weights, widened to float32, by Hugging Face name. */
  weights: Map<string, Float32Array>
}

// --- the tokenizer --------------------------------------------------------------------------------------

/** GPT-2's byte → printable character table, which byte-level BPE vocabularies are written in. */
export function byteLevelAlphabet(): string[] {
  const printable: number[] = []
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b)
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b)
  for (let b = 0xae; b <= 0xff; b++) printable.push(b)
  const table: string[] = new Array(256)
  for (const b of printable) table[b] = String.fromCharCode(b)
  let next = 256
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCharCode(next++)
  return table
}

/** GPT-2's pre-tokenizer pattern (words with their leading space, numbers, punctuation runs, spaces). */
const PRE_TOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu

export const TINY_CORPUS = [
  'You are an expert in composing function calls.',
  '<think>The user wants the weather in Paris.</think>',
  '<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}]\n</tool_call>',
  '<tool_call>\n[{"name": "convert_currency", "arguments": {"amount": 250, "from": "USD", "to": "EUR"}}]\n</tool_call>',
  'What is the weather in Berlin tomorrow? And the day after?',
  'Book a table for two at eight, then tell me the time.',
]

export const TINY_SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']

/**
 * A byte-level BPE tokenizer.json trained on `corpus` with `merges` merges: ids 0-255 are the bytes, then one
 * id per merge, then the special tokens.
 */
export function trainByteLevelBpe(corpus: readonly string[], merges: number): { tokenizerJson: Record<string, unknown>; vocabSize: number } {
  const alphabet = byteLevelAlphabet()
  const encoder = new TextEncoder()
  const counts = new Map<string, number>()
  for (const text of corpus) {
    for (const piece of text.match(PRE_TOKENIZE) ?? []) {
      const word = Array.from(encoder.encode(piece), (b) => alphabet[b]!).join(' ')
      counts.set(word, (counts.get(word) ?? 0) + 1)
    }
  }
  let words = [...counts].map(([w, n]) => ({ symbols: w.split(' '), n }))
  const vocab: Record<string, number> = {}
  alphabet.forEach((c, i) => (vocab[c] = i))
  const mergeList: [string, string][] = []
  for (let m = 0; m < merges; m++) {
    const pairs = new Map<string, number>()
    for (const { symbols, n } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + '\u0000' + symbols[i + 1]
        pairs.set(key, (pairs.get(key) ?? 0) + n)
      }
    }
    let best: string | null = null
    let bestCount = 0
    for (const [key, n] of pairs) if (n > bestCount || (n === bestCount && best !== null && key < best)) [best, bestCount] = [key, n]
    if (best === null || bestCount < 2) break
    const [a, b] = best.split('\u0000') as [string, string]
    mergeList.push([a, b])
    vocab[a + b] = Object.keys(vocab).length
    words = words.map(({ symbols, n }) => {
      const out: string[] = []
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
          out.push(a + b)
          i++
        } else {
          out.push(symbols[i]!)
        }
      }
      return { symbols: out, n }
    })
  }
  const base = Object.keys(vocab).length
  const added = TINY_SPECIALS.map((content, i) => ({ id: base + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }))
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true }
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, use_regex: false },
    decoder: { ...byteLevel, use_regex: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: mergeList,
    },
  }
  return { tokenizerJson, vocabSize: base + added.length }
}

/**
 * A ChatML template with tools in the system turn and calls as `<tool_call>` blocks: the shape of Qwen's,
 * written for these tests.
 */
export const TINY_CHAT_TEMPLATE = [
  "{%- if tools or messages[0].role == 'system' %}",
  "{{- '<|im_start|>system\\n' }}",
  "{%- if messages[0].role == 'system' %}{{- messages[0].content }}{%- endif %}",
  '{%- if tools %}',
  "{{- '\\n\\n<tools>' }}{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}{{- '\\n</tools>' }}",
  '{%- endif %}',
  "{{- '<|im_end|>\\n' }}",
  '{%- endif %}',
  '{%- for message in messages %}',
  "{%- if message.role == 'tool' %}",
  "{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}",
  "{%- elif not (message.role == 'system' and loop.first) %}",
  "{{- '<|im_start|>' + message.role + '\\n' + message.content }}",
  '{%- for call in message.tool_calls or [] %}',
  "{{- '\\n<tool_call>\\n' + (call.function | tojson) + '\\n</tool_call>' }}",
  '{%- endfor %}',
  "{{- '<|im_end|>\\n' }}",
  '{%- endif %}',
  '{%- endfor %}',
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
].join('\n')

export async function writeTinyTokenizer(dir: string, merges = 48): Promise<{ vocabSize: number; eosId: number; padId: number }> {
  const { tokenizerJson, vocabSize } = trainByteLevelBpe(TINY_CORPUS, merges)
  const specials = (tokenizerJson.added_tokens as { id: number; content: string }[])
  const decoder: Record<string, unknown> = {}
  for (const t of specials) decoder[String(t.id)] = { content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }
  const config = {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: decoder,
    bos_token: null,
    eos_token: '<|im_end|>',
    pad_token: '<|endoftext|>',
    unk_token: null,
    clean_up_tokenization_spaces: false,
    model_max_length: 512,
    tokenizer_class: 'PreTrainedTokenizerFast',
    chat_template: TINY_CHAT_TEMPLATE,
  }
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson))
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2))
  const id = (s: string) => specials.find((t) => t.content === s)!.id
  return { vocabSize, eosId: id('<|im_end|>'), padId: id('<|endoftext|>') }
}

// --- the model ------------------------------------------------------------------------------------------

/** Writes a tiny random model folder; see the file comment. */
export async function writeTinyModel(dir: string, options: TinyModelOptions): Promise<TinyModel> {
  await mkdir(dir, { recursive: true })
  const tokenizer = await writeTinyTokenizer(dir)
  const config = hf.createModelConfig({
    architecture: options.architecture,
    vocabSize: tokenizer.vocabSize + (options.vocabPadding ?? 5),
    hiddenSize: options.hiddenSize ?? 16,
    intermediateSize: options.intermediateSize ?? 24,
    numLayers: options.numLayers ?? 2,
    numHeads: options.numHeads ?? 4,
    numKvHeads: options.numKvHeads ?? 2,
    headDim: options.headDim,
    ropeTheta: options.ropeTheta ?? 10000,
    ropeScaling: options.ropeScaling ?? null,
    tieWordEmbeddings: options.tieWordEmbeddings ?? false,
    attentionBias: options.attentionBias,
    mlpBias: options.mlpBias,
    rmsNormEps: 1e-6,
    maxPositionEmbeddings: 512,
    eosTokenIds: [tokenizer.eosId],
    padTokenId: tokenizer.padId,
  })
  const rng = new Rng((options.seed ?? 1) >>> 0)
  const scale = options.scale ?? 0.3
  const dtype = options.dtype ?? 'f32'
  const weights = new Map<string, Float32Array>()
  const tensors: [string, hf.TensorSource][] = []
  for (const spec of hf.expectedTensors(config)) {
    const n = spec.shape.reduce((a, b) => a * b, 1)
    const values = new Float32Array(n)
    const isNorm = spec.role.endsWith('norm')
    const isBias = spec.role.endsWith('bias')
    // Norm weights near 1 and small biases, as trained models have; projections large enough to matter.
    for (let i = 0; i < n; i++) values[i] = isNorm ? 1 + 0.2 * rng.normal() : isBias ? 0.1 * rng.normal() : scale * rng.normal()
    let stored: Float32Array | Uint16Array = values
    let widened: Float32Array = values
    if (dtype === 'bf16') {
      stored = float32ToBf16(values)
      widened = bf16ToFloat32(stored)
    } else if (dtype === 'f16') {
      stored = float32ToF16(values)
      widened = f16ToFloat32(stored)
    }
    weights.set(spec.name, widened)
    tensors.push([spec.name, { dtype, shape: spec.shape, data: stored }])
  }
  // Sharded: a limit a bit above one layer's bytes gives one shard per layer or so.
  const total = tensors.reduce((s, [, t]) => s + t.shape.reduce((a, b) => a * b, 1) * (dtype === 'f32' ? 4 : 2), 0)
  const maxShardBytes = options.sharded ? Math.ceil(total / (config.numLayers + 2)) : undefined
  await hf.saveModelFolder(dir, config, tensors, { maxShardBytes })
  return { dir, config: (await hf.readModelWeights(dir)).config, weights }
}

/**
 * A Hugging Face model folder as a whole: `config.json` (+ `generation_config.json`), the safetensors weights
 * (one file or sharded), and the tokenizer files, opened with every check done before a byte of weights is
 * read, and written so that transformers and vLLM load it back.
 */
import { copyFile, mkdir, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { float32ToBf16, float32ToF16, type DType } from '../dtype.js'
import { GrpoError, expectString, invalidArg } from '../errors.js'
import type { SafetensorsEntry } from '../safetensors.js'
import { Tensor, type TensorData } from '../tensor.js'
import { SAVE_MODEL_SCHEMA, parseOptions, type SaveModelOptions } from '../options.js'
import { checkModelConfig, readModelConfig, writeModelConfig, type ModelConfig, type TorchDtype } from './config.js'
import { SafetensorsCheckpoint, entryToFloat32, writeSafetensorsCheckpoint, type TensorSource, type WrittenCheckpoint } from './safetensors.js'
import { checkCheckpointTensors, expectedTensors, type TensorSpec } from './tensors.js'

export interface HfModelFolder extends AsyncDisposable {
  dir: string
  config: ModelConfig
  /** The model's tensors, in transformers' parameter order, each checked present with its shape and dtype. */
  tensors: TensorSpec[]
  /** The open weights: `weights.read(name)` reads one tensor. Close the folder when done. */
  weights: SafetensorsCheckpoint
  /** Ids that end generation: config.json's eos_token_id and generation_config.json's, without repeats. */
  stopTokenIds: number[]
  close(): Promise<void>
}

/** Opens `dir`, reads and validates its config, opens its weights and checks them against the config. */
export async function openModelFolder(dir: string): Promise<HfModelFolder> {
  if (typeof dir !== 'string' || dir === '') invalidArg('a model folder path', 'dir', dir)
  const config = await readModelConfig(dir)
  const weights = await SafetensorsCheckpoint.open(dir)
  let tensors: TensorSpec[]
  try {
    tensors = checkCheckpointTensors(config, weights.tensors, weights.path)
  } catch (error) {
    await weights.close()
    throw error
  }
  const stop = new Set(config.eosTokenIds)
  for (const id of await readGenerationEos(dir)) stop.add(id)
  const close = () => weights.close()
  return { dir, config, tensors, weights, stopTokenIds: [...stop], close, [Symbol.asyncDispose]: close }
}

async function readGenerationEos(dir: string): Promise<number[]> {
  const path = join(dir, 'generation_config.json')
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return []
  }
  let json: { eos_token_id?: unknown }
  try {
    json = JSON.parse(text)
  } catch (cause) {
    throw new GrpoError(`Expected JSON for ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
  const eos = json?.eos_token_id
  if (eos === undefined || eos === null) return []
  const list = Array.isArray(eos) ? eos : [eos]
  for (const id of list) {
    if (!Number.isSafeInteger(id) || id < 0) throw new GrpoError(`Expected token ids for eos_token_id in ${path} but received ${JSON.stringify(eos)}`, 'ERR_GRPO_INVALID_ARG')
  }
  return list as number[]
}

/**
 * Every weight of the model in `dir` as float32 host arrays (bf16 and f16 widened exactly), keyed by name.
 * Convenient for small models and tests; a policy loading a large model reads tensor by tensor instead.
 */
export async function readModelWeights(dir: string): Promise<{ config: ModelConfig; weights: Map<string, { shape: number[]; data: Float32Array }> }> {
  await using folder = await openModelFolder(dir)
  const weights = new Map<string, { shape: number[]; data: Float32Array }>()
  for (const spec of folder.tensors) {
    const entry = await folder.weights.read(spec.name)
    weights.set(spec.name, { shape: entry.shape, data: entryToFloat32(entry) })
  }
  return { config: folder.config, weights }
}

const TORCH_DTYPE: Record<'f32' | 'bf16' | 'f16', TorchDtype> = { f32: 'float32', bf16: 'bfloat16', f16: 'float16' }

/** The tokenizer files transformers reads, copied by `saveModelFolder` when they exist. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja', 'vocab.json', 'merges.txt', 'added_tokens.json']

function convertedSource(name: string, source: TensorSource | Tensor, dtype: 'f32' | 'bf16' | 'f16'): TensorSource {
  const from: DType = source.dtype
  const shape = source instanceof Tensor ? source.shape : source.shape
  if (from === dtype) return source instanceof Tensor ? { dtype, shape, data: source } : source
  if (from !== 'f32') invalidArg(`an f32 or ${dtype} tensor to store as ${dtype}`, `tensors.${name}`, `a ${from} tensor`)
  const load = async (): Promise<TensorData> => {
    const data = source instanceof Tensor ? await source.toArray() : source.data instanceof Tensor ? await source.data.toArray() : typeof source.data === 'function' ? await source.data() : source.data
    if (dtype === 'f32') return data
    return dtype === 'bf16' ? float32ToBf16(data as Float32Array) : float32ToF16(data as Float32Array)
  }
  return { dtype, shape, data: load }
}

/**
 * Writes a model folder: the weights (sharded past `maxShardBytes`), config.json with `torch_dtype` set to the
 * stored dtype, generation_config.json, and the tokenizer files of `tokenizerFrom`. The tensors must be exactly
 * those `config` describes (names and shapes), so the folder loads back here and in transformers.
 */
export async function saveModelFolder(
  dir: string,
  config: ModelConfig,
  tensors: Iterable<[string, TensorSource | Tensor]> | Record<string, TensorSource | Tensor>,
  options: SaveModelOptions = {},
): Promise<WrittenCheckpoint> {
  if (typeof dir !== 'string' || dir === '') invalidArg('a model folder path', 'dir', dir)
  const { dtype, maxShardBytes, tokenizerFrom } = parseOptions(SAVE_MODEL_SCHEMA, options, 'saveModelFolder options')
  checkModelConfig(config)
  if (typeof tensors !== 'object' || tensors === null) invalidArg('a list or record of name → tensor', 'tensors', tensors)
  const list: [string, TensorSource | Tensor][] = Symbol.iterator in (tensors as object) ? [...(tensors as Iterable<[string, TensorSource | Tensor]>)] : Object.entries(tensors)
  const byName = new Map(list.map(([name, t]) => [name, { dtype: t.dtype, shape: [...t.shape] }]))
  if (byName.size !== list.length) invalidArg('unique tensor names', 'tensors', list.length)
  checkCheckpointTensors(config, byName, 'the tensors to save')
  // Stored in transformers' parameter order, whatever order they were given in.
  const order = expectedTensors(config).map((spec) => spec.name)
  const given = new Map(list)
  const ordered: [string, TensorSource | Tensor][] = order.map((name) => [name, dtype ? convertedSource(name, given.get(name)!, dtype) : given.get(name)!])
  const stored = new Set(ordered.map(([, t]) => t.dtype))
  const torchDtype = stored.size === 1 ? TORCH_DTYPE[[...stored][0] as 'f32' | 'bf16' | 'f16'] : (config.torchDtype ?? 'float32')
  await mkdir(dir, { recursive: true })
  const written = await writeSafetensorsCheckpoint(dir, ordered, { maxShardBytes })
  await writeModelConfig(dir, { ...config, torchDtype })
  if (tokenizerFrom !== undefined) await copyTokenizerFiles(tokenizerFrom, dir)
  return written
}

/** Copies the tokenizer files present in `from` into `to`; tokenizer.json and tokenizer_config.json must exist. */
export async function copyTokenizerFiles(from: string, to: string): Promise<string[]> {
  expectString(from, 'from')
  expectString(to, 'to')
  const copied: string[] = []
  // Copying a file onto itself would truncate it.
  if (resolve(from) === resolve(to)) return copied
  for (const file of TOKENIZER_FILES) {
    try {
      await copyFile(join(from, file), join(to, file))
      copied.push(file)
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') throw cause
      if (file === 'tokenizer.json' || file === 'tokenizer_config.json') {
        throw new GrpoError(`Expected ${file} in ${from} to copy but it does not exist`, 'ERR_GRPO_INVALID_ARG', { cause })
      }
    }
  }
  return copied
}

export type { SafetensorsEntry, SaveModelOptions }

/**
 * The `config.json` of a Hugging Face decoder-only model: read, validated and normalized into a `ModelConfig`,
 * and written back in the form transformers and vLLM load.
 *
 * Three architectures share one decoder (pre-norm RMSNorm, rotary attention with grouped-query heads, SwiGLU
 * MLP) and differ only in a few tensors:
 * - `LlamaForCausalLM`: no biases unless `attention_bias` (then q, k, v and o projections all have one) or
 *   `mlp_bias`;
 * - `Qwen2ForCausalLM`: q, k and v projections always have biases, o_proj never;
 * - `Qwen3ForCausalLM`: per-head RMSNorms of q and k (`q_norm`, `k_norm`) before the rotary embedding; biases
 *   as Llama's `attention_bias`.
 *
 * Anything this library cannot compute exactly (sliding-window attention, other activations, rope scalings
 * other than linear and llama3) is rejected here, with the key that says so, rather than silently computed
 * differently from the model's reference implementation.
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { GrpoError, describe, expectFields, expectString, invalidArg } from '../errors.js'

export const ARCHITECTURES = ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'] as const
export type Architecture = (typeof ARCHITECTURES)[number]
export type ModelType = 'llama' | 'qwen2' | 'qwen3'

const MODEL_TYPE: Record<Architecture, ModelType> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
}

/** The dtypes a checkpoint's weights may be stored in, by their `torch_dtype` names. */
export type TorchDtype = 'float32' | 'bfloat16' | 'float16'

/**
 * Rotary-embedding frequency scalings this library computes exactly (see `ropeInverseFrequencies`):
 * - `linear`: positions divided by `factor` (every frequency divided by `factor`);
 * - `llama3`: Llama 3.1's band-wise scaling: long wavelengths divided by `factor`, short ones kept, a smooth
 *   blend in between.
 */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }

export interface ModelConfig {
  architecture: Architecture
  modelType: ModelType
  vocabSize: number
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  /** Per-head size; `hiddenSize / numHeads` unless the config says otherwise (Qwen3 often does). */
  headDim: number
  rmsNormEps: number
  ropeTheta: number
  ropeScaling: RopeScaling | null
  maxPositionEmbeddings: number
  /** The LM head shares `model.embed_tokens.weight` (no `lm_head.weight` tensor). */
  tieWordEmbeddings: boolean
  /** q_proj, k_proj and v_proj have biases (always for Qwen2). */
  qkvBias: boolean
  /** o_proj has a bias (Llama and Qwen3 with `attention_bias`). */
  outputBias: boolean
  /** gate_proj, up_proj and down_proj have biases (Llama's `mlp_bias`). */
  mlpBias: boolean
  /** Per-head RMSNorm of q and k before the rotary embedding (Qwen3). */
  qkNorm: boolean
  /** The dtype the weights were saved in, or null when the config does not say. */
  torchDtype: TorchDtype | null
  bosTokenId: number | null
  /** Every id that ends generation (`eos_token_id` may be a list). */
  eosTokenIds: number[]
  padTokenId: number | null
  /** Standard deviation of the random initialization (`initializer_range`, default 0.02). */
  initializerRange: number
  /** The keys of the source config this library does not interpret, written back unchanged by `modelConfigToJson`. */
  extra: Record<string, unknown>
}

/**
 * The shape of a ModelConfig a caller passes (made by readModelConfig or modelConfig): its fields of the right
 * kinds, so the functions that read it fail with a GrpoError naming the field rather than a TypeError.
 */
export function checkModelConfig(config: unknown, what = 'config'): void {
  expectFields(config, what, 'a model config (see readModelConfig)', {
    architecture: 'string', modelType: 'string', vocabSize: 'number', hiddenSize: 'number', intermediateSize: 'number', numLayers: 'number',
    numHeads: 'number', numKvHeads: 'number', headDim: 'number', rmsNormEps: 'number', ropeTheta: 'number', ropeScaling: 'object|null',
    maxPositionEmbeddings: 'number', tieWordEmbeddings: 'boolean', qkvBias: 'boolean', outputBias: 'boolean', mlpBias: 'boolean', qkNorm: 'boolean',
    torchDtype: 'string|null', bosTokenId: 'number|null', eosTokenIds: 'array', padTokenId: 'number|null', initializerRange: 'number', extra: 'object',
  })
}

function bad(source: string, key: string, expected: string, received: unknown): never {
  throw new GrpoError(`Expected ${expected} for ${source} ${key} but received ${describe(received)}`, 'ERR_GRPO_INVALID_ARG')
}

/** Keys that `parseModelConfig` reads; everything else lands in `extra`. */
const KNOWN_KEYS = new Set([
  'architectures', 'model_type', 'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers',
  'num_attention_heads', 'num_key_value_heads', 'head_dim', 'rms_norm_eps', 'rope_theta', 'rope_scaling',
  'rope_parameters', 'max_position_embeddings', 'tie_word_embeddings', 'attention_bias', 'mlp_bias',
  'hidden_act', 'torch_dtype', 'dtype', 'bos_token_id', 'eos_token_id', 'pad_token_id', 'initializer_range',
  'use_sliding_window', 'sliding_window', 'max_window_layers', 'layer_types', 'pretraining_tp',
])

/**
 * Validates a parsed `config.json` and returns its normalized form. `source` names the file in errors.
 * Errors are GrpoErrors (`ERR_GRPO_INVALID_ARG`) naming the offending key.
 */
export function parseModelConfig(json: unknown, source = 'config.json'): ModelConfig {
  expectString(source, 'source')
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad(source, '(the whole file)', 'a JSON object', json)
  const raw = json as Record<string, unknown>
  const has = (key: string): boolean => raw[key] !== undefined && raw[key] !== null

  const int = (key: string, min: number, fallback?: number): number => {
    const value = has(key) ? raw[key] : fallback
    if (value === undefined) bad(source, key, `an integer >= ${min}`, raw[key])
    if (!Number.isSafeInteger(value) || (value as number) < min) bad(source, key, `an integer >= ${min}`, value)
    return value as number
  }
  const positive = (key: string, fallback?: number): number => {
    const value = has(key) ? raw[key] : fallback
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) bad(source, key, 'a finite number > 0', value)
    return value
  }
  const bool = (key: string, fallback: boolean): boolean => {
    if (!has(key)) return fallback
    if (typeof raw[key] !== 'boolean') bad(source, key, 'true or false', raw[key])
    return raw[key] as boolean
  }
  const tokenId = (key: string): number | null => {
    if (!has(key)) return null
    if (!Number.isSafeInteger(raw[key]) || (raw[key] as number) < 0) bad(source, key, 'a token id (an integer >= 0) or null', raw[key])
    return raw[key] as number
  }

  // The architecture: `architectures[0]`, or `model_type` when the list is missing.
  let architecture: Architecture
  if (has('architectures')) {
    const list = raw.architectures
    if (!Array.isArray(list) || list.length !== 1 || typeof list[0] !== 'string') bad(source, 'architectures', 'a list of one architecture name', list)
    if (!(ARCHITECTURES as readonly string[]).includes(list[0])) bad(source, 'architectures[0]', `one of ${ARCHITECTURES.join(', ')}`, list[0])
    architecture = list[0] as Architecture
  } else {
    const type = raw.model_type
    const found = ARCHITECTURES.find((a) => MODEL_TYPE[a] === type)
    if (!found) bad(source, 'architectures', `a list with one of ${ARCHITECTURES.join(', ')} (or model_type llama, qwen2 or qwen3)`, raw.architectures)
    architecture = found
  }
  const modelType = MODEL_TYPE[architecture]
  if (has('model_type') && raw.model_type !== modelType) bad(source, 'model_type', `"${modelType}" (the model type of ${architecture})`, raw.model_type)

  const act = raw.hidden_act ?? 'silu'
  if (act !== 'silu') bad(source, 'hidden_act', '"silu" (the SwiGLU MLP of Llama and Qwen)', act)

  const hiddenSize = int('hidden_size', 1)
  const numHeads = int('num_attention_heads', 1)
  const numKvHeads = int('num_key_value_heads', 1, numHeads)
  if (numKvHeads > numHeads || numHeads % numKvHeads !== 0) {
    bad(source, 'num_key_value_heads', `a divisor of num_attention_heads (${numHeads})`, numKvHeads)
  }
  if (!has('head_dim') && hiddenSize % numHeads !== 0) {
    bad(source, 'head_dim', `a value (hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads})`, raw.head_dim)
  }
  const headDim = int('head_dim', 2, hiddenSize / numHeads)
  if (headDim % 2 !== 0) bad(source, 'head_dim', 'an even number (rotary embeddings rotate pairs)', headDim)

  // Sliding-window attention changes which positions attend to which: not computed here, so refused.
  if (modelType !== 'llama' && bool('use_sliding_window', false)) {
    bad(source, 'use_sliding_window', 'false (sliding-window attention is not supported)', raw.use_sliding_window)
  }
  if (has('layer_types')) {
    const types = raw.layer_types
    if (!Array.isArray(types)) bad(source, 'layer_types', 'a list of layer types', types)
    const i = types.findIndex((t) => t !== 'full_attention')
    if (i >= 0) bad(source, `layer_types[${i}]`, '"full_attention" (sliding-window attention is not supported)', types[i])
  }

  // rope_theta and rope_scaling, or transformers v5's rope_parameters that holds both.
  let ropeTheta: number
  let scalingKey = 'rope_scaling'
  let scalingRaw: unknown = raw.rope_scaling
  if (has('rope_parameters')) {
    const params = raw.rope_parameters
    if (typeof params !== 'object' || params === null || Array.isArray(params)) bad(source, 'rope_parameters', 'an object', params)
    const theta = (params as Record<string, unknown>).rope_theta ?? raw.rope_theta ?? 10000
    if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) bad(source, 'rope_parameters.rope_theta', 'a finite number > 0', theta)
    ropeTheta = theta
    scalingKey = 'rope_parameters'
    scalingRaw = params
  } else {
    ropeTheta = positive('rope_theta', 10000)
  }
  const ropeScaling = parseRopeScaling(scalingRaw, source, scalingKey)

  let eosTokenIds: number[] = []
  if (has('eos_token_id')) {
    const eos = raw.eos_token_id
    const list = Array.isArray(eos) ? eos : [eos]
    list.forEach((id, i) => {
      if (!Number.isSafeInteger(id) || (id as number) < 0) bad(source, Array.isArray(eos) ? `eos_token_id[${i}]` : 'eos_token_id', 'a token id (an integer >= 0)', id)
    })
    eosTokenIds = list as number[]
  }

  let torchDtype: TorchDtype | null = null
  const dtypeKey = has('torch_dtype') ? 'torch_dtype' : 'dtype'
  if (has(dtypeKey)) {
    const d = raw[dtypeKey]
    if (d !== 'float32' && d !== 'bfloat16' && d !== 'float16') bad(source, dtypeKey, '"float32", "bfloat16" or "float16"', d)
    torchDtype = d
  }

  // Qwen2's attention ignores attention_bias (its q/k/v projections always have biases), as transformers does.
  const attentionBias = modelType === 'qwen2' ? false : bool('attention_bias', false)
  const config: ModelConfig = {
    architecture,
    modelType,
    vocabSize: int('vocab_size', 1),
    hiddenSize,
    intermediateSize: int('intermediate_size', 1),
    numLayers: int('num_hidden_layers', 1),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positive('rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: int('max_position_embeddings', 1, 2048),
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    qkvBias: modelType === 'qwen2' ? true : attentionBias,
    outputBias: modelType === 'qwen2' ? false : attentionBias,
    mlpBias: modelType === 'llama' ? bool('mlp_bias', false) : false,
    qkNorm: modelType === 'qwen3',
    torchDtype,
    bosTokenId: tokenId('bos_token_id'),
    eosTokenIds,
    padTokenId: tokenId('pad_token_id'),
    initializerRange: positive('initializer_range', 0.02),
    extra: {},
  }
  for (const [key, value] of Object.entries(raw)) if (!KNOWN_KEYS.has(key)) config.extra[key] = value
  return config
}

function parseRopeScaling(value: unknown, source: string, key: string): RopeScaling | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'object' || Array.isArray(value)) bad(source, key, 'an object or null', value)
  const raw = value as Record<string, unknown>
  const typeKey = raw.rope_type !== undefined ? 'rope_type' : 'type'
  const type = raw[typeKey] ?? 'default'
  const num = (k: string, min: number): number => {
    const v = raw[k]
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) bad(source, `${key}.${k}`, `a finite number >= ${min}`, v)
    return v
  }
  switch (type) {
    case 'default':
      return null
    case 'linear':
      return { type: 'linear', factor: num('factor', 1) }
    case 'llama3': {
      const lowFreqFactor = num('low_freq_factor', Number.MIN_VALUE)
      const highFreqFactor = num('high_freq_factor', Number.MIN_VALUE)
      if (highFreqFactor <= lowFreqFactor) bad(source, `${key}.high_freq_factor`, `a number > low_freq_factor (${lowFreqFactor})`, highFreqFactor)
      const original = raw.original_max_position_embeddings
      if (!Number.isSafeInteger(original) || (original as number) < 1) bad(source, `${key}.original_max_position_embeddings`, 'an integer >= 1', original)
      return { type: 'llama3', factor: num('factor', 1), lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: original as number }
    }
    default:
      return bad(
        source,
        `${key}.${typeKey}`,
        '"default", "linear" or "llama3" (dynamic, yarn, longrope and other rope scalings are not supported)',
        type,
      )
  }
}

/**
 * The rotary embedding's inverse frequencies, `headDim / 2` of them, in float64: `theta^(-2i/headDim)`, then
 * the config's scaling. Pair i rotates dimensions (i, i + headDim/2) by the angle `position * inv_freq[i]`.
 */
export function ropeInverseFrequencies(config: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const c = expectFields(config, 'config', 'a model config with headDim, ropeTheta and ropeScaling', { headDim: 'number', ropeTheta: 'number', ropeScaling: 'object|null' })
  if (!Number.isSafeInteger(c.headDim) || (c.headDim as number) < 0) invalidArg('a non-negative integer', 'config.headDim', c.headDim)
  const half = config.headDim / 2
  const out = new Float64Array(half)
  for (let i = 0; i < half; i++) out[i] = 1 / config.ropeTheta ** ((2 * i) / config.headDim)
  const scaling = config.ropeScaling
  if (scaling?.type === 'linear') {
    for (let i = 0; i < half; i++) out[i] = out[i]! / scaling.factor
  } else if (scaling?.type === 'llama3') {
    // Wavelengths shorter than original/high_freq_factor are kept, longer than original/low_freq_factor are
    // divided by factor, and the band between is a linear blend in (original / wavelength).
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: original } = scaling
    const lowWavelength = original / lowFreqFactor
    const highWavelength = original / highFreqFactor
    for (let i = 0; i < half; i++) {
      const f = out[i]!
      const wavelength = (2 * Math.PI) / f
      if (wavelength < highWavelength) continue
      if (wavelength > lowWavelength) {
        out[i] = f / factor
      } else {
        const smooth = (original / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
        out[i] = (1 - smooth) * (f / factor) + smooth * f
      }
    }
  }
  return out
}

/** What `createModelConfig` needs; the rest has the defaults of the architecture's reference config. */
export interface ModelConfigOptions {
  architecture: Architecture
  vocabSize: number
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  numKvHeads?: number
  headDim?: number
  rmsNormEps?: number
  ropeTheta?: number
  ropeScaling?: RopeScaling | null
  maxPositionEmbeddings?: number
  tieWordEmbeddings?: boolean
  /** Llama and Qwen3: biases on q, k, v and o (`attention_bias`). Ignored for Qwen2 (always q/k/v). */
  attentionBias?: boolean
  /** Llama only (`mlp_bias`). */
  mlpBias?: boolean
  torchDtype?: TorchDtype | null
  bosTokenId?: number | null
  eosTokenIds?: number[]
  padTokenId?: number | null
  initializerRange?: number
}

/**
 * A validated config for a new model (for example one trained from scratch). It is built as the config.json
 * it stands for and parsed, so the same rules apply as when reading one.
 */
export function createModelConfig(options: ModelConfigOptions): ModelConfig {
  if (typeof options !== 'object' || options === null) bad('model config options', '(the options)', 'an object', options)
  const modelType = MODEL_TYPE[options.architecture]
  if (!modelType) bad('model config options', 'architecture', `one of ${ARCHITECTURES.join(', ')}`, options.architecture)
  const json: Record<string, unknown> = {
    architectures: [options.architecture],
    model_type: modelType,
    vocab_size: options.vocabSize,
    hidden_size: options.hiddenSize,
    intermediate_size: options.intermediateSize,
    num_hidden_layers: options.numLayers,
    num_attention_heads: options.numHeads,
    num_key_value_heads: options.numKvHeads ?? options.numHeads,
    head_dim: options.headDim ?? (Number.isSafeInteger(options.hiddenSize / options.numHeads) ? options.hiddenSize / options.numHeads : undefined),
    rms_norm_eps: options.rmsNormEps ?? 1e-6,
    rope_theta: options.ropeTheta ?? 10000,
    rope_scaling: ropeScalingToJson(options.ropeScaling ?? null),
    max_position_embeddings: options.maxPositionEmbeddings ?? 2048,
    tie_word_embeddings: options.tieWordEmbeddings ?? false,
    attention_bias: modelType === 'qwen2' ? undefined : (options.attentionBias ?? false),
    mlp_bias: modelType === 'llama' ? (options.mlpBias ?? false) : undefined,
    torch_dtype: options.torchDtype ?? 'float32',
    bos_token_id: options.bosTokenId ?? null,
    eos_token_id: options.eosTokenIds === undefined ? null : options.eosTokenIds.length === 1 ? options.eosTokenIds[0] : options.eosTokenIds,
    pad_token_id: options.padTokenId ?? null,
    initializer_range: options.initializerRange ?? 0.02,
  }
  return parseModelConfig(json, 'model config options')
}

function ropeScalingToJson(scaling: RopeScaling | null): Record<string, unknown> | null {
  if (scaling === null) return null
  if (scaling.type === 'linear') return { rope_type: 'linear', factor: scaling.factor }
  return {
    rope_type: 'llama3',
    factor: scaling.factor,
    low_freq_factor: scaling.lowFreqFactor,
    high_freq_factor: scaling.highFreqFactor,
    original_max_position_embeddings: scaling.originalMaxPositionEmbeddings,
  }
}

/**
 * The config.json object for `config`, in the layout transformers (4.x and 5.x, which reads the legacy
 * `rope_theta` / `rope_scaling` keys) and vLLM load: every key their config classes read, with this
 * library's values, plus the keys of the source config it did not interpret.
 */
export function modelConfigToJson(config: ModelConfig): Record<string, unknown> {
  checkModelConfig(config)
  const json: Record<string, unknown> = {
    ...config.extra,
    architectures: [config.architecture],
    model_type: config.modelType,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    head_dim: config.headDim,
    hidden_act: 'silu',
    max_position_embeddings: config.maxPositionEmbeddings,
    initializer_range: config.initializerRange,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling: ropeScalingToJson(config.ropeScaling),
    tie_word_embeddings: config.tieWordEmbeddings,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenIds.length === 0 ? null : config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : [...config.eosTokenIds],
    pad_token_id: config.padTokenId,
    torch_dtype: config.torchDtype ?? 'float32',
    use_cache: true,
    attention_dropout: 0,
  }
  if (config.modelType === 'llama') {
    json.attention_bias = config.qkvBias
    json.mlp_bias = config.mlpBias
    json.pretraining_tp = 1
  } else {
    if (config.modelType === 'qwen3') json.attention_bias = config.qkvBias
    json.use_sliding_window = false
    json.sliding_window = null
    json.max_window_layers = config.numLayers
  }
  return json
}

/** Reads and validates `dir/config.json`. */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
  expectString(dir, 'dir')
  const path = join(dir, 'config.json')
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (cause) {
    throw new GrpoError(`Expected a readable Hugging Face config for ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (cause) {
    throw new GrpoError(`Expected JSON for ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
  return parseModelConfig(json, path)
}

/** Writes `dir/config.json` and `dir/generation_config.json` (the token ids generation stops at), atomically. */
export async function writeModelConfig(dir: string, config: ModelConfig): Promise<void> {
  expectString(dir, 'dir')
  checkModelConfig(config)
  await writeJsonAtomic(join(dir, 'config.json'), modelConfigToJson(config))
  const generation: Record<string, unknown> = { _from_model_config: true }
  if (config.bosTokenId !== null) generation.bos_token_id = config.bosTokenId
  if (config.eosTokenIds.length > 0) generation.eos_token_id = config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : [...config.eosTokenIds]
  if (config.padTokenId !== null) generation.pad_token_id = config.padTokenId
  await writeJsonAtomic(join(dir, 'generation_config.json'), generation)
}

export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, JSON.stringify(value, null, 2) + '\n')
  await rename(tmp, path)
}

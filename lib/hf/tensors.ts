/**
 * The tensors a Llama / Qwen2 / Qwen3 checkpoint holds, by their Hugging Face names, with the shapes the
 * config implies (PyTorch `nn.Linear` layout: weight [out_features, in_features]), and the check of a
 * checkpoint against them.
 */
import { GrpoError, invalidArg } from '../errors.js'
import type { DType } from '../dtype.js'
import { checkModelConfig, type ModelConfig } from './config.js'
import type { SafetensorsTensorInfo } from './safetensors.js'

/** What a tensor is, so a policy can map names to its own parameters without parsing them. */
export type TensorRole =
  | 'embed'
  | 'input_norm'
  | 'q_proj'
  | 'q_bias'
  | 'k_proj'
  | 'k_bias'
  | 'v_proj'
  | 'v_bias'
  | 'q_norm'
  | 'k_norm'
  | 'o_proj'
  | 'o_bias'
  | 'post_attention_norm'
  | 'gate_proj'
  | 'gate_bias'
  | 'up_proj'
  | 'up_bias'
  | 'down_proj'
  | 'down_bias'
  | 'final_norm'
  | 'lm_head'

export interface TensorSpec {
  name: string
  shape: number[]
  role: TensorRole
  /** The decoder layer, or null for the embedding, final norm and LM head. */
  layer: number | null
}

/** The floating-point dtypes weights may be stored in. */
export const WEIGHT_DTYPES: readonly DType[] = ['f32', 'bf16', 'f16']

/** Every tensor of the model `config` describes, in the order transformers lists its parameters. */
export function expectedTensors(config: ModelConfig): TensorSpec[] {
  checkModelConfig(config)
  const { hiddenSize: h, intermediateSize: m, numHeads, numKvHeads, headDim: d, vocabSize: v } = config
  const q = numHeads * d
  const kv = numKvHeads * d
  const out: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [v, h], role: 'embed', layer: null }]
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}.`
    const add = (name: string, shape: number[], role: TensorRole) => out.push({ name: p + name, shape, role, layer: i })
    add('self_attn.q_proj.weight', [q, h], 'q_proj')
    if (config.qkvBias) add('self_attn.q_proj.bias', [q], 'q_bias')
    add('self_attn.k_proj.weight', [kv, h], 'k_proj')
    if (config.qkvBias) add('self_attn.k_proj.bias', [kv], 'k_bias')
    add('self_attn.v_proj.weight', [kv, h], 'v_proj')
    if (config.qkvBias) add('self_attn.v_proj.bias', [kv], 'v_bias')
    add('self_attn.o_proj.weight', [h, q], 'o_proj')
    if (config.outputBias) add('self_attn.o_proj.bias', [h], 'o_bias')
    if (config.qkNorm) {
      add('self_attn.q_norm.weight', [d], 'q_norm')
      add('self_attn.k_norm.weight', [d], 'k_norm')
    }
    add('mlp.gate_proj.weight', [m, h], 'gate_proj')
    if (config.mlpBias) add('mlp.gate_proj.bias', [m], 'gate_bias')
    add('mlp.up_proj.weight', [m, h], 'up_proj')
    if (config.mlpBias) add('mlp.up_proj.bias', [m], 'up_bias')
    add('mlp.down_proj.weight', [h, m], 'down_proj')
    if (config.mlpBias) add('mlp.down_proj.bias', [h], 'down_bias')
    add('input_layernorm.weight', [h], 'input_norm')
    add('post_attention_layernorm.weight', [h], 'post_attention_norm')
  }
  out.push({ name: 'model.norm.weight', shape: [h], role: 'final_norm', layer: null })
  if (!config.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [v, h], role: 'lm_head', layer: null })
  return out
}

/** Total parameter count of the model `config` describes. */
export function parameterCount(config: ModelConfig): number {
  checkModelConfig(config)
  return expectedTensors(config).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0)
}

/**
 * Tensors a checkpoint may hold beyond the expected ones: the rotary tables older transformers saved, and an
 * LM head saved beside tied embeddings (transformers ignores it too).
 */
function ignorable(name: string, config: ModelConfig): boolean {
  if (/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name)) return true
  return config.tieWordEmbeddings && name === 'lm_head.weight'
}

const shapeText = (shape: readonly number[]): string => `[${shape.join(', ')}]`

/**
 * Checks a checkpoint's tensors against the model `config` describes: each expected tensor present, with its
 * shape and a floating-point dtype, and no tensor the model has no place for (a layer past num_hidden_layers,
 * a bias the config does not have: the sign of a config that does not match its weights). Throws a GrpoError
 * naming the first key that is wrong and the file it is in; returns the expected tensors.
 */
export function checkCheckpointTensors(
  config: ModelConfig,
  tensors: ReadonlyMap<string, Pick<SafetensorsTensorInfo, 'dtype' | 'shape'> & { path?: string }>,
  where = 'the checkpoint',
): TensorSpec[] {
  checkModelConfig(config)
  if (!((tensors as unknown) instanceof Map)) invalidArg('a Map of tensor name to { dtype, shape }', 'tensors', tensors)
  if (typeof where !== 'string') invalidArg('a string', 'where', where)
  const expected = expectedTensors(config)
  for (const spec of expected) {
    const found = tensors.get(spec.name)
    if (!found) {
      throw new GrpoError(`Expected tensor ${spec.name} with shape ${shapeText(spec.shape)} in ${where} but it is missing`, 'ERR_GRPO_SHAPE')
    }
    const file = found.path ?? where
    if (found.shape.length !== spec.shape.length || found.shape.some((s, i) => s !== spec.shape[i])) {
      throw new GrpoError(
        `Expected shape ${shapeText(spec.shape)} for tensor ${spec.name} (from config.json) but received ${shapeText(found.shape)} in ${file}`,
        'ERR_GRPO_SHAPE',
      )
    }
    if (!WEIGHT_DTYPES.includes(found.dtype)) {
      throw new GrpoError(`Expected f32, bf16 or f16 for tensor ${spec.name} but received ${found.dtype} in ${file}`, 'ERR_GRPO_DTYPE')
    }
  }
  const names = new Set(expected.map((t) => t.name))
  const unexpected = [...tensors.keys()].filter((name) => !names.has(name) && !ignorable(name, config))
  if (unexpected.length > 0) {
    const shown = unexpected.slice(0, 5).join(', ') + (unexpected.length > 5 ? `, … (${unexpected.length} in all)` : '')
    throw new GrpoError(
      `Expected only the tensors of a ${config.architecture} with ${config.numLayers} layers in ${where} but received ${shown} (does config.json match the weights?)`,
      'ERR_GRPO_SHAPE',
    )
  }
  return expected
}

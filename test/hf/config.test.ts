/**
 * config.json: the published configs of Qwen2.5-0.5B-Instruct, Llama-3.2-1B and Qwen3-0.6B parse into the
 * right fields and imply the published parameter counts; write → parse round trips; every unsupported or
 * malformed setting is an error naming its key.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { hf } from '../../lib/index.js'
import { referenceInvFreq } from '../reference/llama-reference.js'

const QWEN25_05B = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: 'silu',
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.43.1',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
}

const LLAMA32_1B = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0.dev0',
  use_cache: true,
  vocab_size: 128256,
}

const QWEN3_06B = {
  architectures: ['Qwen3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: 'qwen3',
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.51.0',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
}

t.test('published configs', async (t) => {
  const qwen = hf.parseModelConfig(QWEN25_05B)
  t.match(qwen, {
    architecture: 'Qwen2ForCausalLM',
    modelType: 'qwen2',
    headDim: 64,
    numKvHeads: 2,
    qkvBias: true,
    outputBias: false,
    qkNorm: false,
    tieWordEmbeddings: true,
    ropeTheta: 1e6,
    ropeScaling: null,
    torchDtype: 'bfloat16',
    bosTokenId: 151643,
    eosTokenIds: [151645],
  })
  t.same(qwen.extra, { attention_dropout: 0, transformers_version: '4.43.1', use_cache: true })
  // Qwen2.5-0.5B has 494,032,768 parameters (its model card's "0.49B"; embeddings tied).
  t.equal(hf.parameterCount(qwen), 494_032_768)
  t.ok(hf.expectedTensors(qwen).some((s) => s.name === 'model.layers.23.self_attn.k_proj.bias' && s.shape.join() === '128'))
  t.notOk(hf.expectedTensors(qwen).some((s) => s.name === 'lm_head.weight'), 'tied: no lm_head tensor')

  const llama = hf.parseModelConfig(LLAMA32_1B)
  t.match(llama, { modelType: 'llama', headDim: 64, qkvBias: false, outputBias: false, mlpBias: false, qkNorm: false, eosTokenIds: [128001, 128008, 128009], rmsNormEps: 1e-5 })
  t.same(llama.ropeScaling, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 })
  // Llama-3.2-1B: 1,235,814,400 parameters.
  t.equal(hf.parameterCount(llama), 1_235_814_400)

  const qwen3 = hf.parseModelConfig(QWEN3_06B)
  t.match(qwen3, { modelType: 'qwen3', headDim: 128, numHeads: 16, qkNorm: true, qkvBias: false })
  // Qwen3-0.6B: 0.44B parameters besides the (tied) embedding, 0.6B in all.
  const embedding = 151936 * 1024
  t.equal(hf.parameterCount(qwen3) - embedding, 440_467_456)
  const qNorm = hf.expectedTensors(qwen3).find((s) => s.name === 'model.layers.0.self_attn.q_norm.weight')
  t.same(qNorm, { name: 'model.layers.0.self_attn.q_norm.weight', shape: [128], role: 'q_norm', layer: 0 })
  t.same(hf.expectedTensors(qwen3).find((s) => s.role === 'q_proj')!.shape, [2048, 1024], 'head_dim * heads != hidden_size')
})

t.test('rope frequencies', async (t) => {
  const plain = hf.ropeInverseFrequencies({ headDim: 4, ropeTheta: 10000, ropeScaling: null })
  t.same(Array.from(plain), [1, 0.01])
  const linear = hf.ropeInverseFrequencies({ headDim: 4, ropeTheta: 10000, ropeScaling: { type: 'linear', factor: 4 } })
  t.same(Array.from(linear), [0.25, 0.0025])
  const llama = hf.parseModelConfig(LLAMA32_1B)
  const f = hf.ropeInverseFrequencies(llama)
  const base = (i: number) => 500000 ** (-(2 * i) / 64)
  // Short wavelengths (< 8192/4) are kept, long ones (> 8192/1) divided by 32, the band between blended.
  t.equal(f[0], 1)
  t.ok(Math.abs(f[31]! / (base(31) / 32) - 1) < 1e-14)
  const band = Array.from({ length: 32 }, (_, i) => i).filter((i) => {
    const w = (2 * Math.PI) / base(i)
    return w >= 2048 && w <= 8192
  })
  t.ok(band.length > 0)
  for (const i of band) {
    const smooth = (8192 / ((2 * Math.PI) / base(i)) - 1) / (4 - 1)
    t.ok(Math.abs(f[i]! - ((1 - smooth) * base(i) / 32 + smooth * base(i))) < 1e-18)
  }
  const ref = referenceInvFreq({ ...llama })
  f.forEach((v, i) => t.ok(Math.abs(v - ref[i]!) <= 1e-15 * Math.abs(ref[i]!), `inv_freq[${i}] matches the reference`))
})

t.test('write → parse round trip, createModelConfig, transformers v5 keys', async (t) => {
  for (const source of [QWEN25_05B, LLAMA32_1B, QWEN3_06B]) {
    const config = hf.parseModelConfig(source)
    const json = hf.modelConfigToJson(config)
    t.same(hf.parseModelConfig(json), config, source.architectures[0])
    t.equal(json.transformers_version, source.transformers_version, 'unknown keys are kept')
    t.equal(json.hidden_act, 'silu')
  }
  const llamaJson = hf.modelConfigToJson(hf.parseModelConfig({ ...LLAMA32_1B, attention_bias: true, mlp_bias: true }))
  t.match(llamaJson, { attention_bias: true, mlp_bias: true, rope_scaling: { rope_type: 'llama3', factor: 32 } })
  t.same(hf.modelConfigToJson(hf.parseModelConfig(QWEN3_06B)).eos_token_id, 151645)
  t.same(hf.modelConfigToJson(hf.createModelConfig({ architecture: 'LlamaForCausalLM', vocabSize: 8, hiddenSize: 4, intermediateSize: 8, numLayers: 1, numHeads: 2 })).eos_token_id, null)

  const created = hf.createModelConfig({ architecture: 'Qwen3ForCausalLM', vocabSize: 100, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, eosTokenIds: [5, 6], ropeScaling: { type: 'linear', factor: 2 } })
  t.match(created, { headDim: 16, numKvHeads: 2, qkNorm: true, eosTokenIds: [5, 6], torchDtype: 'float32', rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 2048 })
  t.same(created.ropeScaling, { type: 'linear', factor: 2 })
  t.same(hf.createModelConfig({ architecture: 'LlamaForCausalLM', vocabSize: 8, hiddenSize: 6, intermediateSize: 8, numLayers: 1, numHeads: 3 }).headDim, 2)
  t.throws(() => hf.createModelConfig({ architecture: 'GPT2' as never, vocabSize: 8, hiddenSize: 4, intermediateSize: 8, numLayers: 1, numHeads: 2 }), { message: /architecture/ })
  t.throws(() => hf.createModelConfig(null as never), { message: /an object/ })
  t.throws(() => hf.createModelConfig({ architecture: 'LlamaForCausalLM', vocabSize: 8, hiddenSize: 5, intermediateSize: 8, numLayers: 1, numHeads: 2 }), { message: /head_dim/ })

  // transformers >= 4.56 writes "dtype"; 5.x writes rope_parameters.
  const v5 = hf.parseModelConfig({ ...QWEN3_06B, torch_dtype: undefined, dtype: 'float16', rope_theta: undefined, rope_scaling: undefined, rope_parameters: { rope_theta: 5e5, rope_type: 'default' } })
  t.equal(v5.torchDtype, 'float16')
  t.equal(v5.ropeTheta, 5e5)
  t.equal(v5.ropeScaling, null)
  const v5linear = hf.parseModelConfig({ ...QWEN3_06B, rope_parameters: { rope_type: 'linear', factor: 2 } })
  t.same(v5linear.ropeScaling, { type: 'linear', factor: 2 })
  t.equal(v5linear.ropeTheta, 1000000, 'rope_theta beside rope_parameters')
  // model_type alone names the architecture.
  t.equal(hf.parseModelConfig({ ...QWEN3_06B, architectures: undefined }).architecture, 'Qwen3ForCausalLM')
  // Qwen2 ignores attention_bias, as transformers does: its q/k/v always have biases.
  t.equal(hf.parseModelConfig({ ...QWEN25_05B, attention_bias: false }).qkvBias, true)
  t.same(hf.parseModelConfig({ ...QWEN25_05B, layer_types: Array(24).fill('full_attention') }).numLayers, 24)
})

t.test('errors name the key', async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...QWEN25_05B, architectures: ['MistralForCausalLM'] }, /one of LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM for config.json architectures\[0\] but received "MistralForCausalLM"/],
    [{ ...QWEN25_05B, architectures: ['Qwen2ForCausalLM', 'X'] }, /list of one architecture name for config.json architectures/],
    [{ ...QWEN25_05B, architectures: undefined, model_type: 'gemma' }, /config.json architectures/],
    [{ ...QWEN25_05B, model_type: 'llama' }, /"qwen2" \(the model type of Qwen2ForCausalLM\) for config.json model_type/],
    [{ ...QWEN25_05B, hidden_act: 'gelu' }, /"silu" .* for config.json hidden_act but received "gelu"/],
    [{ ...QWEN25_05B, num_key_value_heads: 3 }, /divisor of num_attention_heads \(14\) for config.json num_key_value_heads but received 3/],
    [{ ...QWEN25_05B, num_key_value_heads: 28 }, /num_key_value_heads/],
    [{ ...QWEN25_05B, hidden_size: 900 }, /config.json head_dim/],
    [{ ...QWEN3_06B, head_dim: 127 }, /an even number .* for config.json head_dim/],
    [{ ...QWEN25_05B, use_sliding_window: true }, /false \(sliding-window attention is not supported\) for config.json use_sliding_window/],
    [{ ...QWEN3_06B, layer_types: ['full_attention', 'sliding_attention'] }, /config.json layer_types\[1\]/],
    [{ ...QWEN3_06B, layer_types: 'x' }, /config.json layer_types/],
    [{ ...QWEN25_05B, rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }, /not supported\) for config.json rope_scaling.type but received "yarn"/],
    [{ ...LLAMA32_1B, rope_scaling: { rope_type: 'dynamic', factor: 2 } }, /config.json rope_scaling.rope_type but received "dynamic"/],
    [{ ...QWEN3_06B, rope_parameters: { rope_type: 'longrope' } }, /config.json rope_parameters.rope_type/],
    [{ ...QWEN3_06B, rope_parameters: 'x' }, /an object for config.json rope_parameters/],
    [{ ...QWEN3_06B, rope_parameters: { rope_theta: -1 } }, /rope_parameters.rope_theta/],
    [{ ...QWEN3_06B, rope_scaling: 'x' }, /object or null for config.json rope_scaling/],
    [{ ...QWEN3_06B, rope_scaling: { rope_type: 'linear', factor: 0.5 } }, /config.json rope_scaling.factor/],
    [{ ...LLAMA32_1B, rope_scaling: { ...LLAMA32_1B.rope_scaling, high_freq_factor: 0.5 } }, /rope_scaling.high_freq_factor/],
    [{ ...LLAMA32_1B, rope_scaling: { ...LLAMA32_1B.rope_scaling, original_max_position_embeddings: 1.5 } }, /rope_scaling.original_max_position_embeddings/],
    [{ ...QWEN3_06B, rope_theta: 0 }, /finite number > 0 for config.json rope_theta/],
    [{ ...QWEN3_06B, vocab_size: 0 }, /integer >= 1 for config.json vocab_size but received 0/],
    [{ ...QWEN3_06B, vocab_size: undefined }, /config.json vocab_size but received undefined/],
    [{ ...QWEN3_06B, num_hidden_layers: 2.5 }, /config.json num_hidden_layers/],
    [{ ...QWEN3_06B, tie_word_embeddings: 'yes' }, /true or false for config.json tie_word_embeddings/],
    [{ ...QWEN3_06B, torch_dtype: 'int8' }, /"float32", "bfloat16" or "float16" for config.json torch_dtype/],
    [{ ...LLAMA32_1B, eos_token_id: [128001, -1] }, /config.json eos_token_id\[1\]/],
    [{ ...QWEN3_06B, eos_token_id: 'x' }, /config.json eos_token_id but/],
    [{ ...QWEN3_06B, bos_token_id: 1.5 }, /config.json bos_token_id/],
  ]
  for (const [json, message] of cases) t.throws(() => hf.parseModelConfig(json), { code: 'ERR_GRPO_INVALID_ARG', message }, String(message))
  t.throws(() => hf.parseModelConfig([]), { message: /a JSON object for config.json \(the whole file\)/ })
  t.throws(() => hf.parseModelConfig(null, '/x/config.json'), { message: /\/x\/config.json/ })
})

t.test('read and write files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'node-grpo-config-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await t.rejects(hf.readModelConfig(dir), { code: 'ERR_GRPO_INVALID_ARG', message: /readable Hugging Face config for .*config.json/ })
  await writeFile(join(dir, 'config.json'), '{"architectures": [')
  await t.rejects(hf.readModelConfig(dir), { message: /Expected JSON for .*config.json/ })
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...QWEN25_05B, architectures: ['Phi3ForCausalLM'] }))
  await t.rejects(hf.readModelConfig(dir), { message: new RegExp(`for ${join(dir, 'config.json').replaceAll('/', '\\/')} architectures\\[0\\] but received "Phi3ForCausalLM"`) })
  const config = hf.parseModelConfig(LLAMA32_1B)
  await hf.writeModelConfig(dir, config)
  t.same(await hf.readModelConfig(dir), config)
  t.same(JSON.parse(await readFile(join(dir, 'generation_config.json'), 'utf8')), { _from_model_config: true, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] })
  await hf.writeModelConfig(dir, { ...config, eosTokenIds: [7], bosTokenId: null, padTokenId: 3 })
  t.same(JSON.parse(await readFile(join(dir, 'generation_config.json'), 'utf8')), { _from_model_config: true, eos_token_id: 7, pad_token_id: 3 })
})

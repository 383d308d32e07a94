/**
 * Model folders: tiny random Llama / Qwen2 / Qwen3 models written in Hugging Face layout (one file and
 * sharded, f32 / bf16 / f16, tied and untied) open with every tensor checked and read back bit for bit; a save
 * converts dtypes and copies the tokenizer; a truncated or mismatched checkpoint is an error naming the key.
 */
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { hf } from '../../lib/index.js'
import { float32ToBf16, bf16ToFloat32 } from '../../lib/dtype.js'
import { writeTinyModel, type TinyModelOptions } from '../helpers/hf-tiny-model.js'
import { SEED, seedComment } from '../helpers/random.js'

const root = await mkdtemp(join(tmpdir(), 'node-grpo-hfmodel-'))
t.teardown(() => rm(root, { recursive: true, force: true }))
t.comment(seedComment())
let count = 0
const fresh = () => join(root, `m${count++}`)

const variants: TinyModelOptions[] = [
  { architecture: 'LlamaForCausalLM' },
  { architecture: 'LlamaForCausalLM', attentionBias: true, mlpBias: true, dtype: 'bf16', sharded: true, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } },
  { architecture: 'Qwen2ForCausalLM', sharded: true, tieWordEmbeddings: true },
  { architecture: 'Qwen2ForCausalLM', dtype: 'f16' },
  { architecture: 'Qwen3ForCausalLM', headDim: 8, numHeads: 4, numKvHeads: 1, dtype: 'bf16' },
  { architecture: 'Qwen3ForCausalLM', sharded: true, attentionBias: true },
]

t.test('tiny models open, check and read back exactly', async (t) => {
  for (const options of variants) {
    const label = JSON.stringify(options)
    const model = await writeTinyModel(fresh(), { ...options, seed: SEED })
    const files = await hf.SafetensorsCheckpoint.open(model.dir)
    t.equal(files.sharded, options.sharded === true, `${label}: sharded`)
    if (options.sharded) t.ok(new Set([...files.tensors.values()].map((i) => i.path)).size >= 3, 'at least 3 shards')
    await files.close()
    await using folder = await hf.openModelFolder(model.dir)
    t.equal(folder.config.architecture, options.architecture)
    t.same(folder.tensors.map((s) => s.name), hf.expectedTensors(folder.config).map((s) => s.name))
    t.same(folder.stopTokenIds, folder.config.eosTokenIds)
    t.equal(folder.config.torchDtype, { f32: 'float32', bf16: 'bfloat16', f16: 'float16' }[options.dtype ?? 'f32'])
    const { weights } = await hf.readModelWeights(model.dir)
    t.equal(weights.size, model.weights.size)
    let same = true
    for (const [name, expected] of model.weights) {
      const got = weights.get(name)!.data
      if (got.length !== expected.length || got.some((v, i) => !Object.is(v, expected[i]))) same = false
    }
    t.ok(same, `${label}: every weight reads back bit for bit`)
    const tokenizer = await hf.HfTokenizer.fromDir(model.dir)
    t.ok(tokenizer.vocabSize < folder.config.vocabSize, 'the embedding is padded past the tokenizer, as real checkpoints are')
    t.equal(tokenizer.eosTokenId, folder.config.eosTokenIds[0])
  }
})

t.test('saveModelFolder: dtype conversion, order, tokenizer files, generation config', async (t) => {
  const source = await writeTinyModel(fresh(), { architecture: 'Qwen2ForCausalLM', seed: SEED })
  const { config, weights } = await hf.readModelWeights(source.dir)
  const out = fresh()
  // Given in reverse order: stored in transformers' order.
  const tensors = [...weights].reverse().map(([name, w]): [string, hf.TensorSource] => [name, { dtype: 'f32', shape: w.shape, data: w.data }])
  await hf.saveModelFolder(out, config, tensors, { dtype: 'bf16', tokenizerFrom: source.dir, maxShardBytes: 4096 })
  await using folder = await hf.openModelFolder(out)
  t.equal(folder.config.torchDtype, 'bfloat16')
  t.ok(folder.weights.sharded)
  const first = [...folder.weights.tensors.values()].sort((a, b) => a.path.localeCompare(b.path) || a.offset - b.offset)[0]!
  t.equal(first.name, 'model.embed_tokens.weight')
  const embed = await folder.weights.read('model.embed_tokens.weight')
  t.equal(embed.dtype, 'bf16')
  t.same(Array.from(embed.data), Array.from(float32ToBf16(weights.get('model.embed_tokens.weight')!.data)))
  t.same(JSON.parse(await readFile(join(out, 'generation_config.json'), 'utf8')).eos_token_id, config.eosTokenIds[0])
  const copied = await hf.HfTokenizer.fromDir(out)
  t.equal(copied.chatTemplate, (await hf.HfTokenizer.fromDir(source.dir)).chatTemplate)
  // bf16 → f16 is refused (only f32 is rounded), same dtype passes through.
  const bf16 = [...weights].map(([name, w]): [string, hf.TensorSource] => [name, { dtype: 'bf16', shape: w.shape, data: float32ToBf16(w.data) }])
  await t.rejects(hf.saveModelFolder(fresh(), config, bf16, { dtype: 'f16' }), { message: /an f32 or f16 tensor to store as f16 for tensors.model.embed_tokens.weight/ })
  const again = fresh()
  await hf.saveModelFolder(again, config, Object.fromEntries(bf16), { dtype: 'bf16' })
  const back = await hf.readModelWeights(again)
  t.same(Array.from(back.weights.get('model.norm.weight')!.data), Array.from(bf16ToFloat32(float32ToBf16(weights.get('model.norm.weight')!.data))))
  // Mixed dtypes keep the config's torch_dtype.
  const mixed = [...weights].map(([name, w], i): [string, hf.TensorSource] => [name, i === 0 ? { dtype: 'bf16', shape: w.shape, data: float32ToBf16(w.data) } : { dtype: 'f32', shape: w.shape, data: w.data }])
  const mixedDir = fresh()
  await hf.saveModelFolder(mixedDir, { ...config, torchDtype: 'float32' }, mixed)
  t.equal((await hf.readModelConfig(mixedDir)).torchDtype, 'float32')
  // Saving onto the folder it came from keeps its tokenizer files intact.
  await hf.saveModelFolder(source.dir, config, tensors, { tokenizerFrom: source.dir })
  t.ok((await stat(join(source.dir, 'tokenizer.json'))).size > 1000)

  await t.rejects(hf.saveModelFolder(fresh(), config, tensors.slice(1)), { code: 'ERR_GRPO_SHAPE', message: /tensor lm_head.weight with shape \[\d+, 16\] in the tensors to save but it is missing/ })
  await t.rejects(hf.saveModelFolder(fresh(), config, [...tensors, tensors[0]!]), { message: /unique tensor names/ })
  await t.rejects(hf.saveModelFolder(fresh(), config, tensors, { dtype: 'f64' as never }), { message: /one of 'f32', 'bf16', 'f16' for dtype/ })
  await t.rejects(hf.saveModelFolder('', config, tensors), { message: /model folder path/ })
  await t.rejects(hf.saveModelFolder(fresh(), config, tensors, { tokenizerFrom: fresh() }), { message: /tokenizer.json in .* to copy but it does not exist/ })
})

t.test('mismatched and damaged checkpoints are errors naming the key', async (t) => {
  const model = await writeTinyModel(fresh(), { architecture: 'Qwen2ForCausalLM', seed: SEED, numLayers: 2 })
  const { config, weights } = await hf.readModelWeights(model.dir)
  const sources = (skip?: string) =>
    [...weights].filter(([name]) => name !== skip).map(([name, w]): [string, hf.TensorSource] => [name, { dtype: 'f32', shape: w.shape, data: w.data }])
  const configText = await readFile(join(model.dir, 'config.json'), 'utf8')

  // A tensor missing from the weights.
  const missing = fresh()
  await hf.saveModelFolder(missing, config, sources())
  await hf.writeSafetensorsCheckpoint(missing, sources('model.layers.1.mlp.up_proj.weight'))
  await t.rejects(hf.openModelFolder(missing), { code: 'ERR_GRPO_SHAPE', message: /tensor model.layers.1.mlp.up_proj.weight with shape \[24, 16\] in .*model.safetensors but it is missing/ })

  // config.json that does not match the weights: other head counts, fewer layers, no biases.
  const mismatch = fresh()
  await hf.saveModelFolder(mismatch, config, sources())
  await writeFile(join(mismatch, 'config.json'), JSON.stringify({ ...JSON.parse(configText), num_key_value_heads: 4 }))
  await t.rejects(hf.openModelFolder(mismatch), { code: 'ERR_GRPO_SHAPE', message: /shape \[16, 16\] for tensor model.layers.0.self_attn.k_proj.weight \(from config.json\) but received \[8, 16\] in .*model.safetensors/ })
  await writeFile(join(mismatch, 'config.json'), JSON.stringify({ ...JSON.parse(configText), num_hidden_layers: 1 }))
  await t.rejects(hf.openModelFolder(mismatch), { message: /only the tensors of a Qwen2ForCausalLM with 1 layers .* but received model.layers.1.self_attn.q_proj.weight, .*, … \(\d+ in all\) \(does config.json match the weights\?\)/ })
  await writeFile(join(mismatch, 'config.json'), JSON.stringify({ ...JSON.parse(configText), architectures: ['LlamaForCausalLM'], model_type: 'llama' }))
  await t.rejects(hf.openModelFolder(mismatch), { message: /model.layers.0.self_attn.q_proj.bias/ })
  await writeFile(join(mismatch, 'config.json'), JSON.stringify({ ...JSON.parse(configText), architectures: ['GemmaForCausalLM'] }))
  await t.rejects(hf.openModelFolder(mismatch), { message: /architectures\[0\] but received "GemmaForCausalLM"/ })

  // A weight stored as integers.
  const ints = fresh()
  await hf.saveModelFolder(ints, config, sources())
  const intSources = sources().map(([name, s]): [string, hf.TensorSource] => (name === 'model.norm.weight' ? [name, { dtype: 'i32', shape: s.shape, data: new Int32Array(16) }] : [name, s]))
  await hf.writeSafetensorsCheckpoint(ints, intSources)
  await t.rejects(hf.openModelFolder(ints), { code: 'ERR_GRPO_DTYPE', message: /f32, bf16 or f16 for tensor model.norm.weight but received i32/ })

  // Rotary tables older transformers saved are ignored; so is an lm_head beside tied embeddings.
  const extra = fresh()
  await hf.saveModelFolder(extra, config, sources())
  await hf.writeSafetensorsCheckpoint(extra, [...sources(), ['model.layers.0.self_attn.rotary_emb.inv_freq', { dtype: 'f32', shape: [2], data: new Float32Array(2) }]])
  await using opened = await hf.openModelFolder(extra)
  t.equal(opened.tensors.length, hf.expectedTensors(config).length)

  // A truncated shard: the error names the shard and the first tensor it cut.
  const cut = await writeTinyModel(fresh(), { architecture: 'LlamaForCausalLM', seed: SEED, sharded: true })
  const index = JSON.parse(await readFile(join(cut.dir, hf.INDEX_FILE), 'utf8'))
  const lastShard = Object.values(index.weight_map as Record<string, string>).sort().at(-1)!
  const shardPath = join(cut.dir, lastShard)
  await truncate(shardPath, (await stat(shardPath)).size - 10)
  await t.rejects(hf.openModelFolder(cut.dir), { message: new RegExp(`${lastShard} holding tensor .* to open but received: .*ends 10 bytes before the end of tensor (lm_head|model\\.)`) })
  // A missing shard.
  await rm(shardPath)
  await t.rejects(hf.openModelFolder(cut.dir), { message: new RegExp(`shard ${lastShard} holding tensor`) })

  // generation_config.json adds stop ids; a broken one is an error.
  const gen = await writeTinyModel(fresh(), { architecture: 'Qwen3ForCausalLM', seed: SEED })
  await writeFile(join(gen.dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [gen.config.eosTokenIds[0], 3] }))
  await using withGen = await hf.openModelFolder(gen.dir)
  t.same(withGen.stopTokenIds, [gen.config.eosTokenIds[0], 3])
  await writeFile(join(gen.dir, 'generation_config.json'), JSON.stringify({ eos_token_id: ['x'] }))
  await t.rejects(hf.openModelFolder(gen.dir), { message: /token ids for eos_token_id in .*generation_config.json/ })
  await writeFile(join(gen.dir, 'generation_config.json'), '{')
  await t.rejects(hf.openModelFolder(gen.dir), { message: /JSON for .*generation_config.json/ })
  await writeFile(join(gen.dir, 'generation_config.json'), '{}')
  await using noGen = await hf.openModelFolder(gen.dir)
  t.same(noGen.stopTokenIds, gen.config.eosTokenIds)
  await t.rejects(hf.openModelFolder(''), { message: /model folder path/ })
})

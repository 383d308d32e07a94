/**
 * `node-grpo train --model <dir> --data <prepared.jsonl>` end to end on a tiny Qwen2-layout model written by the
 * test (with a byte-level BPE tokenizer and a ChatML chat template): warm start, GRPO steps, Hugging Face
 * checkpoints that load back with identical logits, and its errors.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { run } from '../../lib/commands/train.js'
import { evaluation, prompt as promptLib } from '../../lib/index.js'
import { TransformerPolicy } from '../../lib/transformer-policy.js'
import { writeTinyModel } from '../helpers/hf-tiny-model.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-train-model-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

async function capture(args: string[]): Promise<{ code: number; out: string }> {
  const write = process.stdout.write
  let out = ''
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += String(chunk)
    return true
  }) as typeof process.stdout.write
  try {
    return { code: await run(args), out }
  } finally {
    process.stdout.write = write
  }
}

const tools = [{ name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }]
const cities = ['Paris', 'Berlin', 'Rome', 'Oslo']
const lines = cities.map((city) =>
  JSON.stringify({ messages: promptLib.buildToolPrompt(tools, `What is the weather in ${city}?`), tools, answer: [{ name: 'get_weather', arguments: { city } }] }),
)

t.test('trains a tiny Qwen2 model from prepared JSONL and writes Hugging Face checkpoints', async (t) => {
  const model = await writeTinyModel(join(dir, 'model'), { architecture: 'Qwen2ForCausalLM', hiddenSize: 32, intermediateSize: 40, numHeads: 2, numKvHeads: 1, headDim: 16, numLayers: 1, seed: 3 })
  const data = join(dir, 'train.jsonl')
  await writeFile(data, lines.join('\n') + '\n')
  const out = join(dir, 'run')
  const r = await capture(['--model', model.dir, '--data', data, '--steps', '2', '--batch', '2', '--sft-steps', '2', '--sft-batch', '2', '--held-out', '1', '--max-new-tokens', '64', '--save-every', '1', '--lr', '1e-3', '--out', out, '--quiet', '--device', 'cpu'])
  t.equal(r.code, 0)
  t.match(r.out, /model: Qwen2ForCausalLM, 1 layers, hidden 32, 2\/1 heads/)
  t.match(r.out, /chat template from tokenizer_config.json/)
  t.match(r.out, /data: 4 instances .* \(3 train, 1 held out\)/)
  t.match(r.out, /warm start: 2 supervised steps, nll \d/)
  t.match(r.out, /held-out binary reward\s+\d\.\d{3}\s+\d\.\d{3}/, 'the before/after table')
  const files = await readdir(out)
  for (const f of ['checkpoint-1', 'checkpoint-2', 'model', 'metrics.jsonl', 'curves.svg', 'summary.json']) t.ok(files.includes(f), `wrote ${f}`)
  const metrics = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l))
  t.same(metrics.filter((m) => m.phase === 'grpo').map((m) => m.step), [1, 2])
  t.equal(metrics.filter((m) => m.phase === 'warmup').length, 2)
  const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'))
  t.equal(summary.steps, 2)

  // The final model and the last checkpoint hold the same weights: identical logits, and not the initial ones.
  const batch = { prompts: [Int32Array.of(5, 9, 12)], completions: [Int32Array.of(7, 3)], length: 2 }
  const logitsOf = async (folder: string) => {
    await using p = await TransformerPolicy.fromPretrained(folder, { trainable: false })
    const l = await p.logits(batch)
    try {
      return (await l.toArray()) as Float32Array
    } finally {
      l.dispose()
    }
  }
  const final = await logitsOf(join(out, 'model'))
  t.same(await logitsOf(join(out, 'checkpoint-2')), final, 'checkpoint-2 loads back with the final logits')
  t.notSame(await logitsOf(model.dir), final, 'training changed the model')
  // (GRPO steps whose groups all score 0 have zero advantages and leave the weights as they are, so checkpoint-1
  // may equal checkpoint-2 here; it must load.)
  t.equal((await logitsOf(join(out, 'checkpoint-1'))).length, final.length, 'checkpoint-1 loads')
  t.ok((await readdir(join(out, 'model'))).includes('tokenizer_config.json'), 'the tokenizer files travel with the model')

  // eval/serve --model read the folder through the Hugging Face loader.
  await using loaded = await evaluation.loadModel(join(out, 'model'), { device: 'cpu' })
  t.ok(loaded.policy instanceof TransformerPolicy, 'a TransformerPolicy')
  t.equal(loaded.name, 'model')
  const text = loaded.template({ messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools })
  t.match(text, /^<\|im_start\|>system\n[\s\S]*get_weather[\s\S]*<\|im_start\|>user\nWeather in Oslo\?<\|im_end\|>\n<\|im_start\|>assistant\n$/, 'the Tool-N1 prompt through the chat template')
  t.equal(loaded.tokenizer.decode(loaded.tokenizer.encode('the weather in Paris')), 'the weather in Paris')
  t.ok(loaded.stop.length > 0, 'stop tokens from the tokenizer and config')
  const [sample] = await loaded.policy.sample([loaded.tokenizer.encode(text)], { maxNewTokens: 3, greedy: true, stop: [...loaded.stop] })
  t.ok(sample!.tokens.length >= 1 && sample!.tokens.length <= 3, 'it generates')
})

t.test('--help and errors', async (t) => {
  const help = await capture(['--model', 'x', '--help'])
  t.equal(help.code, 0)
  t.match(help.out, /Usage: node-grpo train --model <dir> --data <prepared.jsonl>/)
  await t.rejects(capture(['--model', join(dir, 'model')]), { code: 'ERR_GRPO_INVALID_ARG', message: /--data/ })
  await t.rejects(capture(['--model', join(dir, 'model'), '--data', join(dir, 'missing.jsonl')]), { code: 'ERR_GRPO_INVALID_ARG', message: /missing\.jsonl/ })
  const bad = join(dir, 'bad.jsonl')
  await writeFile(bad, lines[0] + '\n{"messages": []}\n')
  await t.rejects(capture(['--model', join(dir, 'model'), '--data', bad, '--quiet']), { code: 'ERR_GRPO_INVALID_ARG', message: /line 2/ })
  const good = join(dir, 'train.jsonl')
  await t.rejects(capture(['--model', join(dir, 'model'), '--data', good, '--sft-steps', '1', '--max-new-tokens', '4', '--quiet', '--out', join(dir, 'short')]), { code: 'ERR_GRPO_INVALID_ARG', message: /--max-new-tokens/ })
  await t.rejects(capture(['--model', join(dir, 'model'), '--data', bad, '--dtype', 'f16']), { code: 'ERR_GRPO_INVALID_ARG', message: /--dtype/ })
  await t.rejects(capture(['--model', join(dir, 'model'), '--data', bad, '--steps', 'x']), { code: 'ERR_GRPO_INVALID_ARG', message: /--steps/ })
})

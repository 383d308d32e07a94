/**
 * `node-grpo train --model <dir> --data <prepared.jsonl>`: the Tool-N1 recipe on a Hugging Face model.
 *
 * 1. loads the model (TransformerPolicy) and its tokenizer with its chat template (HfTokenizer);
 * 2. reads the training instances `node-grpo data prepare` wrote (messages, tools, answer): each prompt is the
 *    instance's messages rendered by the model's chat template (ChatML when it has none) with the assistant
 *    turn opened, its ground truth the answer's calls; a held-out slice is kept for evaluation;
 * 3. optionally warm-starts with supervised steps on the reference replies (`<tool_call>[…]</tool_call>` + eos);
 * 4. runs GRPO with `presets.toolN1` and the binary tool-call reward, with the same progress bar as the main job;
 * 5. writes runs/<time>/{metrics.jsonl, summary.json, curves.svg}, a Hugging Face checkpoint every
 *    `--save-every` steps (checkpoint-<step>/) and the final model (model/), each loadable by transformers/vLLM.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import * as backend from '../backend.js'
import type { Device } from '../dtype.js'
import { GrpoError, invalidArg } from '../errors.js'
import { HfTokenizer } from '../hf/tokenizer.js'
import { renderCalls, renderChatML, type ChatMessage, type PromptToolCall } from '../prompt.js'
import { defaultDevice } from '../tensor.js'
import { Trainer, presets, type StepMetrics, type TrainerPrompt } from '../trainer.js'
import { TransformerPolicy } from '../transformer-policy.js'
import { ProgressBar } from './progress.js'
import { renderCurves, table } from './train-report.js'

const USAGE = `Usage: node-grpo train --model <dir> --data <prepared.jsonl> [options]

The Tool-N1 recipe on a Hugging Face model (Llama, Qwen2, Qwen3): prompts rendered by the model's chat
template, optional supervised warm start, GRPO with the Tool-N1 preset, Hugging Face checkpoints.

Options:
  --model DIR           the Hugging Face model folder (config.json, safetensors, tokenizer files)
  --data FILE           training instances from \`node-grpo data prepare\` (JSONL: messages, tools, answer)
  --steps N             GRPO steps (default 100)
  --batch N             prompts per GRPO step; each gets 5 completions (default 4)
  --lr X                GRPO learning rate (default 1e-6, the paper's)
  --sft-steps N         supervised warm-start steps before GRPO (default 0)
  --sft-batch N         examples per warm-start step (default 8)
  --sft-lr X            warm-start learning rate (default 1e-5)
  --held-out N          instances kept out of training for the before/after evaluation (default 0)
  --max-new-tokens N    completion budget (default 256)
  --dtype f32|bf16      compute dtype (master weights and optimizer moments stay f32; default f32)
  --recompute           recompute each layer's activations in the backward (less memory)
  --save-every N        write a Hugging Face checkpoint every N GRPO steps (default 0: only the final model)
  --seed N              sampling and data-order seed (default 1)
  --device cpu|cuda     where the model lives (default: the active backend's device)
  --out DIR             output folder (default runs/<time>)
  --quiet               no progress bar
  -h, --help            this text`

interface Config {
  model: string
  data: string
  steps: number
  batch: number
  lr: number
  sftSteps: number
  sftBatch: number
  sftLr: number
  heldOut: number
  maxNewTokens: number
  dtype: 'f32' | 'bf16'
  recompute: boolean
  saveEvery: number
  seed: number
  device: Device
  out: string
  quiet: boolean
}

function parseConfig(args: string[]): Config | null {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      steps: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      'sft-steps': { type: 'string' },
      'sft-batch': { type: 'string' },
      'sft-lr': { type: 'string' },
      'held-out': { type: 'string' },
      'max-new-tokens': { type: 'string' },
      dtype: { type: 'string' },
      recompute: { type: 'boolean', default: false },
      'save-every': { type: 'string' },
      seed: { type: 'string' },
      device: { type: 'string' },
      out: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) return null
  const integer = (value: string | undefined, flag: string, fallback: number, min: number): number => {
    if (value === undefined) return fallback
    const n = Number(value)
    if (!Number.isSafeInteger(n) || n < min) invalidArg(`an integer >= ${min}`, flag, value)
    return n
  }
  const rate = (value: string | undefined, flag: string, fallback: number): number => {
    const x = value === undefined ? fallback : Number(value)
    if (!Number.isFinite(x) || x <= 0) invalidArg('a number > 0', flag, value)
    return x
  }
  if (!values.model) invalidArg('a model folder', '--model', values.model)
  if (!values.data) invalidArg('a prepared JSONL file (node-grpo data prepare)', '--data', values.data)
  const device = (values.device ?? defaultDevice()) as Device
  if (device !== 'cpu' && device !== 'cuda') invalidArg("'cpu' or 'cuda'", '--device', values.device)
  const dtype = values.dtype ?? 'f32'
  if (dtype !== 'f32' && dtype !== 'bf16') invalidArg("'f32' or 'bf16'", '--dtype', values.dtype)
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19)
  return {
    model: values.model,
    data: values.data,
    steps: integer(values.steps, '--steps', 100, 0),
    batch: integer(values.batch, '--batch', 4, 1),
    lr: rate(values.lr, '--lr', 1e-6),
    sftSteps: integer(values['sft-steps'], '--sft-steps', 0, 0),
    sftBatch: integer(values['sft-batch'], '--sft-batch', 8, 1),
    sftLr: rate(values['sft-lr'], '--sft-lr', 1e-5),
    heldOut: integer(values['held-out'], '--held-out', 0, 0),
    maxNewTokens: integer(values['max-new-tokens'], '--max-new-tokens', 256, 1),
    dtype,
    recompute: values.recompute ?? false,
    saveEvery: integer(values['save-every'], '--save-every', 0, 0),
    seed: integer(values.seed, '--seed', 1, 0),
    device,
    out: resolve(values.out ?? join('runs', stamp)),
    quiet: values.quiet ?? false,
  }
}

interface Instance {
  messages: ChatMessage[]
  tools: unknown[]
  answer: PromptToolCall[]
}

/** The instances of a prepared JSONL file (blank lines skipped); a malformed line is an error naming it. */
export async function readInstances(path: string): Promise<Instance[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (cause) {
    throw new GrpoError(`Expected a readable prepared JSONL file for --data but received ${path}: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
  const out: Instance[] = []
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch (cause) {
      throw new GrpoError(`Expected JSON for line ${i + 1} of ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
    }
    const v = value as Partial<Instance>
    if (typeof v !== 'object' || v === null || !Array.isArray(v.messages) || !Array.isArray(v.tools) || !Array.isArray(v.answer)) {
      invalidArg('an instance {messages, tools, answer} (node-grpo data prepare)', `line ${i + 1} of ${path}`, line.slice(0, 80))
    }
    out.push(v as Instance)
  })
  if (out.length === 0) invalidArg('at least one training instance', path, 'an empty file')
  return out
}

export async function run(args: string[]): Promise<number> {
  const config = parseConfig(args)
  if (!config) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  const started = performance.now()
  const out = (line = '') => process.stdout.write(line + '\n')
  const info = backend.info()
  out(`node-grpo train: backend ${info.active} (${info.reason}); model ${config.model} on ${config.device} (${config.dtype} compute)`)

  const tokenizer = await HfTokenizer.fromDir(config.model)
  const policy = await TransformerPolicy.fromPretrained(config.model, { device: config.device, dtype: config.dtype, recompute: config.recompute })
  const c = policy.config
  out(`model: ${c.architecture}, ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads}/${c.numKvHeads} heads, vocabulary ${c.vocabSize}; chat template ${tokenizer.chatTemplate ? 'from tokenizer_config.json' : 'none (ChatML)'}`)
  const eos = tokenizer.eosTokenId ?? policy.stopTokenIds[0]
  if (eos === undefined) {
    policy.dispose()
    invalidArg('an eos token (tokenizer_config.json eos_token or config.json eos_token_id)', config.model, 'none')
  }
  const stop = [...new Set([eos, ...policy.stopTokenIds])]
  const render = (messages: ChatMessage[]): string =>
    tokenizer.chatTemplate ? tokenizer.applyChatTemplate(messages.map((m) => ({ role: m.role, content: m.content })), { addGenerationPrompt: true }) : renderChatML(messages, { addGenerationPrompt: true })
  const instances = await readInstances(config.data)
  const prompts = instances.map((inst): TrainerPrompt & { reference: Int32Array } => {
    const reply = tokenizer.encode(renderCalls(inst.answer, 'answer'))
    const reference = new Int32Array(reply.length + 1)
    reference.set(reply)
    reference[reply.length] = eos
    return { tokens: tokenizer.encode(render(inst.messages)), groundTruth: inst.answer, reference }
  })
  const held = Math.min(config.heldOut, prompts.length - 1)
  const heldOut = prompts.slice(0, held)
  const train = prompts.slice(held)
  out(`data: ${instances.length} instances from ${config.data} (${train.length} train, ${heldOut.length} held out)`)

  await mkdir(config.out, { recursive: true })
  const lines: string[] = []
  const record = (entry: Record<string, unknown>) => lines.push(JSON.stringify(entry))
  const trainer = new Trainer({
    ...presets.toolN1,
    policy,
    // Checkpoints pad the embedding past the tokenizer's ids (Qwen2.5: 151936 rows, 151665 ids); those rows have no
    // text, so a sampled one decodes to nothing.
    decode: (tokens) => tokenizer.decode(Array.from(tokens).filter((id) => id < tokenizer.vocabSize), { skipSpecialTokens: true }),
    stop,
    maxNewTokens: config.maxNewTokens,
    optimizer: { lr: config.lr },
    seed: config.seed,
  })
  const controller = new AbortController()
  const onSigint = () => controller.abort()
  process.once('SIGINT', onSigint)
  try {
    if (config.sftSteps > 0) {
      const longest = Math.max(...train.map((p) => p.reference.length))
      if (longest > config.maxNewTokens) {
        invalidArg(`reference replies within --max-new-tokens for the warm start (the longest has ${longest} tokens)`, '--max-new-tokens', config.maxNewTokens)
      }
      const t0 = performance.now()
      let loss = NaN
      for (let i = 0; i < config.sftSteps; i++) {
        const from = (i * config.sftBatch) % train.length
        const examples = Array.from({ length: Math.min(config.sftBatch, train.length) }, (_, k) => train[(from + k) % train.length]!).map((p) => ({ prompt: p.tokens, completion: p.reference }))
        const m = await trainer.supervisedStep(examples, { lr: config.sftLr })
        loss = m.loss
        record({ phase: 'warmup', ...m })
      }
      trainer.resetOptimizer()
      out(`warm start: ${config.sftSteps} supervised steps, nll ${loss.toFixed(3)} / token (${((performance.now() - t0) / 1000).toFixed(1)}s)`)
    }
    const before = heldOut.length > 0 ? await trainer.evaluate(heldOut) : null
    if (before) {
      record({ phase: 'eval', step: 0, ...before })
      out(`held-out binary reward before GRPO: ${before.reward.toFixed(3)}`)
    }
    out(`GRPO: ${config.steps} steps x ${config.batch} prompts x group ${presets.toolN1.groupSize}, Tool-N1 preset, lr ${config.lr}`)
    const progress = new ProgressBar(config.steps, { quiet: config.quiet })
    const saved: string[] = []
    let recent: number[] = []
    const result = await trainer.train(train, {
      steps: config.steps,
      batchSize: config.batch,
      signal: controller.signal,
      onStep: async (m: StepMetrics) => {
        record({ phase: 'grpo', ...m })
        recent = [...recent.slice(-9), m.rewardMean]
        progress.update(m.step, `reward ${(recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(2)} kl ${m.kl.toExponential(1)} ${m.tokensPerSecond.toFixed(0)} tok/s`)
        if (config.saveEvery > 0 && m.step % config.saveEvery === 0) {
          const dir = join(config.out, `checkpoint-${m.step}`)
          await policy.save(dir)
          saved.push(dir)
        }
      },
    })
    progress.end()
    if (result.aborted) out(`interrupted after ${result.steps.length} steps`)
    const after = heldOut.length > 0 ? await trainer.evaluate(heldOut) : null
    if (before && after) {
      record({ phase: 'eval', step: trainer.stepCount, ...after })
      out('')
      out(table(before, after))
      out('')
    }
    const modelDir = join(config.out, 'model')
    await policy.save(modelDir)
    await writeFile(join(config.out, 'metrics.jsonl'), lines.join('\n') + '\n')
    const evals = before && after ? [{ step: 0, reward: before.reward }, { step: trainer.stepCount, reward: after.reward }] : []
    await writeFile(join(config.out, 'curves.svg'), await renderCurves(result.steps, evals, trainer.settings.epochs))
    const totalSeconds = (performance.now() - started) / 1000
    const summary = {
      config,
      backend: { active: info.active, reason: info.reason, isa: info.cpu.isa, threads: info.cpu.threads },
      heldOut: before && after ? { beforeGrpo: before.reward, afterGrpo: after.reward, count: heldOut.length } : null,
      steps: result.steps.length,
      aborted: result.aborted,
      checkpoints: saved,
      model: modelDir,
      seconds: { total: totalSeconds, grpo: result.steps.reduce((a, m) => a + m.time.total, 0) },
    }
    await writeFile(join(config.out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n')
    out(`wrote ${modelDir} (Hugging Face folder)${saved.length ? `, ${saved.length} checkpoints` : ''}, metrics.jsonl, curves.svg, summary.json in ${config.out}`)
    out(`done in ${totalSeconds.toFixed(1)}s`)
    return 0
  } finally {
    process.off('SIGINT', onSigint)
    trainer.dispose()
    policy.dispose()
  }
}

/**
 * `node-grpo train` (and `npm start`): the main job. On a bundled task (`--task tool`, the single-turn
 * tool-calling task, by default; `--task multi-turn`, where the final call needs a value only a tool returns and
 * the trainer runs the lookup tools between the model's turns) it
 *
 * 1. prints the backend; generates the task and fits its tokenizer;
 * 2. warm-starts a LogLinearPolicy with supervised (nll) steps on a small slice of reference completions;
 * 3. evaluates the held-out binary reward (greedy decoding);
 * 4. runs GRPO with the Tool-N1 preset (group 5, clip 0.2, k3 KL with β = 1e-3, token-mean, T = 0.7),
 *    with a progress bar showing the live reward;
 * 5. evaluates again and prints a before/after table;
 * 6. writes runs/<time>/metrics.jsonl (one line per warm-start step, GRPO step and evaluation, appended as each
 *    happens, so a crash keeps every step done), summary.json and curves.svg (reward, KL, clip fraction and
 *    entropy by step, drawn with vega-lite).
 *
 * Ctrl-C or SIGTERM stops GRPO after the current step and still evaluates and writes everything; a second one
 * exits at once (metrics.jsonl already holds every finished step).
 *
 * Under mpirun / srun (or `node-grpo launch --nproc N train`), every rank runs this same program data-parallel:
 * each GPU (or CPU rank) takes its share of every batch, and rank 0 alone prints, evaluates the totals and writes
 * the files. The results equal those of one process with the same --batch and --seed.
 */
import { closeSync, openSync, writeSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import * as backend from '../backend.js'
import * as distributed from '../distributed.js'
import type { Device } from '../dtype.js'
import { invalidArg } from '../errors.js'
import * as hf from '../hf/index.js'
import { LogLinearPolicy } from '../log-linear-policy.js'
import type { Policy } from '../policy.js'
import { TransformerPolicy } from '../transformer-policy.js'
import { generateToolTask, fitToolTaskTokenizer, type ToolTaskExample, type WordTokenizer } from '../task/index.js'
import { fitMultiTurnTokenizer, generateMultiTurnTask, multiTurnToolFunctions, type MultiTurnExample } from '../task/multi-turn-task.js'
import { toolTurnRenderer } from '../prompt.js'
import { defaultDevice } from '../tensor.js'
import { Trainer, presets, toolCallReward, type RewardFunction, type ToolFunction, type TrainerOptions, type TrainerPrompt } from '../trainer.js'
import { ProgressBar } from './progress.js'
import { renderCurves, table } from './train-report.js'

const USAGE = `Usage: node-grpo train [options]

GRPO on a bundled tool-calling task: warm start, held-out evaluation, GRPO with the Tool-N1 preset,
evaluation again, and runs/<time>/{metrics.jsonl, summary.json, curves.svg}.

Options:
  --task tool|multi-turn  the single-turn task (default), or the multi-turn one: look a value up with a tool,
                        then make the call that needs it (the trainer runs the lookups between turns)
  --max-turns N         model turns per trajectory with --task multi-turn (default 3)
  --policy P            log-linear (default) or transformer: a small Qwen2-layout decoder created from
                        scratch (2 layers, hidden 128, 4 heads of 32, tied embeddings; TransformerPolicy)
  --steps N             GRPO steps (default 300; 100 with --task multi-turn; transformer 240)
  --seed N              seed of the task, the sampling and the data order (default 1)
  --device cpu|cuda     where the policy lives (default: the active backend's device)
  --out DIR             output folder (default runs/<time>)
  --batch N             prompts per GRPO step; each gets 5 completions (default 16)
  --lr X                GRPO learning rate (default 0.006; transformer 1e-4)
  --warmup-examples N   size of the warm-start slice (default 400)
  --warmup-steps N      supervised steps of 64 examples (default 10; 20 with --task multi-turn; transformer 300)
  --warmup-lr X         warm-start learning rate (default 0.03; transformer 3e-3, the peak of its schedule)
  --warmup-schedule S   constant or cosine: 20 steps of linear warm-up, then a cosine decay to a tenth of
                        --warmup-lr (default constant; transformer cosine)
  --temperature X       sampling temperature of GRPO (default 0.7, the Tool-N1 preset's; 1 with --task multi-turn
                        or --policy transformer)
  --filter-groups N     dynamic sampling: drop groups whose rewards are all equal and sample more prompts,
                        up to N sampling rounds per step (default 1: off; 3 with --task multi-turn)
  --reward binary|toolrl  the training reward: the Tool-N1 binary reward or ToolRL's (format and partial credit
                        per tool name, argument name and value); default binary, toolrl with --task multi-turn;
                        held-out is always judged by the binary reward
  --tool-reward W       with --task multi-turn: add a second reward, weight W, of 1 for a trajectory whose
                        tool calls all ran without error (default 0.5; 0: off)
  --no-copy             with --task multi-turn: the log-linear policy without its copy features (pointer
                        features over the latest tool response; see LogLinearPolicy's copySpan)
  --eval-every N        held-out evaluation every N steps, for the curves (default 25; 0: only before/after)
  --save                also write the trained policy and tokenizer to the output folder (transformer: a
                        Hugging Face folder model/)
  --quiet               no progress bar
  --zero                data-parallel runs: shard the AdamW moments across ranks (ZeRO-1)
  --dist-timeout S      data-parallel runs: seconds a collective waits for the other ranks (default 600)
  -h, --help            this text

Data-parallel: mpirun -np 4 npx node-grpo train …, srun … npx node-grpo train …, or node-grpo launch --nproc 4 train …
(--batch is the global batch: every rank samples its share of it).`

const TASKS = ['tool', 'multi-turn'] as const

interface Config {
  task: (typeof TASKS)[number]
  maxTurns: number
  temperature: number
  filterGroups: number
  reward: 'binary' | 'toolrl'
  toolReward: number
  policy: 'log-linear' | 'transformer'
  steps: number
  seed: number
  device: Device
  out: string
  batch: number
  lr: number
  warmupLr: number
  warmupExamples: number
  warmupSteps: number
  warmupSchedule: 'constant' | 'cosine'
  evalEvery: number
  save: boolean
  quiet: boolean
  copy: boolean
  zero: boolean
  distTimeout: number | undefined
}

function integer(value: string | undefined, flag: string, fallback: number, min: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < min) invalidArg(`an integer >= ${min}`, flag, value)
  return n
}

function parseConfig(args: string[]): Config | null {
  const { values } = parseArgs({
    args,
    options: {
      task: { type: 'string' },
      'max-turns': { type: 'string' },
      temperature: { type: 'string' },
      'filter-groups': { type: 'string' },
      reward: { type: 'string' },
      'tool-reward': { type: 'string' },
      policy: { type: 'string' },
      steps: { type: 'string' },
      seed: { type: 'string' },
      device: { type: 'string' },
      out: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      'warmup-examples': { type: 'string' },
      'warmup-steps': { type: 'string' },
      'warmup-lr': { type: 'string' },
      'warmup-schedule': { type: 'string' },
      'eval-every': { type: 'string' },
      save: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      'no-copy': { type: 'boolean', default: false },
      zero: { type: 'boolean', default: false },
      'dist-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) return null
  const device = (values.device ?? defaultDevice()) as Device
  if (device !== 'cpu' && device !== 'cuda') invalidArg("'cpu' or 'cuda'", '--device', values.device)
  const rate = (value: string | undefined, flag: string, fallback: number): number => {
    const x = value === undefined ? fallback : Number(value)
    if (!Number.isFinite(x) || x <= 0) invalidArg('a number > 0', flag, value)
    return x
  }
  const task = (values.task ?? 'tool') as Config['task']
  if (!TASKS.includes(task)) invalidArg(TASKS.map((x) => `'${x}'`).join(' or '), '--task', values.task)
  const policy = values.policy ?? 'log-linear'
  if (policy !== 'log-linear' && policy !== 'transformer') invalidArg("'log-linear' or 'transformer'", '--policy', values.policy)
  const tf = policy === 'transformer'
  const schedule = values['warmup-schedule'] ?? (tf ? 'cosine' : 'constant')
  if (schedule !== 'constant' && schedule !== 'cosine') invalidArg("'constant' or 'cosine'", '--warmup-schedule', values['warmup-schedule'])
  // The multi-turn task's defaults: a longer warm start (two tool calls to learn) and more exploration,
  // ToolRL's partial credit and a tool-use reward (the binary reward alone rarely sees a whole trajectory right),
  // dynamic sampling (most groups of a weak policy have no reward spread). bench/trainer.md has the runs.
  const multiTurn = task === 'multi-turn'
  // The transformer's defaults: a warm start on 400 of the 2000 references (fit, partly general), so GRPO meets
  // prompts it has not memorized and whose samples disagree; temperature 1 for the spread, lr 1e-4 (3e-4 lowers the
  // reward). A warm start on all 2000 scores higher but leaves GRPO nothing to learn. bench/trainer.md has the runs.
  const reward = (values.reward ?? (multiTurn ? 'toolrl' : 'binary')) as Config['reward']
  if (reward !== 'binary' && reward !== 'toolrl') invalidArg("'binary' or 'toolrl'", '--reward', values.reward)
  const toolReward = values['tool-reward'] === undefined ? (multiTurn ? 0.5 : 0) : Number(values['tool-reward'])
  if (!Number.isFinite(toolReward) || toolReward < 0) invalidArg('a number >= 0', '--tool-reward', values['tool-reward'])
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19)
  return {
    task,
    maxTurns: integer(values['max-turns'], '--max-turns', 3, 1),
    temperature: rate(values.temperature, '--temperature', multiTurn || tf ? 1 : presets.toolN1.temperature),
    filterGroups: integer(values['filter-groups'], '--filter-groups', multiTurn ? 3 : 1, 1),
    reward,
    toolReward,
    policy,
    steps: integer(values.steps, '--steps', tf ? 240 : multiTurn ? 100 : 300, 0),
    seed: integer(values.seed, '--seed', 1, 0),
    device,
    out: resolve(values.out ?? join('runs', stamp)),
    batch: integer(values.batch, '--batch', 16, 1),
    lr: rate(values.lr, '--lr', tf ? 1e-4 : 0.006),
    warmupLr: rate(values['warmup-lr'], '--warmup-lr', tf ? 3e-3 : 0.03),
    warmupExamples: integer(values['warmup-examples'], '--warmup-examples', 400, 1),
    warmupSteps: integer(values['warmup-steps'], '--warmup-steps', tf ? 300 : multiTurn ? 20 : 10, 0),
    warmupSchedule: schedule,
    evalEvery: integer(values['eval-every'], '--eval-every', 25, 0),
    save: values.save ?? false,
    quiet: values.quiet ?? false,
    copy: !(values['no-copy'] ?? false),
    zero: values.zero ?? false,
    distTimeout: values['dist-timeout'] === undefined ? undefined : rate(values['dist-timeout'], '--dist-timeout', 600),
  }
}

/**
 * The warm-start learning rate of step i of n: constant, or 20 steps (at most a tenth of n) of linear warm-up from
 * peak/20 and a cosine decay to peak/10 at the last step. A transformer trained from scratch at a constant rate
 * stalls at a noisy loss; the decay lets it settle (measured in bench/trainer.md).
 */
export function warmupLearningRate(schedule: 'constant' | 'cosine', peak: number, i: number, n: number): number {
  if (schedule === 'constant') return peak
  const ramp = Math.max(1, Math.min(20, Math.floor(n / 10)))
  if (i < ramp) return (peak * (i + 1)) / ramp
  const progress = n - ramp <= 1 ? 1 : (i - ramp) / (n - ramp - 1)
  return peak * (0.1 + 0.45 * (1 + Math.cos(Math.PI * progress)))
}

/** Held-out evaluations judge with the binary reward, whatever the training reward. */
const heldOutOptions = { reward: toolCallReward() }

/** The training reward(s): the Tool-N1 binary reward or ToolRL's, and with --tool-reward a tool-use reward. */
function trainingRewards(config: Config): Pick<TrainerOptions, 'reward' | 'rewards'> {
  const call = config.reward === 'toolrl' ? toolCallReward({ variant: 'toolrl' }) : toolCallReward()
  if (config.task !== 'multi-turn' || config.toolReward === 0) return { reward: call }
  // 1 when the trajectory ran tools and none failed: credit for the lookup itself, which the final call's
  // reward only sees through the value it returned.
  const toolUse: RewardFunction = (_text, _prompt, _tokens, context) => {
    const calls = context.turns.flatMap((turn) => turn.calls)
    return calls.length > 0 && calls.every((c) => c.status === 'ok') ? 1 : 0
  }
  return { rewards: [{ name: 'call', fn: call }, { name: 'tool-use', fn: toolUse, weight: config.toolReward }] }
}

/** A training prompt with its reference completion (a whole trajectory, tool turns masked out, in multi-turn). */
type TaskPrompt = TrainerPrompt & { reference: Int32Array; referenceMask?: Uint8Array }

interface LoadedTask {
  description: string
  tokenizer: WordTokenizer
  train: TaskPrompt[]
  heldOut: TaskPrompt[]
  /** What the Trainer needs for this task (the tools and their settings, in multi-turn). */
  trainerOptions: { tools?: Record<string, ToolFunction>; encode?: (text: string) => Int32Array; maxTurns?: number }
}

/**
 * The transformer reads the prompt from the last user turn on, as the log-linear policy's features do: the tools
 * and the system prompt are the same in every request, so they carry nothing it cannot learn, and the prompt
 * shrinks ~10×, which is what makes a transformer trainable here in minutes.
 */
function promptTokens(config: Config, tokenizer: WordTokenizer): (text: string) => Int32Array {
  if (config.policy !== 'transformer') return (text) => tokenizer.encode(text)
  const userTurn = [tokenizer.id('<|im_start|>')!, tokenizer.id('user')!]
  return (text) => {
    const tokens = tokenizer.encode(text)
    for (let i = tokens.length - 2; i >= 0; i--) if (tokens[i] === userTurn[0] && tokens[i + 1] === userTurn[1]) return tokens.slice(i)
    return tokens
  }
}

function loadTask(config: Config): LoadedTask {
  if (config.task === 'tool') {
    const task = generateToolTask({ seed: config.seed, train: 2000, heldOut: 200 })
    const tokenizer = fitToolTaskTokenizer(task)
    const prompt = promptTokens(config, tokenizer)
    const toPrompt = (e: ToolTaskExample): TaskPrompt => ({
      tokens: prompt(e.prompt),
      groundTruth: e.groundTruth,
      reference: tokenizer.encode(e.reference, { eos: true }),
    })
    const train = task.train.map(toPrompt)
    const heldOut = task.heldOut.map(toPrompt)
    const description = `task: ${task.tools.length} tools, ${train.length} train / ${heldOut.length} held-out requests, vocabulary ${tokenizer.vocabSize} tokens`
    return { description, tokenizer, train, heldOut, trainerOptions: {} }
  }
  const task = generateMultiTurnTask({ seed: config.seed, train: 2000, heldOut: 200 })
  const tokenizer = fitMultiTurnTokenizer(task)
  const render = toolTurnRenderer()
  const encode = (text: string) => tokenizer.encode(text)
  const prompt = promptTokens(config, tokenizer)
  // The reference trajectory as the trainer builds one: each model turn ends on the stop token, the tool turn
  // between them is rendered and encoded the same way, and masked out (the model does not write it).
  const toPrompt = (e: MultiTurnExample): TaskPrompt => {
    const parts: { tokens: Int32Array; model: boolean }[] = []
    e.reference.turns.forEach((turn, i) => {
      const tokens = tokenizer.encode(turn, { eos: true })
      parts.push({ tokens, model: true })
      const result = e.reference.results[i]
      if (result !== undefined) {
        const name = Object.keys(e.records)[0]!
        parts.push({ tokens: encode(render([{ name, content: result }], tokenizer.decode(tokens))), model: false })
      }
    })
    const length = parts.reduce((n, p) => n + p.tokens.length, 0)
    const reference = new Int32Array(length)
    const referenceMask = new Uint8Array(length)
    let at = 0
    for (const p of parts) {
      reference.set(p.tokens, at)
      referenceMask.fill(p.model ? 1 : 0, at, at + p.tokens.length)
      at += p.tokens.length
    }
    return { tokens: prompt(e.prompt), groundTruth: e.groundTruth, records: e.records, reference, referenceMask }
  }
  const train = task.train.map(toPrompt)
  const heldOut = task.heldOut.map(toPrompt)
  const tools = multiTurnToolFunctions()
  const description =
    `task: multi-turn, ${task.tools.length} tools (${Object.keys(tools).length} run by the trainer, up to ${config.maxTurns} model turns), ` +
    `${train.length} train / ${heldOut.length} held-out requests, vocabulary ${tokenizer.vocabSize} tokens`
  return { description, tokenizer, train, heldOut, trainerOptions: { tools, encode, maxTurns: config.maxTurns } }
}

export async function run(args: string[]): Promise<number> {
  // A Hugging Face model and prepared data: the Tool-N1 recipe on a real checkpoint (lib/commands/train-model.ts).
  if (args.some((a) => a === '--model' || a.startsWith('--model='))) return (await import('./train-model.js')).run(args)
  // One GPU per local rank when a launcher started several processes: before anything starts CUDA.
  const launched = distributed.launched()
  if (launched) distributed.assignDevice()
  const config = parseConfig(args)
  if (!config) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  const started = performance.now()
  const world = launched ? distributed.init(config.distTimeout ? { timeout: config.distTimeout } : {}) : null
  const writer = !world || world.rank === 0
  const out = (line = '') => {
    if (writer) process.stdout.write(line + '\n')
  }
  const info = backend.info()
  out(`node-grpo train: backend ${info.active} (${info.reason}); cpu ${info.cpu.isa} x${info.cpu.threads} threads; policy on ${config.device}`)
  if (world) {
    out(`data-parallel: ${world.size} ranks (${world.launcher}, ${world.mpi.version}), ${world.localSize} on this machine, ZeRO-${config.zero ? 1 : 0}; cuda tensors over ${world.cudaTransport}`)
  }

  const task = loadTask(config)
  const { tokenizer, train, heldOut } = task
  out(task.description)

  if (writer) await mkdir(config.out, { recursive: true })
  // One synchronous append per entry (rank 0 alone writes): a step takes far longer than the write, and whatever
  // ends the process (a second Ctrl-C, SIGKILL, a crash) leaves every finished step in the file.
  const metricsPath = join(config.out, 'metrics.jsonl')
  const metrics = writer ? openSync(metricsPath, 'w') : null
  const record = (entry: Record<string, unknown>) => {
    if (metrics !== null) writeSync(metrics, JSON.stringify(entry) + '\n')
  }

  const policy: Policy =
    config.policy === 'transformer'
      ? TransformerPolicy.create(
          {
            architecture: 'Qwen2ForCausalLM',
            vocabSize: tokenizer.vocabSize,
            hiddenSize: 128,
            intermediateSize: 256,
            numLayers: 2,
            numHeads: 4,
            numKvHeads: 2,
            headDim: 32,
            tieWordEmbeddings: true,
            maxPositionEmbeddings: 2048,
            eosTokenIds: [tokenizer.eosId],
          },
          { seed: config.seed, device: config.device },
        )
      : new LogLinearPolicy({
          vocabSize: tokenizer.vocabSize,
          hashSize: 32768,
          device: config.device,
          promptWindow: 40,
          // The features see the user's request: whitespace and the chat markers around it carry nothing.
          ignoreTokens: [' ', '\n', '<|im_end|>', '<|im_start|>', 'assistant'].map((piece) => tokenizer.id(piece)!),
          windowAfter: [tokenizer.id('<|im_start|>')!, tokenizer.id('user')!],
          // Multi-turn: the final call copies a value from the latest tool response (pointer features over it).
          copySpan: config.task === 'multi-turn' && config.copy ? { open: tokenizer.id('<tool_response>')!, close: tokenizer.id('</tool_response>')! } : null,
        })
  if (policy instanceof TransformerPolicy) {
    const c = policy.config
    out(`policy: TransformerPolicy (${c.architecture} layout from scratch: ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads of ${c.headDim}, ${hf.parameterCount(c)} parameters)`)
  }
  const trainer = new Trainer({
    ...presets.toolN1,
    policy,
    decode: (tokens) => tokenizer.decode(tokens),
    stop: [tokenizer.eosId],
    maxNewTokens: 64,
    temperature: config.temperature,
    filterGroups: config.filterGroups > 1 ? { maxRounds: config.filterGroups } : null,
    ...trainingRewards(config),
    ...task.trainerOptions,
    optimizer: {
      lr: config.lr,
      // Adam divides each coordinate by its own gradient scale, so the tiny, always-positive gradients of the
      // logits of tokens the policy never emits would otherwise move as fast as real signal and slowly lift
      // the whole tail of the vocabulary; an eps well above those gradients (~1e-9) and well below the real
      // ones (~1e-4) stops that without slowing learning.
      eps: 1e-5,
    },
    seed: config.seed,
    distributed: world ? { zero: config.zero ? 1 : 0, ...(config.distTimeout ? { timeout: config.distTimeout } : {}) } : false,
  })
  const controller = new AbortController()
  const onSignal = (signal: NodeJS.Signals = 'SIGINT') => {
    if (!controller.signal.aborted) {
      out(`\n${signal}: stopping after the current step (again to exit at once)`)
      controller.abort()
      return
    }
    if (metrics !== null) closeSync(metrics)
    process.exit(signal === 'SIGINT' ? 130 : 143)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    // 1. Warm start: a few supervised passes over a small slice, so the first samples already earn reward.
    const slice = train.slice(0, Math.min(config.warmupExamples, train.length))
    const warmStart = performance.now()
    let loss = NaN
    for (let i = 0; i < config.warmupSteps; i++) {
      const from = (i * 64) % slice.length
      const examples = slice.slice(from, from + 64).map((p) => ({ prompt: p.tokens, completion: p.reference, mask: p.referenceMask }))
      const m = await trainer.supervisedStep(examples, { lr: warmupLearningRate(config.warmupSchedule, config.warmupLr, i, config.warmupSteps) })
      loss = m.loss
      record({ phase: 'warmup', ...m })
    }
    trainer.resetOptimizer()
    out(`warm start: ${config.warmupSteps} supervised steps on ${slice.length} examples (lr ${config.warmupLr}, ${config.warmupSchedule}), nll ${loss.toFixed(3)} / token (${((performance.now() - warmStart) / 1000).toFixed(1)}s)`)

    // 2. Held-out reward before GRPO.
    const before = await trainer.evaluate(heldOut, heldOutOptions)
    record({ phase: 'eval', step: 0, ...before })
    out(`held-out binary reward after warm start: ${before.reward.toFixed(3)}`)

    // 3. GRPO.
    const extras = [
      config.temperature !== presets.toolN1.temperature ? `T ${config.temperature}` : '',
      `${config.reward} reward${config.task === 'multi-turn' && config.toolReward > 0 ? ` + ${config.toolReward} × tool-use` : ''}`,
      config.filterGroups > 1 ? `filterGroups ${config.filterGroups} rounds` : '',
    ].filter(Boolean)
    out(`GRPO: ${config.steps} steps x ${config.batch} prompts x group ${presets.toolN1.groupSize}, Tool-N1 preset (${extras.join(', ')}), lr ${config.lr}`)
    const progress = new ProgressBar(config.steps, { quiet: config.quiet || !writer })
    const evals: { step: number; reward: number }[] = [{ step: 0, reward: before.reward }]
    let recent: number[] = []
    let lastEval = before.reward
    const result = await trainer.train(train, {
      steps: config.steps,
      batchSize: config.batch,
      evalEvery: config.evalEvery,
      evalPrompts: heldOut,
      evalOptions: heldOutOptions,
      signal: controller.signal,
      onStep: (m) => {
        record({ phase: 'grpo', ...m })
        recent = [...recent.slice(-9), m.rewardMean]
        const live = recent.reduce((a, b) => a + b, 0) / recent.length
        progress.update(m.step, `reward ${live.toFixed(2)} (held-out ${lastEval.toFixed(2)}) kl ${m.kl.toExponential(1)} ${m.tokensPerSecond.toFixed(0)} tok/s`)
      },
      onEval: (e, step) => {
        lastEval = e.reward
        evals.push({ step, reward: e.reward })
        record({ phase: 'eval', step, ...e })
      },
    })
    progress.end()
    if (result.aborted) out(`interrupted after ${result.steps.length} steps`)
    const grpoSeconds = result.steps.reduce((a, m) => a + m.time.total, 0)

    // 4. Held-out reward after GRPO.
    const after = await trainer.evaluate(heldOut, heldOutOptions)
    if (evals[evals.length - 1]!.step !== trainer.stepCount) {
      evals.push({ step: trainer.stepCount, reward: after.reward })
      record({ phase: 'eval', step: trainer.stepCount, ...after })
    }
    out('')
    out(table(before, after))
    out('')

    // 5. Files (rank 0 alone writes them).
    if (!writer) return 0
    const svg = await renderCurves(result.steps, evals, trainer.settings.epochs)
    await writeFile(join(config.out, 'curves.svg'), svg)
    const totalSeconds = (performance.now() - started) / 1000
    const time = { sample: 0, tools: 0, reward: 0, loss: 0, update: 0 }
    for (const m of result.steps) for (const k of Object.keys(time) as (keyof typeof time)[]) time[k] += m.time[k]
    const summary = {
      config,
      backend: { active: info.active, reason: info.reason, isa: info.cpu.isa, threads: info.cpu.threads },
      world: world ? { size: world.size, launcher: world.launcher, mpi: world.mpi.version, zero: config.zero ? 1 : 0 } : { size: 1 },
      heldOut: { beforeGrpo: before.reward, afterGrpo: after.reward, count: heldOut.length },
      steps: result.steps.length,
      aborted: result.aborted,
      seconds: { total: totalSeconds, grpo: grpoSeconds, ...time },
    }
    await writeFile(join(config.out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n')
    if (config.save) {
      await policy.save(join(config.out, policy instanceof TransformerPolicy ? 'model' : 'policy.safetensors'))
      await writeFile(join(config.out, 'tokenizer.json'), JSON.stringify(tokenizer.toJSON()) + '\n')
    }
    out(`GRPO time split: sampling ${time.sample.toFixed(1)}s, tools ${time.tools.toFixed(1)}s, reward ${time.reward.toFixed(1)}s, loss ${time.loss.toFixed(1)}s, update ${time.update.toFixed(1)}s`)
    out(`wrote ${metricsPath}, ${join(config.out, 'curves.svg')}, summary.json${config.save ? (config.policy === 'transformer' ? ', model/, tokenizer.json' : ', policy.safetensors, tokenizer.json') : ''}`)
    out(`done in ${totalSeconds.toFixed(1)}s`)
    return 0
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    if (metrics !== null) closeSync(metrics)
    trainer.dispose()
    policy.dispose()
  }
}

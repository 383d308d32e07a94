/**
 * `node-grpo train` (the main job), run in-process on a few steps: what it prints, the files it writes, its
 * flags, and Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { run, warmupLearningRate } from '../../lib/commands/train.js'
import { readSafetensors } from '../../lib/index.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const dir = await mkdtemp(join(tmpdir(), 'node-grpo-train-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

/** Runs the command with stdout captured; `onLine` sees each line as it is written. */
async function capture(args: string[], onLine: (line: string) => void = () => {}): Promise<{ code: number; out: string }> {
  const write = process.stdout.write
  let out = ''
  process.stdout.write = ((chunk: string | Uint8Array) => {
    const text = String(chunk)
    out += text
    for (const line of text.split('\n')) onLine(line)
    return true
  }) as typeof process.stdout.write
  try {
    const code = await run(args)
    return { code, out }
  } finally {
    process.stdout.write = write
  }
}

t.test('a short run: backend, warm start, evaluations, table, files', async (t) => {
  const out = join(dir, 'run')
  const r = await capture(['--steps', '4', '--batch', '4', '--warmup-steps', '2', '--warmup-examples', '64', '--eval-every', '2', '--seed', '2', '--out', out, '--save', '--device', 'cpu'])
  t.equal(r.code, 0)
  t.match(r.out, /node-grpo train: backend cpu/)
  t.match(r.out, /task: 11 tools, 2000 train \/ 200 held-out requests/)
  t.match(r.out, /warm start: 2 supervised steps on 64 examples/)
  t.match(r.out, /held-out binary reward after warm start: \d\.\d{3}/)
  t.match(r.out, /held-out binary reward\s+\d\.\d{3}\s+\d\.\d{3}/, 'the before/after table')
  t.match(r.out, /GRPO time split: sampling/)
  t.match(r.out, /4\/4 reward/, 'progress')
  const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l))
  t.same(lines.filter((l) => l.phase === 'warmup').length, 2)
  t.same(lines.filter((l) => l.phase === 'grpo').map((l) => l.step), [1, 2, 3, 4])
  t.same(lines.filter((l) => l.phase === 'eval').map((l) => l.step), [0, 2, 4], 'before, every 2 steps')
  const grpo = lines.find((l) => l.phase === 'grpo')
  for (const key of ['rewardMean', 'rewardStd', 'zeroStdFraction', 'reasons', 'kl', 'clipFrac', 'entropy', 'completionLength', 'gradNorm', 'tokensPerSecond', 'time']) {
    t.ok(key in grpo, `metrics carry ${key}`)
  }
  const svg = await readFile(join(out, 'curves.svg'), 'utf8')
  t.match(svg, /^<svg/)
  for (const title of ['reward', 'KL to reference', 'clip fraction', 'entropy']) t.match(svg, title)
  const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'))
  t.equal(summary.steps, 4)
  t.equal(summary.config.seed, 2)
  t.ok(summary.heldOut.beforeGrpo >= 0 && summary.heldOut.afterGrpo >= 0)
  t.ok((await stat(join(out, 'policy.safetensors'))).size > 0, '--save writes the policy')
  t.ok((await stat(join(out, 'tokenizer.json'))).size > 0, 'and the tokenizer')
})

t.test('--task multi-turn: tools between turns, two rewards, dynamic sampling', async (t) => {
  const out = join(dir, 'multi-turn')
  const r = await capture(['--task', 'multi-turn', '--steps', '2', '--batch', '2', '--warmup-steps', '2', '--warmup-examples', '32', '--eval-every', '0', '--filter-groups', '2', '--reward', 'toolrl', '--tool-reward', '0.5', '--temperature', '1', '--max-turns', '2', '--out', out, '--quiet', '--save'])
  t.equal(r.code, 0)
  t.match(r.out, /task: multi-turn, 10 tools \(5 run by the trainer, up to 2 model turns\), 2000 train \/ 200 held-out requests/)
  t.match(r.out, /held-out binary reward\s+\d\.\d{3}\s+\d\.\d{3}/)
  t.match(r.out, /mean model turns\s+\d\.\d\d\s+\d\.\d\d/)
  t.match(r.out, /tool calls run\s+\d+\s+\d+/)
  t.match(r.out, /GRPO time split: sampling [\d.]+s, tools [\d.]+s/)
  const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l))
  const grpo = lines.filter((l) => l.phase === 'grpo')
  t.equal(grpo.length, 2)
  t.same(Object.keys(grpo[0].rewards), ['call', 'tool-use'])
  t.ok(grpo[0].filter.rounds >= 1 && grpo[0].filter.rounds <= 2)
  t.ok(grpo[0].tools.meanTurns >= 1)
  const evals = lines.filter((l) => l.phase === 'eval')
  t.same(Object.keys(evals[0].rewards), ['reward'], 'held-out is judged by the binary reward alone')
  // The policy copies from the latest tool response (LogLinearPolicy's copySpan, on by default; --no-copy: off).
  const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'))
  t.equal(summary.config.copy, true)
  const saved = JSON.parse((await readSafetensors(join(out, 'policy.safetensors'))).metadata.config!)
  const tokenizer = JSON.parse(await readFile(join(out, 'tokenizer.json'), 'utf8'))
  t.same(saved.copySpan, { open: tokenizer.vocab.indexOf('<tool_response>'), close: tokenizer.vocab.indexOf('</tool_response>') }, 'copySpan: the tool-response tags')
  await t.rejects(capture(['--task', 'chess']), { message: /'tool' or 'multi-turn' for --task/ })
  await t.rejects(capture(['--reward', 'gold']), { message: /'binary' or 'toolrl' for --reward/ })
  await t.rejects(capture(['--tool-reward=-1']), { message: /number >= 0 for --tool-reward/ })
})

t.test('Ctrl-C stops GRPO and still reports', async (t) => {
  const out = join(dir, 'interrupted')
  const r = await capture(['--steps', '50', '--warmup-steps', '1', '--eval-every', '0', '--out', out, '--quiet'], (line) => {
    if (line.startsWith('GRPO:')) process.emit('SIGINT')
  })
  t.equal(r.code, 0)
  t.match(r.out, /interrupted after 0 steps/)
  t.match(r.out, /held-out binary reward\s+\d\.\d{3}\s+\d\.\d{3}/)
  t.ok((await stat(join(out, 'curves.svg'))).size > 0)
})

/** `node-grpo train` in a child process; resolves when it exits, after `onMetrics` saw metrics.jsonl grow. */
function spawnTrain(args: string[]): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> } {
  const child = spawn(process.execPath, [...process.execArgv, 'lib/cli.ts', 'train', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (chunk) => (out += chunk))
  child.stderr!.on('data', (chunk) => (out += chunk))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out })))
  return { child, exited }
}

async function grpoLines(path: string): Promise<number> {
  try {
    return (await readFile(path, 'utf8')).split('\n').filter((l) => l.includes('"phase":"grpo"')).length
  } catch {
    return 0
  }
}

async function waitFor(condition: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (await condition()) return true
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}

const FAST = ['--steps', '400', '--batch', '2', '--warmup-steps', '1', '--warmup-examples', '64', '--eval-every', '0', '--quiet', '--device', 'cpu']

t.test('SIGTERM stops like Ctrl-C: every finished step is in metrics.jsonl, and the report is written (issue 18 item 7)', async (t) => {
  const out = join(dir, 'sigterm')
  const { child, exited } = spawnTrain([...FAST, '--out', out])
  t.ok(await waitFor(async () => (await grpoLines(join(out, 'metrics.jsonl'))) >= 2, 240_000), 'GRPO steps appear in metrics.jsonl while training runs')
  child.kill('SIGTERM')
  const { code, out: printed } = await exited
  t.equal(code, 0, printed.slice(-2000))
  t.match(printed, /SIGTERM: stopping after the current step/)
  const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'))
  t.equal(summary.aborted, true)
  const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l))
  const steps = lines.filter((l) => l.phase === 'grpo').map((l) => l.step)
  t.equal(steps.length, summary.steps, 'every step in the file')
  t.same(steps, Array.from({ length: steps.length }, (_, i) => i + 1))
})

t.test('a killed run keeps every finished step in metrics.jsonl (issue 18 item 7)', async (t) => {
  const out = join(dir, 'killed')
  const { child, exited } = spawnTrain([...FAST, '--out', out])
  t.ok(await waitFor(async () => (await grpoLines(join(out, 'metrics.jsonl'))) >= 2, 240_000))
  child.kill('SIGKILL')
  const { signal } = await exited
  t.equal(signal, 'SIGKILL')
  const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).split('\n').filter((l) => l !== '')
  const parsed = lines.map((l) => JSON.parse(l))
  t.ok(parsed.filter((l) => l.phase === 'grpo').length >= 2, 'the steps done before the kill')
  t.same(parsed.slice(0, 2).map((l) => l.phase), ['warmup', 'eval'])
})

t.test('--policy transformer: a small decoder from scratch, saved as a Hugging Face folder', async (t) => {
  const out = join(dir, 'transformer')
  const r = await capture(['--policy', 'transformer', '--steps', '1', '--batch', '2', '--warmup-steps', '1', '--eval-every', '0', '--out', out, '--save', '--quiet', '--device', 'cpu'])
  t.equal(r.code, 0)
  t.match(r.out, /policy: TransformerPolicy \(Qwen2ForCausalLM layout from scratch: 2 layers, hidden 128, 4 heads of 32, \d+ parameters\)/)
  t.match(r.out, /held-out binary reward\s+\d\.\d{3}\s+\d\.\d{3}/)
  const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'))
  t.equal(summary.config.policy, 'transformer')
  t.equal(summary.config.lr, 1e-4, 'the transformer defaults')
  t.equal(summary.config.temperature, 1)
  t.equal(summary.config.warmupSchedule, 'cosine')
  t.equal(summary.config.warmupExamples, 400)
  t.ok((await stat(join(out, 'model', 'config.json'))).size > 0, '--save writes a Hugging Face folder')
  await t.rejects(capture(['--policy', 'rnn']), { message: /'log-linear' or 'transformer' for --policy/ })
})

t.test('the warm-start learning-rate schedules', async (t) => {
  t.equal(warmupLearningRate('constant', 0.03, 7, 10), 0.03)
  const n = 600
  const rates = Array.from({ length: n }, (_, i) => warmupLearningRate('cosine', 3e-3, i, n))
  t.equal(rates[0], 3e-3 / 20, 'linear warm-up from peak/20')
  t.equal(rates[19], 3e-3, 'the peak after 20 steps')
  t.ok(Math.abs(rates[n - 1]! - 3e-4) < 1e-15, 'a tenth of the peak at the last step')
  t.ok(rates.slice(19).every((r, i, a) => i === 0 || r <= a[i - 1]!), 'then decreasing')
  t.ok(Math.abs(rates[19 + Math.round((n - 21) / 2)]! - 1.65e-3) < 1e-5, 'half way between peak and floor half way through the decay')
  // Short runs: the ramp is at most a tenth of them, and one or two steps still run.
  t.equal(warmupLearningRate('cosine', 1, 0, 10), 1)
  t.equal(warmupLearningRate('cosine', 1, 0, 1), 1)
  t.equal(warmupLearningRate('cosine', 1, 1, 2), 0.1)
  await t.rejects(capture(['--warmup-schedule', 'linear']), { code: 'ERR_GRPO_INVALID_ARG', message: /'constant' or 'cosine' for --warmup-schedule/ })
})

t.test('--help and bad flags', async (t) => {
  const help = await capture(['--help'])
  t.equal(help.code, 0)
  t.match(help.out, /Usage: node-grpo train/)
  await t.rejects(capture(['--steps', 'many']), { code: 'ERR_GRPO_INVALID_ARG', message: /integer >= 0 for --steps but received "many"/ })
  await t.rejects(capture(['--lr=-1']), { message: /number > 0 for --lr/ })
  await t.rejects(capture(['--device', 'tpu']), { message: /'cpu' or 'cuda' for --device/ })
  await t.rejects(capture(['--unknown']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' })
})

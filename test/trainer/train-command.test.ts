/**
 * `node-grpo train` (the main job), run in-process on a few steps: what it prints, the files it writes, its
 * flags, and Ctrl-C.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { run } from '../../lib/commands/train.js'

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
  const r = await capture(['--task', 'multi-turn', '--steps', '2', '--batch', '2', '--warmup-steps', '2', '--warmup-examples', '32', '--eval-every', '0', '--filter-groups', '2', '--reward', 'toolrl', '--tool-reward', '0.5', '--temperature', '1', '--max-turns', '2', '--out', out, '--quiet'])
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

t.test('--help and bad flags', async (t) => {
  const help = await capture(['--help'])
  t.equal(help.code, 0)
  t.match(help.out, /Usage: node-grpo train/)
  await t.rejects(capture(['--steps', 'many']), { code: 'ERR_GRPO_INVALID_ARG', message: /integer >= 0 for --steps but received "many"/ })
  await t.rejects(capture(['--lr=-1']), { message: /number > 0 for --lr/ })
  await t.rejects(capture(['--device', 'tpu']), { message: /'cpu' or 'cuda' for --device/ })
  await t.rejects(capture(['--unknown']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' })
})

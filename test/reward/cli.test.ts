import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { runReward } from '../../lib/commands/reward.js'
import { scoreToolCall } from '../../lib/reward/index.js'
// @ts-expect-error: a plain .mjs helper shared with the benchmark
import { makeItems } from '../../bench/reward-data.mjs'

const root = fileURLToPath(new URL('../../', import.meta.url))
const GT = '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]'
const GOOD = '<think>ok</think><tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]</tool_call>'

function sink() {
  const stream = new PassThrough()
  let text = ''
  stream.on('data', (chunk) => (text += chunk))
  return { stream, text: () => text }
}

async function runWith(args: string[], stdin = '') {
  const stdout = sink()
  const stderr = sink()
  const code = await runReward(args, { stdin: Readable.from([stdin]), stdout: stdout.stream, stderr: stderr.stream })
  return { code, stdout: stdout.text(), stderr: stderr.text() }
}

t.test('scores a JSONL file: one line out per line in, a summary on stderr', async (t) => {
  const lines = [
    { completion: GOOD, ground_truth: GT },
    { completion: 'no call', ground_truth: GT },
    { completion: GOOD.replace('"days": 2', '"days": 2.0'), ground_truth: JSON.parse(GT) },
    { completion: GOOD, ground_truth: JSON.parse(GT) },
  ]
  const dir = t.testdir({ 'in.jsonl': lines.map((l) => JSON.stringify(l)).join('\n') + '\n' })
  const { code, stdout, stderr } = await runWith(['--input', join(dir, 'in.jsonl')])
  t.equal(code, 0)
  t.same(stdout.trimEnd().split('\n').map((l) => JSON.parse(l)), [
    { score: 1, reason: 'ok' },
    { score: 0, reason: 'no-call' },
    { score: 0, reason: 'args-mismatch' },
    { score: 1, reason: 'ok' },
  ])
  t.match(stderr, /4 completions, mean score 0\.5000/)
  t.match(stderr, /ok\s+2\n/)
  t.match(stderr, /no-call\s+1\n/)
})

t.test('options, stdin, an output file, and a batch large enough for the workers', async (t) => {
  const items: Array<{ completion: string; groundTruth: string }> = makeItems(1000, 5, 31)
  const input = items.map((i) => JSON.stringify({ completion: i.completion, ground_truth: i.groundTruth })).join('\n')
  const dir = t.testdir()
  const out = join(dir, 'scores.jsonl')
  const { code, stdout } = await runWith(['-i', '-', '-o', out, '--variant', 'partial-name', '--think-order', 'strict'], input)
  t.equal(code, 0)
  t.equal(stdout, '')
  const scores = readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l))
  t.equal(scores.length, 5000)
  const expected = items.map((i) => scoreToolCall(i.completion, i.groundTruth, { variant: 'partial-name', thinkOrder: 'strict' }))
  t.ok(scores.every((s, i) => s.score === expected[i]!.score && s.reason === expected[i]!.reason), 'same as the single form')
})

t.test('lines that cannot be scored are reported in place, and the exit code says so', async (t) => {
  const input = [
    JSON.stringify({ completion: GOOD, ground_truth: GT }),
    'not json',
    JSON.stringify([1]),
    JSON.stringify({ completion: 5, ground_truth: GT }),
    JSON.stringify({ completion: GOOD }),
    JSON.stringify({ completion: GOOD, ground_truth: '[{"name": "f"}]' }),
    JSON.stringify({ completion: GOOD, ground_truth: GT }),
  ].join('\n')
  const { code, stdout, stderr } = await runWith(['--input', '-'], input)
  t.equal(code, 2)
  const out = stdout.trimEnd().split('\n').map((l) => JSON.parse(l))
  t.same(out.map((o) => o.reason), ['ok', 'invalid-input', 'invalid-input', 'invalid-input', 'invalid-input', 'invalid-input', 'ok'])
  t.match(out[1].error, /invalid JSON/)
  t.match(out[2].error, /a JSON object/)
  t.match(out[3].error, /a string for completion/)
  t.match(out[4].error, /ground_truth/)
  t.match(out[5].error, /for ground_truth\[0\]/)
  t.match(stderr, /invalid-input\s+5/)
})

t.test('line numbers in errors, blank lines answered in place, a JSON array with a broken element (issue 18 item 6)', async (t) => {
  const input = [JSON.stringify({ completion: GOOD, ground_truth: GT }), '', 'not json', '  ', JSON.stringify({ completion: GOOD, ground_truth: '[{"name": "f"}]' }), JSON.stringify({ completion: 'x', ground_truth: GT })].join('\n')
  const { code, stdout } = await runWith(['--input', '-'], input)
  t.equal(code, 2)
  const lines = stdout.split('\n')
  t.equal(lines.length, 7, 'six lines out for six lines in (and the final newline)')
  t.same([lines[1], lines[3]], ['', ''], 'blank lines stay blank: line k out answers line k in')
  t.same(JSON.parse(lines[0]!), { score: 1, reason: 'ok' })
  t.match(JSON.parse(lines[2]!), { score: null, reason: 'invalid-input', line: 3, error: /for line 3 but received invalid JSON/ })
  t.match(JSON.parse(lines[4]!), { reason: 'invalid-input', line: 5, error: /for ground_truth\[0\] of line 5/ })
  t.same(JSON.parse(lines[5]!), { score: 0, reason: 'no-call' })
  // A JSON array: one broken element is reported on its own, the others are scored.
  const array = `[\n${JSON.stringify({ completion: GOOD, ground_truth: GT })},\n{"completion": "b", "ground_truth": [1, 2},\n${JSON.stringify({ completion: GOOD, ground_truth: JSON.parse(GT) })}\n]`
  const fromArray = await runWith(['--input', '-'], array)
  t.equal(fromArray.code, 2)
  const out = fromArray.stdout.trimEnd().split('\n').map((l) => JSON.parse(l))
  t.same(out.map((o) => o.reason), ['ok', 'invalid-input', 'ok'])
  t.equal(out[1].line, 3)
  const truncated = await runWith(['--input', '-'], `[${JSON.stringify({ completion: GOOD, ground_truth: GT })},\n`)
  t.same(truncated.stdout.trimEnd().split('\n').map((l) => JSON.parse(l).reason), ['ok', 'invalid-input'], 'an unclosed array: the records, then the error')
})

t.test('--output to a folder that does not exist: a one-line error, no stack trace (issue 18 item 6)', async (t) => {
  const { code, stderr } = await runWith(['--input', '-', '--output', '/nonexistent/dir/out.jsonl'], JSON.stringify({ completion: GOOD, ground_truth: GT }))
  t.equal(code, 1)
  t.match(stderr, /^node-grpo reward: Expected a writable file for --output but received "\/nonexistent\/dir\/out\.jsonl": ENOENT/)
  t.notMatch(stderr, /\n\s+at /, 'no stack trace')
  const dir = t.testdir({ 'in.jsonl': JSON.stringify({ completion: GOOD, ground_truth: GT }) + '\n' })
  const result = spawnSync(process.execPath, [...process.execArgv, 'lib/cli.ts', 'reward', '-i', join(dir, 'in.jsonl'), '-o', join(dir, 'missing', 'out.jsonl')], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  t.equal(result.status, 1)
  t.match(result.stderr, /Expected a writable file for --output/)
  t.notMatch(result.stderr, /node:events|Unhandled 'error' event/)
})

t.test('help and usage errors', async (t) => {
  const help = await runWith(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: node-grpo reward/)
  const missing = await runWith([])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /--input is required/)
  const unknown = await runWith(['--nope'])
  t.equal(unknown.code, 1)
  await t.rejects(runWith(['--input', '-', '--variant', 'soft']), { code: 'ERR_GRPO_INVALID_ARG', message: /options\.variant/ })
  await t.rejects(runWith(['--input', '/nonexistent/in.jsonl']), { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG', message: /readable file .*ENOENT/ })
  const empty = await runWith(['--input', '-'], '')
  t.equal(empty.code, 0)
  t.match(empty.stderr, /0 completions/)
})

t.test('node-grpo reward from the command line', async (t) => {
  const dir = t.testdir({ 'in.jsonl': JSON.stringify({ completion: GOOD, ground_truth: GT }) + '\n' + JSON.stringify({ completion: 'x', ground_truth: GT }) + '\n' })
  const result = spawnSync(process.execPath, [...process.execArgv, 'lib/cli.ts', 'reward', '--input', join(dir, 'in.jsonl')], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  t.equal(result.status, 0, result.stderr)
  t.equal(result.stdout, '{"score":1,"reason":"ok"}\n{"score":0,"reason":"no-call"}\n')
  t.match(result.stderr, /2 completions, mean score 0\.5000/)
})

t.test('the node-grpo dispatcher lists reward, data and serve and reports command errors', async (t) => {
  const node = (...args: string[]) => spawnSync(process.execPath, [...process.execArgv, 'lib/cli.ts', ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  const help = node('--help')
  t.equal(help.status, 0)
  t.match(help.stdout, /^\s+reward\s+score tool-call completions/m)
  t.match(help.stdout, /^\s+data\s+prepare xLAM and ToolACE training data/m)
  t.match(help.stdout, /^\s+serve\s+the reward as an HTTP service/m)
  const unknown = node('frobnicate')
  t.equal(unknown.status, 1)
  t.match(unknown.stderr, /unknown command "frobnicate"/)
  const failing = node('reward', '--input', '/nonexistent/in.jsonl')
  t.equal(failing.status, 1)
  t.match(failing.stderr, /^node-grpo: ERR_GRPO_INVALID_ARG: Expected a readable file for "\/nonexistent\/in\.jsonl" but received: ENOENT/)
  t.equal(node().status, 1, 'no command: usage and exit code 1')
})

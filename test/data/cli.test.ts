import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { runData } from '../../lib/commands/data.js'

const root = fileURLToPath(new URL('../../', import.meta.url))

const tool = { name: 'get_time', description: 'Local time', parameters: { tz: { description: 'Zone', type: 'str' } } }
const xlam = [
  { id: 1, query: 'Time in Tokyo?', tools: JSON.stringify([tool]), answers: JSON.stringify([{ name: 'get_time', arguments: { tz: 'Asia/Tokyo' } }]) },
  { id: 2, query: 'Weather?', tools: JSON.stringify([tool]), answers: JSON.stringify([{ name: 'get_weather', arguments: {} }]) },
]
const toolace = [
  {
    system: 'Here is a list of functions in JSON format that you can invoke:\n[{"name": "Tide Times", "parameters": {}}]\nMore text.',
    conversations: [
      { from: 'user', value: 'Tides?' },
      { from: 'assistant', value: '[Tide Times(port="Le Havre (north)", days=2)]' },
    ],
  },
  { system: 'Here is a list of functions in JSON format that you can invoke: [{"name": "f"}]', conversations: [{ from: 'assistant', value: '[f(1)]' }] },
]

async function runWith(args: string[]) {
  let stdout = ''
  let stderr = ''
  const out = new PassThrough().on('data', (c) => (stdout += c))
  const err = new PassThrough().on('data', (c) => (stderr += c))
  const code = await runData(args, { stdout: out, stderr: err })
  return { code, stdout, stderr }
}

t.test('data prepare writes instances and the drop report', async (t) => {
  const dir = t.testdir({ 'xlam.json': JSON.stringify(xlam), 'toolace.jsonl': toolace.map((r) => JSON.stringify(r)).join('\n') })
  const out = join(dir, 'train.jsonl')
  const { code, stderr } = await runWith(['prepare', '--xlam', join(dir, 'xlam.json'), '--toolace', join(dir, 'toolace.jsonl'), '--out', out])
  t.equal(code, 0)
  const lines = readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l))
  t.equal(lines.length, 2)
  t.same(lines[1].answer, [{ name: 'Tide Times', arguments: { port: 'Le Havre (north)', days: 2 } }])
  const report = JSON.parse(readFileSync(`${out}.drops.json`, 'utf8'))
  t.same(report.drops.map((d: { source: string; reason: string }) => `${d.source}:${d.reason}`), ['xlam:unknown-tool', 'toolace:positional-argument'])
  t.match(stderr, /xlam: 2 records, 1 kept, 1 instances, 1 dropped/)
  t.match(stderr, /toolace: 2 records, 1 kept, 1 instances, 1 dropped\n {2}positional-argument: 1/)
  // One source alone, and a chosen report path.
  const only = await runWith(['prepare', '--toolace', join(dir, 'toolace.jsonl'), '-o', join(dir, 't.jsonl'), '--report', join(dir, 'r.json')])
  t.equal(only.code, 0)
  t.equal(JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')).drops.length, 1)
})

t.test('data parse-calls', async (t) => {
  const ok = await runWith(['parse-calls', '[Tide Times(port="Le Havre (north)", days=2.0)]'])
  t.equal(ok.code, 0)
  t.match(ok.stdout, '"days": 2.0')
  const bad = await runWith(['parse-calls', '[f(1)]'])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /positional-argument: Expected a keyword argument/)
  t.equal((await runWith(['parse-calls'])).code, 1)
})

t.test('usage errors and help', async (t) => {
  t.equal((await runWith([])).code, 1)
  const help = await runWith(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: node-grpo data/)
  t.equal((await runWith(['prepare', '--help'])).code, 0)
  t.match((await runWith(['frobnicate'])).stderr, /unknown subcommand "frobnicate"/)
  t.match((await runWith(['prepare', '--out', 'x'])).stderr, /at least one of --xlam and --toolace/)
  t.match((await runWith(['prepare', '--xlam', 'x'])).stderr, /--out/)
  t.equal((await runWith(['prepare', '--bogus'])).code, 1)
})

t.test('node-grpo data from the command line', async (t) => {
  const dir = t.testdir({ 'xlam.jsonl': xlam.map((r) => JSON.stringify(r)).join('\n') })
  const out = join(dir, 'train.jsonl')
  const result = spawnSync(process.execPath, [...process.execArgv, 'lib/cli.ts', 'data', 'prepare', '--xlam', join(dir, 'xlam.jsonl'), '--out', out], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  })
  t.equal(result.status, 0, result.stderr)
  t.equal(readFileSync(out, 'utf8').trimEnd().split('\n').length, 1)
  t.match(result.stderr, /unknown-tool: 1/)
})

import t from 'tap'
import { spawn } from 'node:child_process'
import { request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { createRewardServer, responseOf, runServe, type ServeOptions } from '../../lib/commands/serve.js'
import { GrpoError } from '../../lib/errors.js'
import { closeScoringPool, scoreToolCall } from '../../lib/reward/index.js'
import { renderChatML, buildToolPrompt } from '../../lib/prompt.js'
// @ts-expect-error: a plain .mjs helper shared with the benchmark
import { makeItems } from '../../bench/reward-data.mjs'

const root = fileURLToPath(new URL('../../', import.meta.url))

t.teardown(() => closeScoringPool())

async function start(options: ServeOptions = {}): Promise<{ server: Server; url: string }> {
  const server = createRewardServer(options)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { server, url: `http://127.0.0.1:${port}` }
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
}

async function post(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  })
  return { status: response.status, json: await response.json() }
}

const GT = '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]'
const GOOD = '<think>ok</think><tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]</tool_call>'

t.test('responseOf: after the assistant marker, or the query less its prompt', async (t) => {
  t.equal(responseOf('PROMPT reply', 'PROMPT '), 'reply')
  t.equal(responseOf('other reply', 'PROMPT '), 'other reply')
  t.equal(responseOf('x<|im_start|>assistant\nreply', 'x'), 'x<|im_start|>assistant\nreply', 'the marker is handled by the scorer')
  t.equal(responseOf('reply', undefined), 'reply')
})

t.test('/get_reward speaks the OpenRLHF protocol', async (t) => {
  const { server, url } = await start()
  t.teardown(() => stop(server))
  const prompt = renderChatML(buildToolPrompt([{ name: 'get_weather' }], 'Weather?'), { addGenerationPrompt: true })
  const plainPrompt = 'Q: weather in Paris? A: '
  const { status, json } = await post(`${url}/get_reward`, {
    query: [prompt + GOOD, prompt + 'no idea', plainPrompt + GOOD, plainPrompt + '<tool_call>[]</tool_call>'],
    prompts: [prompt, prompt, plainPrompt, plainPrompt],
    labels: [GT, GT, JSON.parse(GT), GT],
  })
  t.equal(status, 200)
  t.same(json.rewards, [1, 0, 1, 0])
  t.same(json.scores, json.rewards)
  t.same(json.reasons, ['ok', 'no-call', 'ok', 'name-mismatch'])
  t.same(Object.keys(json.extra_logs).sort(), ['reason/args-mismatch', 'reason/bad-format', 'reason/bad-json', 'reason/bad-layout', 'reason/name-mismatch', 'reason/no-call', 'reason/no-think', 'reason/ok'])
  t.same(json.extra_logs['reason/ok'], [1, 0, 1, 0])
  t.same(json.extra_logs['reason/no-call'], [0, 1, 0, 0])
  // Without prompts, whole queries are scored; structured labels keep exact numbers.
  const exact = await post(`${url}/get_reward`, {
    query: [GOOD.replace('"days": 2', '"days": 2.0')],
    labels: [[{ name: 'get_weather', arguments: { city: 'Paris', days: 2 } }]],
  })
  t.same(exact.json.reasons, ['args-mismatch'])
  const exactText = await fetch(`${url}/get_reward`, {
    method: 'POST',
    body: `{"query": [${JSON.stringify(GOOD.replace('"days": 2', '"days": 2.0'))}], "labels": [[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2.0}}]]}`,
  })
  t.same((await exactText.json()).rewards, [1])
  const empty = await post(`${url}/get_reward`, { query: [], labels: [] })
  t.same(empty.json.rewards, [])
  t.same((await fetch(`${url}/health`)).status, 200)
})

t.test('variants and think order come from the server options', async (t) => {
  const { server, url } = await start({ variant: 'partial', thinkOrder: 'strict' })
  t.teardown(() => stop(server))
  const { json } = await post(`${url}/get_reward`, { query: [GOOD, '<tool_call>' + GT + '</tool_call><think>x</think>'], labels: [GT, GT] })
  t.same(json.rewards, [1, 0.8])
  t.throws(() => createRewardServer({ variant: 'x' as never }), { code: 'ERR_GRPO_INVALID_ARG' })
  t.throws(() => createRewardServer({ thinkOrder: 'x' as never }), { code: 'ERR_GRPO_INVALID_ARG' })
  t.throws(() => createRewardServer({ maxBodyBytes: 0 }), { code: 'ERR_GRPO_INVALID_ARG' })
})

t.test('bad requests get a 400 (or 404, 405, 413) with a JSON error', async (t) => {
  const { server, url } = await start({ maxBodyBytes: 64 * 1024 })
  t.teardown(() => stop(server))
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['/get_reward', '{"query": [', 400, /invalid JSON/],
    ['/get_reward', '[1, 2]', 400, /for the request body/],
    ['/get_reward', { query: ['x'] }, 400, /for labels/],
    ['/get_reward', { query: 'x', labels: [GT] }, 400, /for query/],
    ['/get_reward', { query: [5], labels: [GT] }, 400, /for query\[0\]/],
    ['/get_reward', { query: ['x', 'y'], labels: [GT] }, 400, /for labels/],
    ['/get_reward', { query: ['x'], prompts: ['a', 'b'], labels: [GT] }, 400, /for prompts/],
    ['/get_reward', { query: ['x', 'y'], labels: [GT, 'not json'] }, 400, /for labels\[1\]/],
    ['/get_reward', { query: ['x'], labels: [5] }, 400, /for labels\[0\]/],
    ['/get_reward', { query: ['x'], labels: [GT], extra: 1 }, 400, /a key of the request body/],
    ['/get_reward', { query: ['x'.repeat(70 * 1024)], labels: [GT] }, 413, /at most 65536 bytes/],
    ['/advantages', { rewards: 'x' }, 400, /for rewards/],
    ['/advantages', { rewards: [1, 'a'] }, 400, /for rewards\[1\]/],
    ['/advantages', { rewards: [1, 2], groupsize: 2 }, 400, /a key of the request body/],
    ['/nope', {}, 404, /for the path/],
  ]
  for (const [path, body, status, message] of cases) {
    const response = await post(url + path, body)
    t.equal(response.status, status, `${path} ${JSON.stringify(body).slice(0, 60)}`)
    t.match(response.json.error.message, message)
    t.type(response.json.error.code, 'string')
  }
  const wrongMethod = await fetch(`${url}/get_reward`)
  t.equal(wrongMethod.status, 405)
  t.equal(wrongMethod.headers.get('allow'), 'POST')
  // A body over the limit without a declared length (chunked) is cut off too.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${url}/get_reward`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume()
      resolve(res.statusCode!)
    })
    req.on('error', reject)
    req.write('{"query": ["' + 'x'.repeat(40 * 1024))
    req.end('x'.repeat(40 * 1024) + '"], "labels": []}')
  })
  t.equal(chunked, 413)
  // A malformed HTTP request line.
  const raw = await new Promise<string>((resolve) => {
    import('node:net').then(({ connect }) => {
      const socket = connect((server.address() as AddressInfo).port, '127.0.0.1', () => socket.write('NOT HTTP\r\n\r\n'))
      let data = ''
      socket.on('data', (chunk) => (data += chunk))
      socket.on('close', () => resolve(data))
    })
  })
  t.match(raw, /^HTTP\/1\.1 400/)
  t.equal((await post(`${url}/get_reward`, { query: [GOOD], labels: [GT] })).status, 200, 'still serving')
})

t.test('a burst of concurrent requests: every answer right, bad ones 400, the server alive after', async (t) => {
  const { server, url } = await start()
  t.teardown(() => stop(server))
  const items: Array<{ completion: string; groundTruth: string }> = makeItems(120, 5, 29)
  const requests: Array<Promise<void>> = []
  let good = 0
  let bad = 0
  const started = performance.now()
  const cpu = process.cpuUsage()
  for (let r = 0; r < 150; r++) {
    if (r % 10 === 3) {
      requests.push(
        post(`${url}/get_reward`, r % 20 === 3 ? '{"query": [' : { query: ['x'], labels: ['[{"name": 1}]'] }).then((response) => {
          if (response.status === 400 && response.json.error.code === 'ERR_GRPO_INVALID_ARG') bad++
        }),
      )
      continue
    }
    // Mostly small requests, a few large enough for the worker pool.
    const size = r % 25 === 0 ? 400 : 1 + (r % 8)
    const slice = Array.from({ length: size }, (_, k) => items[(r * 7 + k) % items.length]!)
    const expected = slice.map((item) => scoreToolCall(item.completion, item.groundTruth).score)
    requests.push(
      post(`${url}/get_reward`, { query: slice.map((i) => i.completion), labels: slice.map((i) => i.groundTruth) }).then((response) => {
        if (response.status === 200 && JSON.stringify(response.json.rewards) === JSON.stringify(expected)) good++
      }),
    )
  }
  await Promise.all(requests)
  const elapsed = performance.now() - started
  const used = process.cpuUsage(cpu)
  const cpuMs = (used.user + used.system) / 1000
  t.equal(bad, 15, 'bad requests answered with 400')
  t.equal(good, 135, 'every good request answered correctly')
  // CPU time of this process (client, server and its scoring workers), not wall time: on a loaded CI machine the
  // wall time of this burst reached 11.5 s (load 13 on 2 cores) for a few seconds of work, while the CPU time
  // stays what the work costs; 30 s of it still catches a server that spins or rescores.
  t.ok(cpuMs < 30_000, `burst answered with ${cpuMs.toFixed(0)} ms of CPU (${elapsed.toFixed(0)} ms wall)`)
  t.equal((await fetch(`${url}/health`)).status, 200, 'alive afterwards')
})

t.test('/advantages maps the request onto ops.groupAdvantages and its result back', async (t) => {
  const calls: unknown[] = []
  let disposed = 0
  const { server, url } = await start({
    loadOps: async () => ({
      groupAdvantages: async (rewards: unknown, options: unknown) => {
        calls.push({ rewards, options })
        return {
          advantages: { toArray: async () => Float32Array.from([0.5, -0.5]), dispose: () => disposed++ } as never,
          groupIds: Int32Array.from([4]),
          groupMean: Float64Array.from([0.5]),
          groupStd: Float64Array.from([NaN]),
          zeroStdFraction: 0,
        }
      },
    }),
  })
  t.teardown(() => stop(server))
  const snake = await post(`${url}/advantages`, { rewards: [1, null], group_ids: [4, 4], baseline: 'leave-one-out', scale: 'batch', eps: 0.01, non_finite: 'exclude' })
  t.equal(snake.status, 200)
  t.same(snake.json, { advantages: [0.5, -0.5], group_ids: [4], group_mean: [0.5], group_std: [null], zero_std_fraction: 0 })
  await post(`${url}/advantages`, { rewards: [1, 0], groupSize: 2, nonFinite: 'error' })
  t.same(calls, [
    { rewards: [1, NaN], options: { groupSize: undefined, groupIds: [4, 4], baseline: 'leave-one-out', scale: 'batch', eps: 0.01, nonFinite: 'exclude' } },
    { rewards: [1, 0], options: { groupSize: 2, groupIds: undefined, baseline: undefined, scale: undefined, eps: undefined, nonFinite: 'error' } },
  ])
  t.equal(disposed, 2, 'the advantages tensor is disposed')
})

t.test('/advantages answers 503 when the ops cannot load; /get_reward keeps working', async (t) => {
  const { server, url } = await start({
    loadOps: () => Promise.reject(new GrpoError('Expected a loadable native addon for node-grpo but received: nothing', 'ERR_GRPO_BINDING_LOAD')),
  })
  t.teardown(() => stop(server))
  const response = await post(`${url}/advantages`, { rewards: [1, 0], group_size: 2 })
  t.equal(response.status, 503)
  t.equal(response.json.error.code, 'ERR_GRPO_BINDING_LOAD')
  t.equal((await post(`${url}/get_reward`, { query: [GOOD], labels: [GT] })).json.rewards[0], 1)
  // Other failures of the ops are 500s, and the server keeps serving.
  const broken = await start({
    loadOps: async () => ({
      groupAdvantages: async () => {
        throw new Error('kernel exploded')
      },
    }),
  })
  t.teardown(() => stop(broken.server))
  const failed = await post(`${broken.url}/advantages`, { rewards: [1, 0], group_size: 2 })
  t.equal(failed.status, 500)
  t.equal(failed.json.error.code, 'ERR_INTERNAL')
  const cuda = await start({
    loadOps: async () => ({
      groupAdvantages: async () => {
        throw new GrpoError('Expected memory but received none', 'ERR_GRPO_OOM')
      },
    }),
  })
  t.teardown(() => stop(cuda.server))
  t.equal((await post(`${cuda.url}/advantages`, { rewards: [1, 0], group_size: 2 })).status, 500)
})

t.test('node-grpo serve from the command line: /get_reward, /advantages through the real ops, SIGTERM', async (t) => {
  // A separate process, as a user runs it, with tap's coverage switched off: it loads the native ops, whose
  // coverage is test/ops' business, not this black-box check's (the routes are covered in-process above).
  const env = { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
  const child = spawn(process.execPath, [...process.execArgv, 'lib/cli.ts', 'serve', '--port', '0'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`no address in time: ${out}`)), 60_000)
    child.stdout.on('data', (chunk) => {
      out += chunk
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (match) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    })
  })
  const response = await post(`${url}/get_reward`, { query: [GOOD, 'x'], labels: [GT, GT] })
  t.same(response.json.rewards, [1, 0])

  const advantages = await post(`${url}/advantages`, { rewards: [1, 0, 1, 1, 0.5, 0.25], group_size: 2 })
  if (advantages.status === 503) {
    t.equal(advantages.json.error.code, 'ERR_GRPO_BINDING_LOAD')
    t.comment('native addon unavailable here: /advantages checked for its 503 only')
  } else {
    t.equal(advantages.status, 200)
    const a = 0.5 / (Math.SQRT1_2 + 1e-6)
    const b = 0.125 / (Math.sqrt(0.03125) + 1e-6)
    const expected = [a, -a, 0, 0, b, -b]
    t.ok(advantages.json.advantages.every((v: number, i: number) => Math.abs(v - expected[i]!) < 1e-5), JSON.stringify(advantages.json.advantages))
    t.same(advantages.json.group_ids, [0, 1, 2])
    t.ok(Math.abs(advantages.json.zero_std_fraction - 1 / 3) < 1e-12)
    const ids = await post(`${url}/advantages`, { rewards: [1, 0, null, 2], group_ids: [7, 7, 3, 3], non_finite: 'exclude', scale: 'none' })
    t.same([ids.status, ids.json.group_ids, ids.json.advantages], [200, [3, 7], [0.5, -0.5, 0, 0]])
    const shape = await post(`${url}/advantages`, { rewards: [1, 0, 1], group_size: 2 })
    t.same([shape.status, shape.json.error.code], [400, 'ERR_GRPO_SHAPE'])
    const option = await post(`${url}/advantages`, { rewards: [1, 0], group_size: 2, baseline: 'median' })
    t.same([option.status, option.json.error.code], [400, 'ERR_GRPO_INVALID_ARG'])
    const nan = await post(`${url}/advantages`, { rewards: [1, null], group_size: 2 })
    t.same([nan.status, nan.json.error.code], [400, 'ERR_GRPO_NONFINITE'])
  }
  t.equal((await fetch(`${url}/health`)).status, 200, 'alive after the bad requests')
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  child.kill('SIGTERM')
  t.equal(await exit, 0)
})

t.test('runServe(): help, bad arguments, a port in use', async (t) => {
  let text = ''
  const io = { stdout: { write: (s: string) => (text += s) }, stderr: { write: (s: string) => (text += s) } }
  t.equal(await runServe(['--help'], io), 0)
  t.match(text, /^Usage: node-grpo serve/)
  t.equal(await runServe(['--bogus'], io), 1)
  t.match(text, /node-grpo serve: Unknown option '--bogus'/)
  await t.rejects(runServe(['--port', '70000'], io), { code: 'ERR_GRPO_INVALID_ARG' })
  await t.rejects(runServe(['--max-body-mb', '0'], io), { code: 'ERR_GRPO_INVALID_ARG' })
  const { server, url } = await start()
  t.teardown(() => stop(server))
  await t.rejects(runServe(['--port', new URL(url).port], io), { code: 'EADDRINUSE' })
  // Listens, answers, and stops when told to.
  const controller = new AbortController()
  let listening = ''
  const running = runServe(['--port', '0', '--variant', 'partial'], {
    stdout: { write: (s: string) => (listening += s) },
    stderr: io.stderr,
    signal: controller.signal,
  })
  while (!/listening on/.test(listening)) await new Promise((resolve) => setTimeout(resolve, 10))
  const address = /(http:\/\/127\.0\.0\.1:\d+)/.exec(listening)![1]!
  t.same((await post(`${address}/get_reward`, { query: ['<think>x</think>'], labels: [GT] })).json.rewards, [0.2])
  controller.abort()
  t.equal(await running, 0)
  const aborted = AbortSignal.abort()
  t.equal(await runServe(['--port', '0'], { ...io, signal: aborted }), 0, 'an already aborted signal stops at once')
})

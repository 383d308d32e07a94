/**
 * The reward service under hostile bodies (issue 18 item 3): structured labels are not re-parsed whole by a slow
 * parser, deep nesting is a 400, a request that takes longer than its time budget is a 503, and the server keeps
 * answering after each.
 */
import t from 'tap'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mainThreadMs, stallProbe } from '../helpers/stall.js'
import { createRewardServer, runServe, type ServeOptions } from '../../lib/commands/serve.js'
import { closeScoringPool } from '../../lib/reward/index.js'
import { parseLossless } from '../../lib/reward/json.js'

t.teardown(() => closeScoringPool())

async function start(options: ServeOptions = {}): Promise<{ server: Server; url: string }> {
  const server = createRewardServer(options)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
}

async function post(url: string, body: string): Promise<{ status: number; json: any }> {
  const response = await fetch(`${url}/get_reward`, { method: 'POST', body, signal: AbortSignal.timeout(120_000) })
  return { status: response.status, json: await response.json() }
}

const GOOD = (text: string) => `<think>x</think><tool_call>[{"name": "f", "arguments": {"text": ${JSON.stringify(text)}, "n": 5.0}}]</tool_call>`

t.test('structured labels: no whole-body lossless parse on the event loop, exact numbers kept', async (t) => {
  const { server, url } = await start({ maxBodyBytes: 64 << 20 })
  t.teardown(() => stop(server))
  // 12 labels of ~700 KB each (8 MiB): a lossless parse of such a body takes a long time on the main thread.
  const texts = Array.from({ length: 12 }, (_, i) => String.fromCharCode(97 + i).repeat(700_000))
  const labels = texts.map((text, i) => `[{"name": "f", "arguments": {"text": ${JSON.stringify(text)}, "n": ${i % 2 ? '5' : '5.0'}}}]`)
  const body = `{"query": ${JSON.stringify(texts.map(GOOD))}, "labels": [${labels.join(', ')}]}`
  // Both sides in main-thread on-CPU time (test/helpers/stall.ts), so that time the OS gives the core to other
  // processes on a loaded CI machine counts on neither side: the parse's cost, and the longest hold of the event
  // loop while the server answers (read at the scheduler tick, <= 4 ms late, small beside a parse of 8 MiB).
  // Where the kernel gives no per-thread CPU time, both are wall times.
  const lossless = mainThreadMs(() => parseLossless(body))
  const losslessMs = lossless.ms
  const probe = stallProbe()
  const { status, json } = await post(url, body)
  const stall = probe.stop()
  t.equal(status, 200)
  t.same(json.rewards, texts.map((_, i) => (i % 2 ? 0 : 1)), '5.0 matches 5.0 only: numbers kept exact')
  const stallMs = lossless.cpu && stall.cpuMs !== null ? stall.cpuMs : stall.wallMs
  const kind = lossless.cpu && stall.cpuMs !== null ? 'on-CPU' : 'wall'
  t.comment(`lossless parse of the body ${losslessMs.toFixed(0)} ms ${kind}; longest event-loop hold while serving it ${stallMs.toFixed(0)} ms ${kind} (${stall.wallMs.toFixed(0)} ms wall)`)
  t.ok(stallMs < losslessMs / 2, `the longest stall (${stallMs.toFixed(0)} ms) is well under one lossless parse of the body (${losslessMs.toFixed(0)} ms)`)
})

t.test('deeply nested labels are a 400 naming the label, and the server lives on', async (t) => {
  const { server, url } = await start()
  t.teardown(() => stop(server))
  for (const depth of [600, 5000, 200_000]) {
    const label = '['.repeat(depth) + ']'.repeat(depth)
    const text = await post(url, `{"query": ["x"], "labels": [${JSON.stringify(label)}]}`)
    t.equal(text.status, 400, `JSON text nested ${depth} deep`)
    t.match(text.json.error, { code: 'ERR_GRPO_INVALID_ARG', message: /nested at most 512 levels deep for labels\[0\]/ })
    const structured = await post(url, `{"query": ["x", "y"], "labels": ["[]", ${label}]}`)
    t.equal(structured.status, 400, `a structured label nested ${depth} deep`)
    t.match(structured.json.error, { code: 'ERR_GRPO_INVALID_ARG', message: /labels\[1\]/ })
  }
  const ok = await post(url, '{"query": ["<think>x</think><tool_call>[]</tool_call>"], "labels": [[]]}')
  t.same([ok.status, ok.json.rewards], [200, [1]], 'still serving')
})

t.test('labels too large to be a ground truth are a 400', async (t) => {
  const { server, url } = await start()
  t.teardown(() => stop(server))
  const huge = JSON.stringify([{ name: 'f', arguments: { x: 'y'.repeat(1 << 20) } }])
  const r = await post(url, `{"query": ["x"], "labels": [${JSON.stringify(huge)}]}`)
  t.equal(r.status, 400)
  t.match(r.json.error.message, /at most 1048576 characters for labels\[0\]/)
})

t.test('a request that outlasts its time budget gets a 503 and the server keeps serving', async (t) => {
  const { server, url } = await start({ timeBudgetMs: 1 })
  t.teardown(() => stop(server))
  const n = 3000
  const body = JSON.stringify({ query: Array.from({ length: n }, (_, i) => GOOD('x'.repeat(i % 300))), labels: Array(n).fill('[{"name": "f", "arguments": {}}]') })
  const slow = await post(url, body)
  t.equal(slow.status, 503)
  t.match(slow.json.error, { code: 'ERR_TIME_BUDGET', message: /time budget of 1 ms/ })
  const health = await fetch(`${url}/health`)
  t.equal(health.status, 200, 'alive')
  t.throws(() => createRewardServer({ timeBudgetMs: 0 }), { code: 'ERR_GRPO_INVALID_ARG', message: /timeBudgetMs/ })
  const { server: roomy, url: roomyUrl } = await start({ timeBudgetMs: 120_000 })
  t.teardown(() => stop(roomy))
  t.equal((await post(roomyUrl, body)).status, 200, 'the same request within a larger budget')
})

t.test('--time-budget-s and --max-body-mb are checked', async (t) => {
  const io = { stdout: { write: () => true }, stderr: { write: () => true } }
  await t.rejects(runServe(['--time-budget-s', '0'], io), { code: 'ERR_GRPO_INVALID_ARG', message: /--time-budget-s/ })
  await t.rejects(runServe(['--max-body-mb', '1e9'], io), { code: 'ERR_GRPO_INVALID_ARG', message: /--max-body-mb/ })
})

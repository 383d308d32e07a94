/**
 * Completion sources: a Policy, a JSONL file, and OpenAI-compatible servers that answer, fail, stall, or talk
 * nonsense. Every failure is an entry's failure with a reason, never a crash.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { BfclEntry } from '../../lib/eval/data.js'
import { expectedCalls } from '../../lib/eval/data.js'
import { evaluateBfcl } from '../../lib/eval/run.js'
import { JsonlSource, apiBase, openAISource, policySource, type CompletionSource } from '../../lib/eval/sources.js'
import { bfclPrompts, bfclReward } from '../../lib/eval/trainer-reward.js'
import { Trainer } from '../../lib/trainer.js'
import { parseLossless } from '../../lib/reward/json.js'
import { scriptedModel } from './scripted.js'

const root = await mkdtemp(join(tmpdir(), 'node-grpo-sources-'))
t.teardown(() => rm(root, { recursive: true, force: true }))

const WEATHER = { name: 'weather.get', description: 'Weather for a city.', parameters: { type: 'dict', properties: { city: { type: 'string', description: 'City' }, days: { type: 'integer', description: 'Days', default: 1 } }, required: ['city'] } }
const entry = (id: string, city: string, category: BfclEntry['category'] = 'simple'): BfclEntry => ({
  id,
  category,
  turns: [[{ role: 'user', content: `Weather in ${city}?` }]],
  functions: [WEATHER],
  answer: category.includes('relevance') ? null : expectedCalls(parseLossless(`[{"weather.get": {"city": ["${city}"], "days": ["", 1]}}]`)),
  source: { file: 'test', line: 0 },
})
const ENTRIES = [entry('simple_0', 'Paris'), entry('simple_1', 'Rome'), entry('simple_2', 'Oslo'), entry('irrelevance_0', 'Lima', 'irrelevance')]
const call = (city: string) => `<think>One call.</think>\n<tool_call>\n[{"name": "weather.get", "arguments": {"city": "${city}"}}]\n</tool_call>`
// Paris right, Rome wrong city, Oslo prose, Lima (irrelevance) called anyway.
const ANSWERS: [string, string][] = [
  ['Paris', call('paris')],
  ['Rome', call('Milan')],
  ['Oslo', 'It is cold in Oslo.'],
  ['Lima', call('Lima')],
]
const EXPECTED = { simple_0: 'ok', simple_1: 'wrong-string', simple_2: 'decode-failed', irrelevance_0: 'called-irrelevant' }

const reasons = (r: Awaited<ReturnType<typeof evaluateBfcl>>) => Object.fromEntries(r.entries.map((e) => [e.id, e.reason]))

t.test('a policy: prompts through the template, greedy, in batches, progress per entry', async (t) => {
  const model = scriptedModel(ANSWERS)
  const source = policySource({ policy: model.policy, tokenizer: model.tokenizer, stop: model.stop, batchSize: 3, name: 'scripted' })
  const progress: number[] = []
  const report = await evaluateBfcl(ENTRIES, source, { onProgress: (done) => progress.push(done) })
  t.same(reasons(report), EXPECTED)
  t.same(model.policy.calls, [3, 1], 'two batches')
  t.same(progress, [1, 2, 3, 4])
  t.equal(report.source, 'policy scripted')
  t.same(report.categories.simple, { correct: 1, total: 3, accuracy: 1 / 3 })
  t.equal(report.entries[0]!.completion, call('paris'))
  t.same(report.entries[0]!.calls, [{ name: 'weather.get', arguments: { city: 'paris' } }])
  // The policy saw the Tool-N1 prompt with the tools in JSON-Schema form.
  const seen = model.tokenizer.decode(model.tokenizer.encode(''))
  t.equal(seen, '')
  // A policy that throws fails its batch, with a reason; the other batches still count.
  let n = 0
  const flaky = { ...model.policy, sample: async (prompts: ArrayLike<number>[], o: object) => (n++ === 0 ? Promise.reject(new Error('device lost')) : model.policy.sample(prompts, o)) }
  const broken = await evaluateBfcl(ENTRIES, policySource({ policy: flaky as never, tokenizer: model.tokenizer, batchSize: 2 }))
  t.same(broken.entries.map((e) => e.reason), ['source-error', 'source-error', 'decode-failed', 'called-irrelevant'])
  t.match(broken.entries[0]!.messages[0], /the policy failed: device lost/)
  t.throws(() => policySource({} as never), { code: 'ERR_GRPO_INVALID_ARG' })
  t.throws(() => policySource({ policy: model.policy, tokenizer: {} as never }), { message: /tokenizer with encode and decode/ })
  t.throws(() => policySource({ policy: model.policy, tokenizer: model.tokenizer, batchSize: 0 }), { message: /integer >= 1 for batchSize/ })
  const aborted = new AbortController()
  aborted.abort()
  const none = await evaluateBfcl(ENTRIES, source, { signal: aborted.signal })
  t.same([none.evaluated, none.interrupted], [0, true], 'an aborted run evaluates nothing more')
})

t.test('the Trainer evaluates with the BFCL checker instead of its reward', async (t) => {
  const model = scriptedModel(ANSWERS)
  const trainer = new Trainer({ policy: model.policy, decode: (tokens) => model.tokenizer.decode(tokens), stop: [0], maxNewTokens: 200, reward: () => 0.25 })
  const prompts = bfclPrompts(ENTRIES, model.tokenizer)
  const own = await trainer.evaluate(prompts)
  t.equal(own.reward, 0.25, 'its own reward')
  const bfcl = await trainer.evaluate(prompts, { reward: bfclReward() })
  t.equal(bfcl.reward, 0.25, 'one of four passes BFCL')
  t.same(bfcl.reasons, { ok: 1, 'wrong-string': 1, 'decode-failed': 1, 'called-irrelevant': 1 })
  await t.rejects(trainer.evaluate(prompts, { reward: 5 as never }), { message: /Expected a reward function for reward/ })
  await t.rejects(trainer.evaluate([{ tokens: [1] }], { reward: bfclReward() }), { message: /a BFCL entry in prompt.bfcl/ })
  trainer.dispose()
})

t.test('a JSONL file: every line shape, missing ids, and bad lines with their numbers', async (t) => {
  const file = join(root, 'completions.jsonl')
  const lines = [
    JSON.stringify({ id: 'simple_0', completion: call('Paris') }),
    'garbage',
    JSON.stringify({ id: 'simple_1', message: { role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name: 'weather.get', arguments: '{"city": "Rome"}' } }] } }),
    JSON.stringify({ completion: 'no id' }),
    JSON.stringify({ id: 'simple_0', completion: 'a duplicate' }),
    JSON.stringify({ id: 'irrelevance_0', result: 'I do not know.' }),
    JSON.stringify({ id: 'other', text: 5 }),
    JSON.stringify({ id: 'other2', nothing: true }),
    '',
    JSON.stringify({ id: 'other3', message: 'x' }),
  ]
  await writeFile(file, lines.join('\n') + '\n')
  const source = await JsonlSource.open(file)
  t.same(source.problems.map((p) => [p.line, p.message.slice(0, 20)]), [
    [2, 'not a JSON object (J'],
    [4, 'Expected a string "i'],
    [5, 'duplicate id "simple'],
    [7, 'Expected "text" to b'],
    [8, 'Expected one of "com'],
    [10, 'Expected "message" t'],
  ])
  t.same(source.ids, ['simple_0', 'simple_1', 'irrelevance_0'])
  const report = await evaluateBfcl(ENTRIES, source)
  t.same(reasons(report), { simple_0: 'ok', simple_1: 'ok', simple_2: 'no-completion', irrelevance_0: 'ok' })
  t.match(report.entries[2]!.messages[0], /a line with id "simple_2" in the completions file/)

  // A folder of files (BFCL's result folder): its result lines, text and function-calling forms.
  const folder = join(root, 'results')
  await mkdir(folder)
  await writeFile(join(folder, 'BFCL_v3_simple_result.json'), [
    JSON.stringify({ id: 'simple_0', result: '[weather.get(city="Paris")]' }),
    JSON.stringify({ id: 'simple_1', result: [{ 'weather.get': '{"city": "Rome", "days": 1}' }] }),
    JSON.stringify({ id: 'simple_2', calls: [{ name: 'weather.get', arguments: { city: 'Oslo', days: 2 } }] }),
  ].join('\n'))
  await writeFile(join(folder, 'BFCL_v3_irrelevance_result.json'), JSON.stringify({ id: 'irrelevance_0', tool_calls: [{ function: { name: 'weather.get', arguments: '{}' } }] }) + '\n')
  await writeFile(join(folder, 'notes.txt'), 'ignored')
  const results = await evaluateBfcl(ENTRIES, await JsonlSource.open(folder))
  t.same(reasons(results), { simple_0: 'ok', simple_1: 'ok', simple_2: 'wrong-value', irrelevance_0: 'called-irrelevant' })
  await writeFile(join(root, 'err.jsonl'), JSON.stringify({ id: 'simple_0', error: 'rate limited' }) + '\n' + JSON.stringify({ id: 'simple_1', message: { content: 'plain text' } }) + '\n')
  const errs = await evaluateBfcl(ENTRIES.slice(0, 2), await JsonlSource.open(join(root, 'err.jsonl')))
  t.same(errs.entries.map((e) => e.reason), ['source-error', 'decode-failed'])
  await t.rejects(JsonlSource.open(join(root, 'missing.jsonl')), { message: /existing completions file/ })
  await t.rejects(JsonlSource.open(''), { code: 'ERR_GRPO_INVALID_ARG' })
})

// ---------------------------------------------------------------------------------------------------------

type Handler = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => void
async function fakeServer(handler: Handler): Promise<{ url: string; server: Server; hits: () => number }> {
  let hits = 0
  const server = createServer((req, res) => {
    let text = ''
    req.on('data', (c) => (text += c))
    req.on('end', () => {
      hits++
      handler(req, res, text ? JSON.parse(text) : {})
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, hits: () => hits }
}
const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(typeof body === 'string' ? body : JSON.stringify(body))
}
const cityOf = (body: Record<string, unknown>) => {
  const messages = body.messages as { content: string }[] | undefined
  const text = messages ? messages.at(-1)!.content : String(body.prompt)
  return /Weather in (\w+)\?/.exec(text.slice(text.lastIndexOf('Weather in')))?.[1] ?? '?'
}

t.test('an OpenAI-compatible server: chat with tools, names mapped back, model from /v1/models, concurrency', async (t) => {
  let inFlight = 0
  let peak = 0
  const seen: Record<string, unknown>[] = []
  const { url } = await fakeServer((req, res, body) => {
    if (req.url === '/v1/models') return json(res, 200, { data: [{ id: 'served-model' }] })
    seen.push(body)
    inFlight++
    peak = Math.max(peak, inFlight)
    setTimeout(() => {
      inFlight--
      const city = cityOf(body)
      const answer = ANSWERS.find(([k]) => k === city)![1]
      // Paris as structured tool_calls with the sent (sanitized) name; the others as text.
      const message = city === 'Paris' ? { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'weather_get', arguments: '{"city": "PARIS", "days": 1}' } }] } : { role: 'assistant', content: answer }
      json(res, 200, { choices: [{ index: 0, message, finish_reason: 'stop' }] })
    }, 20)
  })
  const source = openAISource({ endpoint: url, concurrency: 2, apiKey: 'k' })
  const report = await evaluateBfcl(ENTRIES, source)
  t.same(reasons(report), EXPECTED)
  t.equal(peak, 2, 'at most 2 requests in flight')
  t.equal(seen[0]!.model, 'served-model')
  t.same((seen[0]!.tools as { function: { name: string } }[])[0]!.function.name, 'weather_get', 'dots become underscores')
  t.same((seen[0]!.tools as { function: { parameters: { type: string } } }[])[0]!.function.parameters.type, 'object', 'JSON-Schema types')
  t.equal(seen[0]!.temperature, 0)
  t.equal(seen[0]!.max_tokens, 256)
  t.match(source.description, /\/v1\/chat\/completions \(model served-model\)/)
})

t.test('an OpenAI-compatible server: /v1/completions with the rendered prompt', async (t) => {
  let prompt = ''
  const { url } = await fakeServer((req, res, body) => {
    prompt = String(body.prompt)
    json(res, 200, { choices: [{ text: ANSWERS.find(([k]) => k === cityOf(body))![1] }] })
  })
  const report = await evaluateBfcl(ENTRIES, openAISource({ endpoint: `${url}/v1/`, api: 'completions', model: 'm', maxTokens: 64 }))
  t.same(reasons(report), EXPECTED)
  t.match(prompt, /^<\|im_start\|>system\nYou are an expert in composing function calls/)
  t.ok(prompt.endsWith('<|im_start|>assistant\n'))
})

t.test('failures: timeouts, garbage, errors with and without retries, an unreachable server', async (t) => {
  const entries = ENTRIES.slice(0, 1)
  // Stalls forever: a timeout after the retries.
  const stall = await fakeServer(() => {})
  const timedOut = await evaluateBfcl(entries, openAISource({ endpoint: stall.url, model: 'm', timeoutMs: 100, retries: 1, backoffMs: 1 }))
  t.equal(timedOut.entries[0]!.reason, 'source-timeout')
  t.match(timedOut.entries[0]!.messages[0], /no answer within 100 ms \(after 2 attempts\)/)
  t.equal(stall.hits(), 2)
  // Garbage: HTML instead of JSON, and JSON without choices; not retried.
  const html = await fakeServer((_req, res) => json(res, 200, '<html>oops</html>'))
  const garbage = await evaluateBfcl(entries, openAISource({ endpoint: html.url, model: 'm', retries: 3, backoffMs: 1 }))
  t.same([garbage.entries[0]!.reason, html.hits()], ['source-bad-response', 1])
  const empty = await fakeServer((_req, res) => json(res, 200, { choices: [] }))
  t.equal((await evaluateBfcl(entries, openAISource({ endpoint: empty.url, model: 'm' }))).entries[0]!.reason, 'source-bad-response')
  t.equal((await evaluateBfcl(entries, openAISource({ endpoint: empty.url, model: 'm', api: 'completions' }))).entries[0]!.reason, 'source-bad-response')
  // A 500, then a 429 with Retry-After, then an answer: retried to success.
  let k = 0
  const flaky = await fakeServer((_req, res) => {
    k++
    if (k === 1) return json(res, 500, { error: 'boom' })
    if (k === 2) return json(res, 429, { error: 'slow down' }, { 'retry-after': '0.01' })
    json(res, 200, { choices: [{ message: { content: call('Paris') } }] })
  })
  const retried = await evaluateBfcl(entries, openAISource({ endpoint: flaky.url, model: 'm', retries: 2, backoffMs: 1 }))
  t.same([retried.entries[0]!.reason, flaky.hits()], ['ok', 3])
  // A 400 is the request's fault: not retried.
  const refuse = await fakeServer((_req, res) => json(res, 400, { error: { message: 'bad tools' } }))
  const refused = await evaluateBfcl(entries, openAISource({ endpoint: refuse.url, model: 'm', retries: 3 }))
  t.same([refused.entries[0]!.reason, refuse.hits()], ['source-error', 1])
  t.match(refused.entries[0]!.messages[0], /HTTP 400: .*bad tools/)
  // Nothing listens: a network error after the retries; the model name falls back to "default".
  const closed = await fakeServer(() => {})
  const port = new URL(closed.url).port
  await new Promise<void>((resolve) => closed.server.close(() => resolve()))
  const source = openAISource({ endpoint: `http://127.0.0.1:${port}`, retries: 1, backoffMs: 1, timeoutMs: 2000 })
  const down = await evaluateBfcl(entries, source)
  t.equal(down.entries[0]!.reason, 'source-error')
  t.match(down.entries[0]!.messages[0], /the request failed/)
  t.match(source.description, /model default/)
  // A source that forgets an entry fails it.
  const forgetful: CompletionSource = { description: 'forgetful', complete: async (_e, on) => on(0, { ok: true, text: call('Paris') }) }
  const partial = await evaluateBfcl(ENTRIES.slice(0, 2), forgetful)
  t.same(partial.entries.map((e) => e.reason), ['ok', 'source-error'])
})

t.test('options are checked', async (t) => {
  t.equal(apiBase('http://h:1'), 'http://h:1/v1')
  t.equal(apiBase('http://h:1/v1/'), 'http://h:1/v1')
  t.equal(apiBase('https://h/proxy'), 'https://h/proxy/v1')
  t.throws(() => apiBase('nope'), { message: /http\(s\) URL/ })
  t.throws(() => apiBase('ftp://h'), { message: /http\(s\) URL/ })
  t.throws(() => openAISource({ endpoint: 'http://h', api: 'x' as never }), { message: /one of 'chat', 'completions' for api/ })
  t.throws(() => openAISource({ endpoint: 'http://h', concurency: 2 } as never), { message: /did you mean concurrency\?/ })
  t.throws(() => openAISource({ endpoint: 'http://h', headers: { a: 1 } as never }), { message: /an object of header strings for headers/ })
  t.throws(() => policySource({ policy: {} as never, tokenizer: {} as never }), { message: /a Policy \(with sample\) for policy/ })
  t.throws(() => openAISource({ endpoint: 'http://h', temperature: -1 }), { message: /number >= 0/ })
  t.throws(() => openAISource({ endpoint: 'http://h', concurrency: 0 }), { message: /concurrency/ })
  t.throws(() => openAISource(null as never), { code: 'ERR_GRPO_INVALID_ARG' })
  await t.rejects(evaluateBfcl(ENTRIES, {} as never), { message: /a CompletionSource/ })
  await t.rejects(evaluateBfcl(ENTRIES, await JsonlSource.open(join(root, 'completions.jsonl')), { format: 'yaml' as never }), { message: /one of 'tool-call'/ })
  await t.rejects(evaluateBfcl(ENTRIES, await JsonlSource.open(join(root, 'completions.jsonl')), { fromat: 'json' } as never), { message: /did you mean format\?/ })
  await t.rejects(evaluateBfcl('x' as never, {} as never), { message: /an array of BFCL entries/ })
})

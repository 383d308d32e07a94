/**
 * The OpenAI-compatible API of a model, served on loopback next to the reward service: completions and chat
 * completions, non-streaming and streaming, log-probs, tool calls, batching, and refusals.
 */
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createRewardServer } from '../../lib/commands/serve.js'
import { createOpenAIHandler, createOpenAIServer } from '../../lib/eval/openai-server.js'
import { scriptedLogprob, scriptedModel } from './scripted.js'

const TOOL_REPLY = '<think>Weather, one call.</think>\n<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]\n</tool_call>'
const model = scriptedModel([
  ['weather', TOOL_REPLY],
  ['count', 'one two three four five'],
])
const V = model.tokenizer.vocabSize
const server = createRewardServer({ openai: createOpenAIHandler({ model, maxBatch: 8 }) })
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
t.teardown(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))))

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, any>; text: string; type: string | null }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  const text = await res.text()
  let json: Record<string, any> = {}
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: res.status, json, text, type: res.headers.get('content-type') }
}

/** The JSON events of a server-sent event stream, and whether it ended with [DONE]. */
function events(text: string): { chunks: Record<string, any>[]; done: boolean } {
  const datas = text.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6))
  return { chunks: datas.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d)), done: datas.at(-1) === '[DONE]' }
}

const WEATHER_TOOL = { type: 'function', function: { name: 'get_weather', description: 'Weather.', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', default: 1.0 } }, required: ['city'] } } }

t.test('models, and the reward service still answers', async (t) => {
  const models = await (await fetch(base + '/v1/models')).json()
  t.same(models, { object: 'list', data: [{ id: 'scripted', object: 'model', created: 0, owned_by: 'node-grpo' }] })
  t.same(await (await fetch(base + '/health')).json(), { status: 'ok' })
  const unknown = await post('/v1/embeddings', {})
  t.equal(unknown.status, 404, 'an unknown /v1 path falls through to the service')
})

t.test('/v1/completions: text, usage, stop strings, max_tokens, n and several prompts, token ids', async (t) => {
  const r = await post('/v1/completions', { prompt: 'please count', max_tokens: 100, temperature: 0 })
  t.equal(r.status, 200)
  t.match(r.json, { object: 'text_completion', model: 'scripted', choices: [{ index: 0, text: 'one two three four five', logprobs: null, finish_reason: 'stop' }] })
  t.same(r.json.usage, { prompt_tokens: 12, completion_tokens: 23, total_tokens: 35 }, 'the end-of-sequence token is not counted')
  const stopped = await post('/v1/completions', { prompt: 'count', stop: [' three', 'x'], temperature: 0 })
  t.match(stopped.json.choices[0], { text: 'one two', finish_reason: 'stop' })
  t.equal(stopped.json.usage.completion_tokens, 7)
  const short = await post('/v1/completions', { prompt: 'count', max_tokens: 3, temperature: 0 })
  t.match(short.json.choices[0], { text: 'one', finish_reason: 'length' })
  const many = await post('/v1/completions', { prompt: ['count', 'weather?'], n: 2, temperature: 0.7, seed: 3 })
  t.same(many.json.choices.map((c: { index: number; text: string }) => [c.index, c.text.slice(0, 3)]), [[0, 'one'], [1, 'one'], [2, '<th'], [3, '<th']])
  const ids = await post('/v1/completions', { prompt: Array.from(model.tokenizer.encode('count')), max_tokens: 3 })
  t.equal(ids.json.choices[0].text, 'one')
  const idLists = await post('/v1/completions', { prompt: [Array.from(model.tokenizer.encode('count')), 'count'], max_tokens: 3, temperature: 0 })
  t.equal(idLists.json.choices.length, 2)
})

t.test('/v1/completions logprobs: the sampled token, its top alternatives, offsets', async (t) => {
  const r = await post('/v1/completions', { prompt: 'count', max_tokens: 4, temperature: 0, logprobs: 2 })
  const lp = r.json.choices[0].logprobs
  t.same(lp.tokens, ['o', 'n', 'e', ' '])
  for (const x of lp.token_logprobs) t.ok(Math.abs(x - scriptedLogprob(V)) < 1e-5, 'the sampler\'s log-prob (temperature 1 for greedy)')
  t.equal(lp.top_logprobs.length, 4)
  const top = lp.top_logprobs[0]
  t.equal(Object.keys(top).length, 2)
  t.ok(Math.abs(top.o - lp.token_logprobs[0]) < 1e-5, 'the forward pass agrees with the sampler')
  t.same(lp.text_offset, [5, 6, 7, 8], 'offsets count from the prompt text')
  const hot = await post('/v1/completions', { prompt: 'count', max_tokens: 2, temperature: 2, logprobs: 0, seed: 1 })
  t.ok(Math.abs(hot.json.choices[0].logprobs.token_logprobs[0] - scriptedLogprob(V, 2)) < 1e-5, 'at the request\'s temperature')
  t.equal(hot.json.choices[0].logprobs.top_logprobs, null)
})

t.test('/v1/completions streaming: one chunk per token, the finish, usage, [DONE]', async (t) => {
  const r = await post('/v1/completions', { prompt: 'count', max_tokens: 100, temperature: 0, stream: true, stream_options: { include_usage: true }, logprobs: 1 })
  t.match(r.type, /text\/event-stream/)
  const { chunks, done } = events(r.text)
  t.ok(done)
  const texts = chunks.filter((c) => c.choices.length > 0 && c.choices[0].finish_reason === null).map((c) => c.choices[0].text)
  t.equal(texts.join(''), 'one two three four five')
  t.equal(texts.length, 23)
  t.ok(chunks.every((c) => c.object === 'text_completion' && c.id === chunks[0]!.id))
  t.match(chunks.at(-2), { choices: [{ text: '', finish_reason: 'stop' }] })
  t.same(chunks.at(-1)!.usage, { prompt_tokens: 5, completion_tokens: 23, total_tokens: 28 })
  t.same(chunks[0]!.choices[0].logprobs.tokens, ['o'])
})

t.test('/v1/chat/completions: tools in, tool_calls out, logprobs', async (t) => {
  const r = await post('/v1/chat/completions', {
    model: 'anything',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'weather in Paris?' }] }],
    tools: [WEATHER_TOOL],
    temperature: 0,
    logprobs: true,
    top_logprobs: 1,
  })
  t.equal(r.status, 200)
  const choice = r.json.choices[0]
  t.equal(choice.finish_reason, 'tool_calls')
  t.equal(choice.message.content, '<think>Weather, one call.</think>')
  t.equal(choice.message.tool_calls.length, 1)
  t.match(choice.message.tool_calls[0], { type: 'function', id: /^call_/, function: { name: 'get_weather', arguments: '{"city": "Paris", "days": 2}' } })
  t.equal(choice.logprobs.content.length, r.json.usage.completion_tokens)
  t.equal(choice.logprobs.content.map((c: { token: string }) => c.token).join(''), TOOL_REPLY)
  t.same(choice.logprobs.content[0].bytes, [60])
  t.equal(choice.logprobs.content[0].top_logprobs.length, 1)
  const plain = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'weather?' }], temperature: 0 })
  t.equal(plain.json.choices[0].message.content, TOOL_REPLY, 'without tools, the text is the content')
  t.equal(plain.json.choices[0].finish_reason, 'stop')
  t.equal(plain.json.choices[0].logprobs, null)
  const none = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'weather?' }], tools: [WEATHER_TOOL], tool_choice: 'none', temperature: 0 })
  t.notOk(none.json.choices[0].message.tool_calls, 'tool_choice none: no tools, no tool_calls')
  // A conversation with an earlier call and its result renders and answers.
  const turn = await post('/v1/chat/completions', {
    messages: [
      { role: 'developer', content: 'x' },
      { role: 'user', content: 'count' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'a', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Rome", "days": 1.0}' } }] },
      { role: 'tool', tool_call_id: 'a', content: 'sunny' },
      { role: 'user', content: 'count again' },
    ],
    tools: [WEATHER_TOOL],
    max_completion_tokens: 3,
    temperature: 0,
  })
  t.equal(turn.status, 200)
  t.match(turn.json.choices[0], { message: { content: 'one' }, finish_reason: 'length' })
})

t.test('/v1/chat/completions streaming: role, content deltas, tool calls, finish, usage', async (t) => {
  const r = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'weather?' }], tools: [WEATHER_TOOL], temperature: 0, stream: true, logprobs: true, stream_options: { include_usage: true } })
  const { chunks, done } = events(r.text)
  t.ok(done)
  t.ok(chunks.every((c) => c.object === 'chat.completion.chunk'))
  t.same(chunks[0]!.choices[0].delta, { role: 'assistant', content: '' })
  const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')
  t.equal(content, '<think>Weather, one call.</think>')
  const calls = chunks.find((c) => c.choices[0]?.delta?.tool_calls)!.choices[0].delta.tool_calls
  t.match(calls, [{ index: 0, function: { name: 'get_weather', arguments: '{"city": "Paris", "days": 2}' } }])
  t.match(chunks.at(-2), { choices: [{ delta: {}, finish_reason: 'tool_calls' }] })
  t.ok(chunks.at(-1)!.usage.completion_tokens > 0)
  t.ok(chunks[1]!.choices[0].logprobs.content.length === 1, 'content chunks carry their log-probs')
  const text = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'count' }], temperature: 0, stream: true })
  t.equal(events(text.text).chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'one two three four five')
})

t.test('greedy requests that arrive together share one policy call', async (t) => {
  const before = model.policy.calls.length
  model.policy.delayMs = 300
  t.teardown(() => void (model.policy.delayMs = 0))
  const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => post('/v1/completions', { prompt: i % 2 ? 'count' : 'weather', max_tokens: 5 + i, temperature: 0 })))
  t.ok(replies.every((r) => r.status === 200))
  const calls = model.policy.calls.slice(before)
  t.ok(calls.length < 6, `6 requests in ${calls.length} calls (${calls.join(', ')})`)
  t.same(replies.map((r) => r.json.choices[0].text.length), [5, 6, 7, 8, 9, 10], 'each gets its own max_tokens')
})

t.test('refusals: bad JSON, bad fields, unsupported settings, wrong method, too large', async (t) => {
  const bad = async (path: string, body: unknown, pattern: RegExp, status = 400) => {
    const r = await post(path, body)
    t.equal(r.status, status, `${status} for ${JSON.stringify(body).slice(0, 60)}`)
    t.match(r.json.error?.message, pattern)
  }
  await bad('/v1/completions', '{not json', /Expected a JSON request body/)
  await bad('/v1/completions', '[1]', /a JSON object for the request body/)
  await bad('/v1/completions', { prompt: 5 }, /a string, a list of strings, or token ids for prompt/)
  await bad('/v1/completions', { prompt: [1.5] }, /a token id in \[0, \d+\) for prompt\[0\]/)
  await bad('/v1/completions', { prompt: [{}] }, /a string or a list of token ids for prompt\[0\]/)
  await bad('/v1/completions', { prompt: [[99999]] }, /a token id/)
  await bad('/v1/completions', { prompt: 'x', temperature: -1 }, /from 0 to 100 for temperature/)
  await bad('/v1/completions', { prompt: 'x', temperature: 'hot' }, /a number for temperature/)
  await bad('/v1/completions', { prompt: 'x', top_p: 0 }, /\(0, 1\] for top_p/)
  await bad('/v1/completions', { prompt: 'x', n: 0 }, /from 1 to 16 for n/)
  await bad('/v1/completions', { prompt: 'x', max_tokens: 0 }, /from 1 to 4096 for max_tokens/)
  await bad('/v1/completions', { prompt: 'x', seed: -1 }, /non-negative integer for seed/)
  await bad('/v1/completions', { prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }, /up to 4 for stop/)
  await bad('/v1/completions', { prompt: 'x', stream: 'yes' }, /a boolean for stream/)
  await bad('/v1/completions', { prompt: 'x', logprobs: 21 }, /from 0 to 20 for logprobs/)
  await bad('/v1/completions', { prompt: 'x', echo: true }, /echo is not supported/)
  await bad('/v1/completions', { prompt: 'x', best_of: 2 }, /best_of > 1/)
  await bad('/v1/completions', { prompt: 'x', presence_penalty: 0.5 }, /presence_penalty is not supported/)
  await bad('/v1/completions', { prompt: 'x', logit_bias: { '1': 5 } }, /logit_bias/)
  await bad('/v1/chat/completions', { messages: [] }, /a non-empty list of messages/)
  await bad('/v1/chat/completions', { messages: [{ role: 'robot', content: 'x' }] }, /"system", "user", "assistant" or "tool"/)
  await bad('/v1/chat/completions', { messages: [{ role: 'user', content: null }] }, /a string for messages\[0\].content/)
  await bad('/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }, /text parts/)
  await bad('/v1/chat/completions', { messages: [{ role: 'user', content: 5 }] }, /a string, null, or a list of text parts/)
  await bad('/v1/chat/completions', { messages: ['x'] }, /a message object/)
  await bad('/v1/chat/completions', { messages: [{ role: 'assistant', content: null, tool_calls: [{ function: { arguments: '{}' } }] }] }, /a function name/)
  await bad('/v1/chat/completions', { messages: [{ role: 'assistant', content: null, tool_calls: [{ function: { name: 'f', arguments: '{x' } }] }] }, /JSON text for messages\[0\].tool_calls\[0\].function.arguments/)
  await bad('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], tools: {} }, /a list of tools/)
  await bad('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], tools: [5] }, /a tool object/)
  await bad('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }, /top_logprobs needs logprobs: true/)
  await bad('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], logprobs: 'yes' }, /a boolean for logprobs/)
  await bad('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 50 }, /from 0 to 20 for top_logprobs/)
  const get = await fetch(base + '/v1/completions')
  t.equal(get.status, 405)
  t.equal(get.headers.get('allow'), 'POST')
  const post405 = await post('/v1/models', {})
  t.equal(post405.status, 405)
  const small = createOpenAIServer({ model, maxBodyBytes: 64 })
  await new Promise<void>((resolve) => small.listen(0, '127.0.0.1', resolve))
  const smallBase = `http://127.0.0.1:${(small.address() as AddressInfo).port}`
  const big = await fetch(smallBase + '/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: 'x'.repeat(200) }) })
  t.equal(big.status, 413)
  t.equal((await fetch(smallBase + '/nope')).status, 404)
  small.closeAllConnections()
  await new Promise<void>((resolve) => small.close(() => resolve()))
  t.throws(() => createOpenAIHandler({ model: {} as never }), { code: 'ERR_GRPO_INVALID_ARG', message: /a LoadedModel/ })
  t.throws(() => createOpenAIHandler({} as never), { message: /a LoadedModel .* but received undefined/ })
  t.throws(() => createOpenAIHandler({ model, maxBatch: 0 }), { message: /an integer >= 1 for maxBatch/ })
})

t.test('a policy that fails answers 500 and the server keeps serving', async (t) => {
  const broken = scriptedModel([])
  broken.policy.sample = async () => {
    throw new Error('out of memory')
  }
  const s = createOpenAIServer({ model: broken })
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1/completions`
  const r = await fetch(url, { method: 'POST', body: JSON.stringify({ prompt: 'x' }) })
  t.equal(r.status, 500)
  t.match(await r.json(), { error: { type: 'server_error', message: /out of memory/ } })
  t.equal((await fetch(url.replace('completions', 'models'))).status, 200)
  s.closeAllConnections()
  await new Promise<void>((resolve) => s.close(() => resolve()))
})

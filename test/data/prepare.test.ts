import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { parse, stringify } from 'lossless-json'
import {
  extractToolaceTools,
  instanceLine,
  looksLikeCalls,
  prepareData,
  prepareToolaceRecord,
  prepareXlamRecord,
  RecordDropped,
  writeTrainingData,
  type TrainingInstance,
} from '../../lib/data/index.js'

const weatherTool = {
  name: 'get_weather',
  description: 'Weather forecast',
  parameters: { city: { description: 'City', type: 'str', default: 'Paris' }, days: { description: 'Days', type: 'int, optional', default: 1 } },
}
const timeTool = { name: 'get_time', description: 'Local time', parameters: { tz: { description: 'Zone', type: 'str' } } }

const xlam = (id: number, query: string, tools: unknown, answers: unknown, raw = false) => ({
  id,
  query,
  tools: raw ? tools : JSON.stringify(tools),
  answers: raw ? answers : JSON.stringify(answers),
})

export const xlamRecords = [
  xlam(1, 'Weather in Paris and the time in Tokyo?', [weatherTool, timeTool], [
    { name: 'get_weather', arguments: { city: 'Paris', days: 2 } },
    { name: 'get_time', arguments: { tz: 'Asia/Tokyo' } },
  ]),
  xlam(2, 'Weather?', [timeTool], [{ name: 'get_weather', arguments: { city: 'Paris' } }]),
  { id: 3, query: 'Bad tools', tools: '[{"name": "x",}]', answers: '[]' },
  { id: 4, query: 'Bad answers', tools: JSON.stringify([timeTool]), answers: "[{'name': 'get_time'}]" },
  { id: 5, tools: '[]', answers: '[]' },
  { id: 6, query: 'Answer without arguments', tools: JSON.stringify([timeTool]), answers: '[{"name": "get_time"}]' },
  { id: 7, query: 'Tools not a list', tools: '{"name": "x"}', answers: '[]' },
  { id: 8, query: 'A tool without a name', tools: '[{"description": "x"}]', answers: '[]' },
  { id: 9, query: 'Answers not a list', tools: JSON.stringify([timeTool]), answers: '{"name": "get_time", "arguments": {}}' },
  { id: 10, query: 'No tools field', answers: '[]' },
  { id: 11, query: 'No answers field', tools: '[]' },
]

const system = (tools: unknown) =>
  'You are an expert in composing functions. You are given a question and a set of possible functions.\n' +
  'Here is a list of functions in JSON format that you can invoke:\n' +
  JSON.stringify(tools, null, 1) +
  '. Should you decide to return the function call, put it at the beginning of your response [like this].'

const tideTool = { name: 'Tide Times', description: 'Tides [high, low] of a port', parameters: { type: 'dict', properties: { port: { type: 'string' }, days: { type: 'integer' } } } }
const sunTool = { name: 'Sun.Rise-Set', description: 'Sunrise', parameters: { type: 'dict', properties: { city: { type: 'string' } } } }

export const toolaceRecords = [
  {
    system: system([tideTool, sunTool]),
    conversations: [
      { from: 'user', value: 'Tides at Le Havre for 2 days, then sunrise there?' },
      { from: 'assistant', value: '[Tide Times(port="Le Havre (north)", days=2)]' },
      { from: 'tool', value: '[{"name": "Tide Times", "results": {"high": "06:12"}}]' },
      { from: 'assistant', value: 'High tide is at 06:12. Checking sunrise.' },
      { from: 'assistant', value: ' [Sun.Rise-Set(city="Le Havre"), Tide Times(port="Le Havre", days=1.0)] ' },
      { from: 'tool', value: '{"sunrise": "07:01"}' },
      { from: 'assistant', value: 'Sunrise is at 07:01.' },
    ],
  },
  { system: system([tideTool]), conversations: [{ from: 'user', value: 'x' }, { from: 'assistant', value: '[Tide Times("Le Havre", days=2)]' }] },
  { system: system([tideTool]), conversations: [{ from: 'user', value: 'x' }, { from: 'assistant', value: '[Moon Phase(date="2025-01-01")]' }] },
  { system: 'You are a helpful assistant.', conversations: [{ from: 'user', value: 'x' }] },
  { system: system([tideTool]), conversations: [{ from: 'user', value: 'Hi' }, { from: 'assistant', value: 'Hello! How can I help?' }] },
  { system: system([tideTool]), conversations: [{ from: 'narrator', value: 'x' }] },
  { system: system([tideTool]), conversations: [{ from: 'user', value: 'x' }, { from: 'assistant', value: '[Tide Times(port="x"]' }] },
  { system: 'Here is a list of functions in JSON format that you can invoke: [{"name": "a",}]', conversations: [] },
  { system: 'Here is a list of functions in JSON format that you can invoke: none', conversations: [] },
  { system: 'Here is a list of functions in JSON format that you can invoke: [{"name": "a"}', conversations: [] },
  { system: system([tideTool]), conversations: 'nope' },
  { conversations: [] },
  { system: system([tideTool]), conversations: [{ from: 'user' }] },
  'not an object',
]

t.test('xLAM records: kept, or dropped with their reason', async (t) => {
  const reasons = xlamRecords.map((record) => {
    const outcome = prepareXlamRecord(record)
    return 'drop' in outcome ? outcome.drop.reason : `kept ${outcome.instances.length}`
  })
  t.same(reasons, [
    'kept 1',
    'unknown-tool',
    'tools-parse-error',
    'call-parse-error',
    'bad-record',
    'call-parse-error',
    'tools-parse-error',
    'tools-parse-error',
    'call-parse-error',
    'no-tools',
    'call-parse-error',
  ])
  const kept = prepareXlamRecord(xlamRecords[0]) as { instances: TrainingInstance[] }
  const instance = kept.instances[0]!
  t.same(instance.messages.map((m) => m.role), ['system', 'user'])
  t.equal(instance.messages[1]!.content, 'Weather in Paris and the time in Tokyo?')
  t.match(instance.messages[0]!.content, '{"type": "function", "function": {"name": "get_weather"')
  t.same(instance.answer.map((c) => c.name), ['get_weather', 'get_time'])
  t.same(prepareXlamRecord('x' as never), { drop: { reason: 'bad-record', detail: 'the record is not a JSON object' } })
})

t.test('ToolACE records: one instance per call turn, earlier turns as context', async (t) => {
  const outcome = prepareToolaceRecord(toolaceRecords[0])
  t.ok('instances' in outcome)
  const instances = (outcome as { instances: TrainingInstance[] }).instances
  t.equal(instances.length, 2)
  t.same(instances[0]!.messages.map((m) => m.role), ['system', 'user'])
  t.equal(instances[0]!.answer[0]!.name, 'Tide Times')
  t.same(instances[1]!.messages.map((m) => m.role), ['system', 'user', 'assistant', 'tool', 'assistant'])
  t.equal(instances[1]!.messages[2]!.content, '<tool_call>\n[{"name": "Tide Times", "arguments": {"port": "Le Havre (north)", "days": 2}}]\n</tool_call>')
  t.equal(instances[1]!.messages[4]!.content, 'High tide is at 06:12. Checking sunrise.')
  t.equal(instanceLine(instances[1]!).includes('"answer":[{"name":"Sun.Rise-Set","arguments":{"city":"Le Havre"}},{"name":"Tide Times","arguments":{"port":"Le Havre","days":1.0}}]'), true)
  t.same(instances[1]!.tools.map((tool) => (tool as { name: string }).name), ['Tide Times', 'Sun.Rise-Set'])

  const reasons = toolaceRecords.slice(1).map((record) => {
    const o = prepareToolaceRecord(record)
    return 'drop' in o ? o.drop.reason : 'kept'
  })
  t.same(reasons, [
    'positional-argument',
    'unknown-tool',
    'no-tools',
    'no-calls',
    'bad-record',
    'call-parse-error',
    'tools-parse-error',
    'tools-parse-error',
    'tools-parse-error',
    'bad-record',
    'bad-record',
    'bad-record',
    'bad-record',
  ])
  const positional = prepareToolaceRecord(toolaceRecords[1]) as { drop: { detail: string } }
  t.match(positional.drop.detail, /turn 1: Expected a keyword argument/)
})

t.test('extractToolaceTools and looksLikeCalls', async (t) => {
  t.same(extractToolaceTools(system([tideTool])), [tideTool])
  t.throws(() => extractToolaceTools('no marker'), { code: 'ERR_GRPO_INVALID_ARG', reason: 'no-tools' })
  try {
    extractToolaceTools('x')
  } catch (error) {
    t.ok(error instanceof RecordDropped)
  }
  t.ok(looksLikeCalls('[Tide Times(port="x")]'))
  t.ok(looksLikeCalls('  [f()]\n'))
  t.notOk(looksLikeCalls('[1] See the reference.'))
  t.notOk(looksLikeCalls('[Note: this is prose (really)]'))
  t.notOk(looksLikeCalls('The call [f(a=1)] is what I would make.'))
  t.notOk(looksLikeCalls('[]'))
})

t.test('the pipeline: files in, JSONL and a report of every drop out', async (t) => {
  const dir = t.testdir({
    // xLAM as a JSON array, ToolACE as JSONL with one line that is not JSON.
    'xlam.json': JSON.stringify(xlamRecords, null, 2),
    'toolace.jsonl': toolaceRecords.map((r) => JSON.stringify(r)).join('\n') + '\n{"system": broken\n',
  })
  const out = join(dir, 'train.jsonl')
  const report = await writeTrainingData({ xlam: join(dir, 'xlam.json'), toolace: join(dir, 'toolace.jsonl'), out })
  const lines = readFileSync(out, 'utf8').trimEnd().split('\n')
  t.equal(lines.length, 3, '1 xLAM instance and 2 ToolACE instances')
  const first = parse(lines[0]!) as Record<string, unknown>
  t.same(Object.keys(first), ['messages', 'tools', 'answer'])
  t.same(report.sources.xlam, {
    records: 11,
    kept: 1,
    dropped: 10,
    instances: 1,
    reasons: { 'unknown-tool': 1, 'tools-parse-error': 3, 'call-parse-error': 4, 'bad-record': 1, 'no-tools': 1 },
  })
  t.same(report.sources.toolace, {
    records: 15,
    kept: 1,
    dropped: 14,
    instances: 2,
    reasons: {
      'positional-argument': 1,
      'unknown-tool': 1,
      'no-tools': 1,
      'no-calls': 1,
      'bad-record': 5,
      'call-parse-error': 1,
      'tools-parse-error': 3,
      'bad-record-json': 1,
    },
  })
  t.equal(report.drops.length, 24, 'every dropped record is listed')
  t.same(report.drops[0], { source: 'xlam', index: 1, line: 8, id: 2, reason: 'unknown-tool', detail: 'the call "get_weather" names no tool of the record' })
  t.same(report.drops.at(-1)!.index, 14)
  t.equal(report.drops.at(-1)!.reason, 'bad-record-json')
  t.match(report.summary(), /^xlam: 11 records, 1 kept, 1 instances, 10 dropped\n {2}bad-record: 1\n/)
  t.same(JSON.parse(JSON.stringify(report)).drops.length, 24)
})

t.test('numbers stay exact from the source to the output', async (t) => {
  // Structured (not JSON text) tools and answers: the record is parsed losslessly.
  const raw = `{"id": 1, "query": "q", "tools": [{"name": "f", "parameters": {"x": {"type": "float", "default": 5.0}}}], "answers": [{"name": "f", "arguments": {"x": 5.0, "id": 12345678901234567890}}]}`
  const text = `{"id": 2, "query": "q", "tools": "[{\\"name\\": \\"f\\"}]", "answers": "[{\\"name\\": \\"f\\", \\"arguments\\": {\\"x\\": 1.50, \\"y\\": -0.0}}]"}`
  const lines: string[] = []
  const report = await prepareData({
    xlam: (async function* () {
      yield raw + '\n' + text + '\n'
    })(),
    onInstance: (instance) => {
      lines.push(instanceLine(instance))
    },
  })
  t.equal(report.sources.xlam.kept, 2)
  t.match(lines[0]!, '"answer":[{"name":"f","arguments":{"x":5.0,"id":12345678901234567890}}]')
  t.match(lines[0]!, '"default":5.0')
  t.match(lines[0]!, '\\"default\\": 5.0', 'the system prompt shows the tool with its exact numbers')
  t.match(lines[1]!, '"answer":[{"name":"f","arguments":{"x":1.50,"y":-0.0}}]')
})

t.test('bad options and failing outputs', async (t) => {
  await t.rejects(prepareData({ onInstance: () => {} }), { code: 'ERR_GRPO_INVALID_ARG', message: /at least one of xlam and toolace/ })
  await t.rejects(prepareData(null as never), { code: 'ERR_GRPO_INVALID_ARG' })
  await t.rejects(prepareData({ xlam: 'x', onInstance: 5 as never }), { message: /options\.onInstance/ })
  const dir = t.testdir({ 'x.jsonl': xlamRecords.map((r) => JSON.stringify(r)).join('\n') })
  await t.rejects(writeTrainingData({ xlam: join(dir, 'x.jsonl'), out: join(dir, 'missing', 'out.jsonl') }), { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG', message: /writable file for .*ENOENT/, cause: { code: 'ENOENT' } })
  for (const out of ['', 'a\u0000b']) {
    await t.rejects(writeTrainingData({ xlam: join(dir, 'x.jsonl'), out }), { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG', message: /not empty, no NUL character/ })
  }
  const failing = new Writable({
    write(_chunk, _encoding, callback) {
      callback(new Error('disk full'))
    },
  })
  await t.rejects(writeTrainingData({ xlam: join(dir, 'x.jsonl'), out: failing }), { message: 'disk full' })
})

t.test('large outputs are written in blocks, with backpressure', async (t) => {
  const many = Array.from({ length: 800 }, (_, i) => JSON.stringify(xlam(i, 'q'.repeat(200), [weatherTool, timeTool], [{ name: 'get_time', arguments: { tz: 'UTC' } }])))
  const dir = t.testdir({ 'x.jsonl': many.join('\n') })
  const sink = new PassThrough({ highWaterMark: 1024 })
  let bytes = 0
  sink.on('data', (chunk: Buffer) => {
    bytes += chunk.length
  })
  const report = await writeTrainingData({ xlam: join(dir, 'x.jsonl'), out: sink })
  t.equal(report.sources.xlam.instances, 800)
  t.ok(bytes > 1 << 20, `${bytes} bytes written`)
  writeFileSync(join(dir, 'unused'), '')
})

t.test('real ToolACE tool names with parentheses and apostrophes are resolved against the record (issue 18 item 10)', async (t) => {
  // Before: the parser stopped the name at "(" and dropped the whole record, valid calls included; an apostrophe
  // made the turn look like prose, so the call silently became context.
  const vin = { name: 'Vehicle Identification Number (VIN) Lookup', description: 'VIN', parameters: { type: 'dict', properties: { vin: { type: 'string' } } } }
  const agent = { name: "Get Agent's Active Listings", description: 'Listings', parameters: { type: 'dict', properties: { agent_id: { type: 'integer' } } } }
  const get = { name: 'Get', description: 'a tool whose name is a prefix of another', parameters: { type: 'dict', properties: {} } }
  const record = {
    system: system([vin, agent, get, tideTool]),
    conversations: [
      { from: 'user', value: 'Look up VIN 1HGCM and the listings of agent 7, and the tides at Brest.' },
      { from: 'assistant', value: '[Vehicle Identification Number (VIN) Lookup(vin="1HGCM"), Tide Times(port="Brest", days=1)]' },
      { from: 'tool', value: '{"make": "Honda"}' },
      { from: 'assistant', value: "[Get Agent's Active Listings(agent_id=7)]" },
      { from: 'tool', value: '[]' },
      { from: 'assistant', value: '[Get()]' },
    ],
  }
  const outcome = prepareToolaceRecord(record)
  t.ok('instances' in outcome, JSON.stringify(outcome).slice(0, 200))
  const instances = (outcome as { instances: TrainingInstance[] }).instances
  t.same(
    instances.map((i) => i.answer.map((c) => c.name)),
    [['Vehicle Identification Number (VIN) Lookup', 'Tide Times'], ["Get Agent's Active Listings"], ['Get']],
  )
  t.same(JSON.parse(stringify(instances[0]!.answer[0]!.arguments)!), { vin: '1HGCM' })
  t.ok(looksLikeCalls("[Get Agent's Active Listings(agent_id=7)]", [agent.name]))
  t.notOk(looksLikeCalls("[Get Agent's Active Listings(agent_id=7)]"), 'without the names it reads as prose, as before')
  // A name the record does not list is still an unknown tool, not a silent parse.
  const unknown = prepareToolaceRecord({ ...record, system: system([tideTool]) })
  t.match(unknown, { drop: { reason: 'positional-argument', detail: /turn 1: Expected a keyword argument/ } })
})

t.test('the ShareGPT layout of LLaMA-Factory: function_call and observation turns, tools as JSON (issue 18 item 10)', async (t) => {
  const tools = [
    { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } } },
    { name: 'get_time', description: 'Time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } },
  ]
  const record = {
    conversations: [
      { from: 'human', value: 'Weather in Paris for 2 days?' },
      { from: 'function_call', value: '{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}' },
      { from: 'observation', value: '{"forecast": "sun"}' },
      { from: 'gpt', value: 'Sunny for two days.' },
      { from: 'human', value: 'And the time in Tokyo and Paris?' },
      { from: 'function_call', value: '[{"name": "get_time", "arguments": "{\\"tz\\": \\"Asia/Tokyo\\"}"}, {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}]' },
      { from: 'observation', value: '["09:00", "02:00"]' },
      { from: 'gpt', value: 'It is 09:00 in Tokyo and 02:00 in Paris.' },
    ],
    system: 'You are a helpful assistant.',
    tools: JSON.stringify(tools),
  }
  const outcome = prepareToolaceRecord(record)
  t.ok('instances' in outcome, JSON.stringify(outcome).slice(0, 300))
  const instances = (outcome as { instances: TrainingInstance[] }).instances
  t.equal(instances.length, 2)
  t.same(instances[0]!.messages.map((m) => m.role), ['system', 'user'])
  t.equal(instanceLine(instances[0]!).includes('"answer":[{"name":"get_weather","arguments":{"city":"Paris","days":2}}]'), true, 'numbers exact')
  t.same(instances[1]!.messages.map((m) => m.role), ['system', 'user', 'assistant', 'tool', 'assistant', 'user'])
  t.same(instances[1]!.answer.map((c) => [c.name, stringify(c.arguments)]), [['get_time', '{"tz":"Asia/Tokyo"}'], ['get_time', '{"tz":"Europe/Paris"}']])
  // role/content keys, a messages list, structured tools and a system turn are read as well.
  const openai = prepareToolaceRecord({
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Time in Tokyo?' },
      { role: 'function_call', content: '{"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}}' },
    ],
    tools,
  })
  t.same((openai as { instances: TrainingInstance[] }).instances.map((i) => i.answer[0]!.name), ['get_time'])
  const drops = [
    { conversations: [{ from: 'human', value: 'x' }, { from: 'function_call', value: '{"name": "get_weather",' }], tools },
    { conversations: [{ from: 'human', value: 'x' }, { from: 'function_call', value: '{"name": "nope", "arguments": {}}' }], tools },
    { conversations: [{ from: 'human', value: 'x' }, { from: 'function_call', value: '[]' }], tools },
    { conversations: [{ from: 'human', value: 'x' }, { from: 'function_call', value: '{"name": "get_time", "arguments": "[1"}' }], tools },
    { conversations: [{ from: 'human', value: 'x' }, { from: 'function_call', value: '{"name": "get_time", "arguments": [1]}' }], tools },
    { conversations: [{ from: 'human', value: 'x' }, { from: 'function_call', value: '5' }], tools },
    { conversations: [{ from: 'human', value: 'x' }], tools: '[{"name": ' },
    { conversations: [{ from: 'human', value: 'x' }], system: 5, tools },
  ].map((r) => {
    const o = prepareToolaceRecord(r)
    return 'drop' in o ? o.drop.reason : 'kept'
  })
  t.same(drops, ['call-parse-error', 'unknown-tool', 'call-parse-error', 'call-parse-error', 'call-parse-error', 'call-parse-error', 'tools-parse-error', 'bad-record'])
})

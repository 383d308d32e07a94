import t from 'tap'
import { LosslessNumber } from 'lossless-json'
import { buildToolPrompt, pythonJson, renderCalls, renderChatML, toolSystemPrompt } from '../../lib/prompt.js'
import { scoreToolCall } from '../../lib/reward/index.js'

const weather = { name: 'get_weather', description: 'Forecast', parameters: { city: { type: 'str' }, days: { type: 'int', default: 1 } } }
const wrapped = { type: 'function', function: { name: 'get_time', parameters: { tz: { type: 'str' } } } }

t.test('the system prompt: role, tools one per line in <tools>, the rules, one example', async (t) => {
  const text = toolSystemPrompt([weather, wrapped])
  t.match(text, /^You are an expert in composing function calls\./)
  const tools = text.slice(text.indexOf('<tools>\n') + 8, text.indexOf('\n</tools>')).split('\n')
  t.same(tools, [
    '{"type": "function", "function": {"name": "get_weather", "description": "Forecast", "parameters": {"city": {"type": "str"}, "days": {"type": "int", "default": 1}}}}',
    '{"type": "function", "function": {"name": "get_time", "parameters": {"tz": {"type": "str"}}}}',
  ])
  t.match(text, '<think> </think>')
  t.match(text, '<tool_call></tool_call>')
  t.match(text, '"name"')
  t.match(text, '"arguments"')
  // The example reply is itself a reply that earns the full reward.
  const example = text.slice(text.indexOf('Example of a complete reply:\n') + 29)
  const r = scoreToolCall(example, [{ name: 'get_weather', arguments: { city: 'Paris', days: 1, unit: 'celsius' } }])
  t.same([r.score, r.reason], [1, 'ok'])
  t.match(toolSystemPrompt([]), '<tools>\n</tools>')
})

t.test('buildToolPrompt: system message, then the conversation with earlier calls as <tool_call> turns', async (t) => {
  const messages = buildToolPrompt([weather], [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', calls: [{ name: 'get_weather', arguments: { city: 'Paris', days: new LosslessNumber('2.0') } }] },
    { role: 'tool', content: '{"temp": 21}' },
    { role: 'assistant', content: 'It is 21 degrees.' },
    { role: 'user', content: 'And Lyon?' },
    { role: 'assistant', content: '<think>Same tool.</think>', calls: [{ name: 'get_weather', arguments: { city: 'Lyon' } }, { name: 'get_weather', arguments: {} }] },
  ])
  t.same(messages.map((m) => m.role), ['system', 'user', 'assistant', 'tool', 'assistant', 'user', 'assistant'])
  t.equal(messages[0]!.content, toolSystemPrompt([weather]))
  t.equal(messages[2]!.content, '<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2.0}}]\n</tool_call>')
  t.equal(
    messages[6]!.content,
    '<think>Same tool.</think>\n<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Lyon"}}, {"name": "get_weather", "arguments": {}}]\n</tool_call>',
  )
  t.same(buildToolPrompt([], 'Hi'), [{ role: 'system', content: toolSystemPrompt([]) }, { role: 'user', content: 'Hi' }])
})

t.test('buildToolPrompt validates its input', async (t) => {
  const bad: Array<[() => unknown, RegExp]> = [
    [() => buildToolPrompt('x' as never, 'Hi'), /for tools/],
    [() => buildToolPrompt([5], 'Hi'), /for tools\[0\]/],
    [() => buildToolPrompt([], 5 as never), /for conversation/],
    [() => buildToolPrompt([], [null as never]), /for conversation\[0\]/],
    [() => buildToolPrompt([], [{ role: 'system' as never, content: 'x' }]), /conversation\[0\]\.role/],
    [() => buildToolPrompt([], [{ role: 'user', content: 5 as never }]), /conversation\[0\]\.content/],
    [() => buildToolPrompt([], [{ role: 'user' }]), /conversation\[0\]\.content/],
    [() => buildToolPrompt([], [{ role: 'user', calls: [] }]), /conversation\[0\]\.calls/],
    [() => buildToolPrompt([], [{ role: 'assistant', calls: 'x' as never }]), /conversation\[0\]\.calls/],
    [() => buildToolPrompt([], [{ role: 'assistant', calls: [{ name: 5 } as never] }]), /conversation\[0\]\.calls\[0\]/],
    [() => renderCalls([{ name: 'f', arguments: { x: NaN } }]), /for calls\[0\]\.arguments\.x/],
    [() => pythonJson(() => 1), /for value/],
  ]
  for (const [fn, message] of bad) t.throws(fn, { code: 'ERR_GRPO_INVALID_ARG', message })
})

t.test('pythonJson writes like json.dumps(ensure_ascii=False)', async (t) => {
  t.equal(pythonJson({ a: [1, 2.5, true, null, 'é"\n'], b: { c: {} }, d: [], e: undefined, f: 12345678901234567890n }), '{"a": [1, 2.5, true, null, "é\\"\\n"], "b": {"c": {}}, "d": [], "f": 12345678901234567890}')
  t.equal(pythonJson(false), 'false')
})

t.test('renderChatML: Qwen-style turns, tool results grouped, generation prompt', async (t) => {
  const text = renderChatML(
    [
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U' },
      { role: 'assistant', content: '<tool_call>\n[]\n</tool_call>' },
      { role: 'tool', content: 'R1' },
      { role: 'tool', content: 'R2' },
      { role: 'assistant', content: 'A' },
      { role: 'tool', content: 'R3' },
    ],
    { addGenerationPrompt: true },
  )
  t.equal(
    text,
    '<|im_start|>system\nS<|im_end|>\n' +
      '<|im_start|>user\nU<|im_end|>\n' +
      '<|im_start|>assistant\n<tool_call>\n[]\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\nR1\n</tool_response>\n<tool_response>\nR2\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\nA<|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\nR3\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\n',
  )
  t.equal(renderChatML([{ role: 'user', content: 'U' }]), '<|im_start|>user\nU<|im_end|>\n')
  t.equal(renderChatML([]), '')
  // A rendered prompt plus a reply scores as the reply alone.
  const prompt = renderChatML(buildToolPrompt([weather], 'Weather in Paris tomorrow?'), { addGenerationPrompt: true })
  const reply = '<think>One call.</think><tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}]</tool_call>'
  t.equal(scoreToolCall(prompt + reply, '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}]').score, 1)
  t.equal(scoreToolCall(prompt + 'no idea', '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}]').reason, 'no-call')
  for (const [messages, message] of [
    ['x', /for messages/],
    [[null], /messages\[0\]/],
    [[{ role: '', content: 'x' }], /messages\[0\]\.role/],
    [[{ role: 'user', content: 1 }], /messages\[0\]\.content/],
  ] as const) {
    t.throws(() => renderChatML(messages as never), { code: 'ERR_GRPO_INVALID_ARG', message })
  }
})

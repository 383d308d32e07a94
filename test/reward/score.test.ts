import t from 'tap'
import fc from 'fast-check'
import { LosslessNumber, isLosslessNumber, stringify } from 'lossless-json'
import { GrpoError } from '../../lib/errors.js'
import { scoreToolCall, type GroundTruth, type ScoreOptions } from '../../lib/reward/index.js'
import { MAX_JSON_DEPTH, canonical, canonicalNumber, parseLossless, pythonStrip } from '../../lib/reward/json.js'

const GT = '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]'
const wrap = (block: string, think = '<think>The user wants the weather.</think>\n') =>
  `${think}<tool_call>${block}</tool_call>`
const score = (completion: string, groundTruth: GroundTruth = GT, options?: ScoreOptions) =>
  scoreToolCall(completion, groundTruth, options)
const call = (name: string, args: string) => `{"name": "${name}", "arguments": ${args}}`

t.test('an exact match scores 1 and returns the parsed calls with exact numbers', async (t) => {
  const r = score(wrap('[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]'))
  t.same([r.score, r.reason], [1, 'ok'])
  t.equal(r.calls!.length, 1)
  t.equal(r.calls![0]!.name, 'get_weather')
  const days = (r.calls![0]!.arguments as Record<string, unknown>).days
  t.ok(isLosslessNumber(days))
  t.equal(String(days), '2')
})

t.test('argument order and call order are free', async (t) => {
  t.equal(score(wrap('[{"arguments": {"days": 2, "city": "Paris"}, "name": "get_weather"}]')).score, 1)
  const gt = `[${call('a', '{"x": 1}')}, ${call('b', '{"y": [1, 2]}')}]`
  t.equal(score(wrap(`[${call('b', '{"y": [1, 2]}')}, ${call('a', '{"x": 1}')}]`), gt).score, 1)
  t.same(score(wrap(`[${call('b', '{"y": [2, 1]}')}, ${call('a', '{"x": 1}')}]`), gt).reason, 'args-mismatch')
})

t.test('duplicate calls must match in count', async (t) => {
  const one = call('f', '{"a": 1}')
  const two = call('f', '{"a": 2}')
  t.equal(score(wrap(`[${one}, ${one}]`), `[${one}, ${one}]`).score, 1)
  t.equal(score(wrap(`[${one}]`), `[${one}, ${one}]`).reason, 'name-mismatch')
  t.equal(score(wrap(`[${one}, ${one}]`), `[${one}]`).reason, 'name-mismatch')
  t.equal(score(wrap(`[${one}, ${one}]`), `[${one}, ${two}]`).reason, 'args-mismatch')
  t.equal(score(wrap(`[${two}, ${one}]`), `[${one}, ${two}]`).score, 1)
})

t.test('a single object counts as a one-element list', async (t) => {
  t.equal(score(wrap('{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}')).score, 1)
})

t.test('JSON in a string is parsed once more, and only once', async (t) => {
  const inner = '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]'
  t.equal(score(wrap(JSON.stringify(inner))).score, 1)
  t.equal(score(wrap(JSON.stringify(JSON.stringify(inner)))).reason, 'bad-format')
  t.equal(score(wrap('"not json at all"')).reason, 'bad-json')
  t.equal(score(wrap(JSON.stringify('5'))).reason, 'no-call')
  // The ground truth may be JSON text of JSON text as well.
  t.equal(score(wrap(inner), JSON.stringify(inner)).score, 1)
})

t.test('the last block wins, with blocks found left to right without overlap', async (t) => {
  const good = '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]'
  const bad = '[{"name": "get_weather", "arguments": {"city": "Lyon", "days": 2}}]'
  t.equal(score(wrap(good) + `\n<tool_call>${bad}</tool_call>`).reason, 'args-mismatch')
  t.equal(score(wrap(bad) + `\n<tool_call>${good}</tool_call>`).score, 1)
  t.equal(score(wrap(good) + '\n<tool_call>oops</tool_call>').reason, 'bad-json')
  // An unclosed opening tag after a complete block does not start a block.
  t.equal(score(wrap(good) + `\n<tool_call>${bad}`).score, 1)
  // A second opening tag inside a block belongs to the block's content.
  t.equal(score(`<think>x</think><tool_call>${bad}<tool_call>${good}</tool_call>`).reason, 'bad-json')
})

t.test('whitespace around the JSON and trailing text are fine; trimming is Python str.strip()', async (t) => {
  const good = '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]'
  t.equal(score(wrap(`\n\t  ${good}  \r\n`) + '\n\nI have called the tool for you.').score, 1)
  t.equal(score(wrap(`\u00a0\u2003\u0085\u001c${good}\u3000`)).score, 1)
  // Python keeps a byte-order mark (and json.loads rejects it); JavaScript's trim() would drop it.
  t.equal(score(wrap(`\ufeff${good}`)).reason, 'bad-json')
  t.equal(pythonStrip('\u000b x \u000c'), 'x')
  t.equal(pythonStrip('\ufeffx'), '\ufeffx')
  t.equal(pythonStrip(''), '')
  t.equal(pythonStrip(' \u0084'), '\u0084')
})

t.test('think tags: presence by default, in order with thinkOrder strict', async (t) => {
  const block = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]</tool_call>'
  const strict = { thinkOrder: 'strict' } as const
  t.equal(score(`<think>a</think>${block}`, GT, strict).score, 1)
  t.equal(score(`</think>a<think>${block}`).score, 1)
  t.equal(score(`</think>a<think>${block}`, GT, strict).reason, 'no-think')
  t.equal(score(`${block}<think>a</think>`).score, 1)
  t.equal(score(`${block}<think>a</think>`, GT, strict).reason, 'no-think')
  t.equal(score(`<think>a${block}</think>`, GT, strict).reason, 'no-think')
  t.equal(score(`<think></think><think>b</think>${block}`, GT, strict).score, 1)
  t.equal(score(`<think>a ${block}`).reason, 'no-think')
  t.equal(score(`a</think> ${block}`).reason, 'no-think')
  t.equal(score(`<think>a ${block}`, GT, strict).reason, 'no-think')
  t.equal(score(block).reason, 'no-think')
  t.equal(score(`<THINK>a</THINK>${block}`).reason, 'no-think')
  // With no block, strict order only asks for <think> before </think> (it matters to the partial variants).
  t.equal(score('<think>a</think> no call', GT, { variant: 'partial', thinkOrder: 'strict' }).score, 0.2)
  t.equal(score('</think>a<think> no call', GT, { variant: 'partial', thinkOrder: 'strict' }).score, 0)
})

t.test('missing or altered tags mean no call', async (t) => {
  const json = '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]'
  t.equal(score(`<think>a</think>${json}`).reason, 'no-call')
  t.equal(score(`<think>a</think><tool_call>${json}`).reason, 'no-call')
  t.equal(score(`<think>a</think>${json}</tool_call>`).reason, 'no-call')
  t.equal(score(`<think>a</think><tool_call >${json}</tool_call>`).reason, 'no-call')
  t.equal(score(`<think>a</think><TOOL_CALL>${json}</TOOL_CALL>`).reason, 'no-call')
  t.equal(score(`<think>a</think></tool_call>${json}<tool_call>`).reason, 'no-call')
  t.equal(score('').reason, 'no-call')
})

t.test('malformed JSON in every form docs/reward.md lists means no call (bad-json)', async (t) => {
  const forms = [
    "[{'name': 'get_weather', 'arguments': {'city': 'Paris', 'days': 2}}]",
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2, "x": True}}]',
    '[{"name": "get_weather", "arguments": {"city": None, "days": 2}}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2},}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}},]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}] // the call',
    '/* call */ [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]',
    '```json\n[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]\n```',
    '[{name: "get_weather", arguments: {city: "Paris", days: 2}}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": NaN}}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": Infinity}}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 02}}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": .5}}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": +2}}]',
    '[{"name": "get_weather", "arguments": {"city": "Par\nis", "days": 2}}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris\\x41", "days": 2}}]',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}',
    '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}] [1]',
    '',
    '   ',
  ]
  for (const form of forms) t.equal(score(wrap(form)).reason, 'bad-json', JSON.stringify(form))
})

t.test('integers and doubles keep their lexical type', async (t) => {
  const gt = (v: string) => `[{"name": "f", "arguments": {"x": ${v}}}]`
  const pred = (v: string) => wrap(`[{"name": "f", "arguments": {"x": ${v}}}]`)
  const same = (a: string, b: string) => score(pred(a), gt(b)).score === 1
  t.notOk(same('5.0', '5'), '5.0 ≠ 5')
  t.notOk(same('5', '5.0'), '5 ≠ 5.0')
  t.ok(same('5.0', '5.00'), '5.0 = 5.00')
  t.ok(same('5e0', '5.0'), '5e0 = 5.0')
  t.ok(same('5E+0', '5.0'), '5E+0 = 5.0')
  t.ok(same('1e2', '100.0'), '1e2 = 100.0')
  t.notOk(same('100', '1e2'), '100 ≠ 1e2')
  t.ok(same('0.1', '0.10000000000000001'), 'doubles compare by value')
  t.ok(same('1e400', '2e400'), 'overflowing doubles are both infinite, as in Python')
  t.notOk(same('1e400', '-1e400'))
  t.equal(score(pred('5.0'), gt('5')).reason, 'args-mismatch')
})

t.test('big integers compare exactly', async (t) => {
  const gt = '[{"name": "f", "arguments": {"id": 12345678901234567890}}]'
  t.equal(score(wrap('[{"name": "f", "arguments": {"id": 12345678901234567890}}]'), gt).score, 1)
  // JSON.parse would round both to the same double.
  t.equal(score(wrap('[{"name": "f", "arguments": {"id": 12345678901234567891}}]'), gt).reason, 'args-mismatch')
  t.equal(score(wrap('[{"name": "f", "arguments": {"id": 1.2345678901234567e19}}]'), gt).reason, 'args-mismatch')
  const huge = '9'.repeat(400)
  t.equal(score(wrap(`[{"name": "f", "arguments": {"id": ${huge}}}]`), `[{"name": "f", "arguments": {"id": ${huge}}}]`).score, 1)
})

t.test('-0.0 differs from 0.0; integer -0 is 0', async (t) => {
  const gt = (v: string) => `[{"name": "f", "arguments": {"x": ${v}}}]`
  const pred = (v: string) => wrap(`[{"name": "f", "arguments": {"x": ${v}}}]`)
  t.equal(score(pred('0.0'), gt('-0.0')).score, 0)
  t.equal(score(pred('-0.0'), gt('0.0')).score, 0)
  t.equal(score(pred('-0.00'), gt('-0.0')).score, 1)
  t.equal(score(pred('-0e5'), gt('-0.0')).score, 1)
  t.equal(score(pred('-1e-400'), gt('-0.0')).score, 1, 'underflow keeps the sign, as in Python')
  t.equal(score(pred('-0'), gt('0')).score, 1)
  t.equal(score(pred('-0'), gt('-0.0')).score, 0)
  t.equal(canonicalNumber('-0'), 'i0')
  t.equal(canonicalNumber('-0.0'), 'd-0')
})

t.test('strings compare by code points: escapes decoded, no normalization, no trimming, case sensitive', async (t) => {
  const gt = (s: string) => JSON.stringify([{ name: 'f', arguments: { s } }])
  const pred = (s: string) => wrap(JSON.stringify([{ name: 'f', arguments: { s } }]))
  t.equal(score(pred('caf\u00e9'), gt('cafe\u0301')).score, 0, 'NFC ≠ NFD')
  t.equal(score(pred('cafe\u0301'), gt('cafe\u0301')).score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"s": "caf\\u00e9"}}]'), gt('caf\u00e9')).score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"s": "a\\/b\\n"}}]'), gt('a/b\n')).score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"s": "\\ud83d\\ude00"}}]'), gt('😀')).score, 1)
  t.equal(score(pred('Paris'), gt('paris')).score, 0)
  t.equal(score(pred('Paris '), gt('Paris')).score, 0)
  t.equal(score(pred('\ud800'), gt('\ud800')).score, 1, 'lone surrogates compare too')
})

t.test('objects compare as key sets at every depth, arrays in order', async (t) => {
  const gt = '[{"name": "f", "arguments": {"rows": [{"a": 1, "b": {"c": [true, null]}}, {"d": "x"}]}}]'
  t.equal(score(wrap('[{"name": "f", "arguments": {"rows": [{"b": {"c": [true, null]}, "a": 1}, {"d": "x"}]}}]'), gt).score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"rows": [{"d": "x"}, {"a": 1, "b": {"c": [true, null]}}]}}]'), gt).score, 0)
  t.equal(score(wrap('[{"name": "f", "arguments": {"rows": [{"a": 1, "b": {"c": [null, true]}}, {"d": "x"}]}}]'), gt).score, 0)
  t.equal(score(wrap('[{"name": "f", "arguments": {"rows": [{"a": 1, "b": {"c": [true, null], "e": 0}}, {"d": "x"}]}}]'), gt).score, 0)
  t.equal(score(wrap('[{"name": "f", "arguments": {"rows": [{"a": 1}, {"d": "x"}]}}]'), gt).score, 0)
  // A repeated key keeps its last value, as Python's json does.
  t.equal(score(wrap('[{"name": "f", "arguments": {"x": 1, "x": 2}}]'), '[{"name": "f", "arguments": {"x": 2}}]').score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"x": 1, "x": 1}}]'), '[{"name": "f", "arguments": {"x": 1}}]').score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"__proto__": {"a": 1}}}]'), '[{"name": "f", "arguments": {"__proto__": {"a": 1}}}]').score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"__proto__": {"a": 1}}}]'), '[{"name": "f", "arguments": {}}]').score, 0)
  t.equal(score(wrap('[{"name": "f", "arguments": {"a": true}}]'), '[{"name": "f", "arguments": {"a": 1}}]').score, 0)
  t.equal(score(wrap('[{"name": "f", "arguments": {"a": "1"}}]'), '[{"name": "f", "arguments": {"a": 1}}]').score, 0)
  t.equal(score(wrap('[{"name": "f", "arguments": {"a": null}}]'), '[{"name": "f", "arguments": {}}]').score, 0)
})

t.test('empty lists on either side', async (t) => {
  t.same([score(wrap('[]'), '[]').score, score(wrap('[]'), '[]').reason], [1, 'ok'])
  t.equal(score(wrap('  [ ]  '), []).score, 1)
  t.equal(score(wrap('[]')).reason, 'name-mismatch')
  t.equal(score(wrap('[{"name": "f", "arguments": {}}]'), '[]').reason, 'name-mismatch')
  t.equal(score('<think>a</think> nothing to call', '[]').reason, 'no-call')
})

t.test('bare numbers, booleans and null in the block mean no call', async (t) => {
  for (const v of ['5', '-1.5e3', 'true', 'false', 'null', '12345678901234567890']) {
    const r = score(wrap(v))
    t.same([r.score, r.reason, r.calls], [0, 'no-call', null], v)
  }
  t.equal(score(wrap('"null"')).reason, 'no-call')
})

t.test('every element must be an object with name and arguments', async (t) => {
  t.equal(score(wrap('[{"name": "get_weather"}]')).reason, 'bad-format')
  t.equal(score(wrap('[{"arguments": {}}]')).reason, 'bad-format')
  t.equal(score(wrap('["get_weather"]')).reason, 'bad-format')
  t.equal(score(wrap('[[{"name": "get_weather", "arguments": {}}]]')).reason, 'bad-format')
  t.equal(score(wrap('[5]')).reason, 'bad-format')
  t.equal(score(wrap('[null]')).reason, 'bad-format')
  t.equal(score(wrap('[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}, 1]')).reason, 'bad-format')
  // Other keys are ignored; arguments may be any JSON value; a name that is not a string never matches.
  t.equal(score(wrap('[{"id": "c1", "type": "function", "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]')).score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": "x=1"}]'), '[{"name": "f", "arguments": "x=1"}]').score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": [1, 2]}]'), '[{"name": "f", "arguments": [1, 2]}]').score, 1)
  t.equal(score(wrap('[{"name": 5, "arguments": {}}]'), '[{"name": "5", "arguments": {}}]').reason, 'name-mismatch')
  t.equal(score(wrap('[{"name": "Get_weather", "arguments": {"city": "Paris", "days": 2}}]')).reason, 'name-mismatch')
})

t.test('variants', async (t) => {
  const good = wrap('[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]')
  const goodNoThink = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]</tool_call>'
  const namesOnly = wrap('[{"name": "get_weather", "arguments": {"city": "Lyon", "days": 2}}]')
  const namesOnlyNoThink = '<tool_call>[{"name": "get_weather", "arguments": {}}]</tool_call>'
  const wrongName = wrap('[{"name": "get_time", "arguments": {}}]')
  const thinkNoCall = '<think>hmm</think> I cannot help.'
  const nothing = 'I cannot help.'
  const table: Array<[string, string, number[]]> = [
    // completion, label, [binary, binary-no-think, partial, partial-name]
    [good, 'good', [1, 1, 1, 1]],
    [goodNoThink, 'good, no think', [0, 1, 0.8, 0.8]],
    [namesOnly, 'names only', [0, 0, 0.2, 0.4]],
    [namesOnlyNoThink, 'names only, no think', [0, 0, 0, 0.2]],
    [wrongName, 'wrong name', [0, 0, 0.2, 0.2]],
    [thinkNoCall, 'think, no call', [0, 0, 0.2, 0.2]],
    [nothing, 'nothing', [0, 0, 0, 0]],
  ]
  const variants = ['binary', 'binary-no-think', 'partial', 'partial-name'] as const
  for (const [completion, label, expected] of table) {
    const got = variants.map((variant) => score(completion, GT, { variant }).score)
    t.same(got, expected, label)
  }
  t.equal(score(goodNoThink, GT, { variant: 'binary-no-think' }).reason, 'ok')
  t.equal(score(goodNoThink, GT, { variant: 'partial' }).reason, 'no-think')
  t.equal(score(namesOnly, GT, { variant: 'partial-name' }).reason, 'args-mismatch')
  t.equal(score(good, GT, {}).score, 1)
})

t.test('only the text after the last assistant marker is scored', async (t) => {
  const prompt =
    '<|im_start|>system\nExample: <think>x</think><tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]</tool_call><|im_end|>\n' +
    '<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n'
  t.equal(score(prompt + 'I do not know.').reason, 'no-call')
  t.equal(score(prompt + wrap('[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]')).score, 1)
  const earlier = '<|im_start|>assistant\n<think>a</think><|im_end|>\n<|im_start|>assistant\n'
  t.equal(score(earlier + '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]</tool_call>').reason, 'no-think')
})

t.test('ground truth forms', async (t) => {
  const pred = wrap('[{"name": "f", "arguments": {"x": 5, "y": 0.5, "id": 12345678901234567890}}]')
  t.equal(score(pred, [{ name: 'f', arguments: { x: 5, y: 0.5, id: 12345678901234567890n } }]).score, 1)
  t.equal(score(pred, { name: 'f', arguments: { x: 5, y: 0.5, id: 12345678901234567890n } }).score, 1)
  t.equal(score(pred, [{ name: 'f', arguments: { x: new LosslessNumber('5'), y: new LosslessNumber('5e-1'), id: new LosslessNumber('12345678901234567890') } }]).score, 1)
  t.equal(score(pred, '{"name": "f", "arguments": {"x": 5, "y": 0.5, "id": 12345678901234567890}}').score, 1)
  // A JavaScript integer is an integer: it does not match 5.0.
  t.equal(score(wrap('[{"name": "f", "arguments": {"x": 5.0}}]'), [{ name: 'f', arguments: { x: 5 } }]).score, 0)
  t.equal(score(wrap('[{"name": "f", "arguments": {"x": 0}}]'), [{ name: 'f', arguments: { x: -0 } }]).score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"x": 1e400}}]'), [{ name: 'f', arguments: { x: Infinity } }]).score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {"x": 1e21}}]'), [{ name: 'f', arguments: { x: 1e21 } }]).score, 0)
  t.equal(score(wrap('[{"name": "f", "arguments": {"x": 1000000000000000000000}}]'), [{ name: 'f', arguments: { x: 1e21 } }]).score, 1)
  t.equal(score(wrap('[{"name": "f", "arguments": {}}]'), [{ name: 'f', arguments: Object.create(null) }]).score, 1)
})

t.test('a malformed ground truth throws ERR_GRPO_INVALID_ARG', async (t) => {
  const bad: unknown[] = [
    'not json',
    "[{'name': 'f', 'arguments': {}}]",
    '5',
    '"[1, 2"',
    '[{"name": "f"}]',
    '[{"name": 5, "arguments": {}}]',
    '[1]',
    'null',
    '',
    5,
    null,
    undefined,
    true,
    [{ name: 'f', arguments: { x: NaN } }],
    [{ name: 'f', arguments: { x: undefined } }],
    [{ name: 'f', arguments: { x: new Map() } }],
    [{ name: 'f', arguments: { x: () => 1 } }],
    [{ name: 'f', arguments: new Date(0) }],
    [{ name: 'f', arguments: Symbol('x') }],
    '['.repeat(200000),
  ]
  for (const groundTruth of bad) {
    t.throws(() => scoreToolCall(wrap('[]'), groundTruth as GroundTruth), { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG' }, String(groundTruth).slice(0, 40))
  }
  const e = t.throws(() => scoreToolCall('x', '[{"name": "f", "arguments": {}}, {"name": "g"}]')) as GrpoError
  t.match(e.message, /^Expected an object with keys "name" and "arguments" for groundTruth\[1\] but received an object$/)
  let deep: unknown = 1
  for (let i = 0; i < 100000; i++) deep = [deep]
  t.throws(() => scoreToolCall('x', [{ name: 'f', arguments: deep }]), { code: 'ERR_GRPO_INVALID_ARG' })
})

t.test('bad options and a non-string completion throw ERR_GRPO_INVALID_ARG', async (t) => {
  t.throws(() => scoreToolCall('x', GT, { variant: 'soft' as never }), { code: 'ERR_GRPO_INVALID_ARG', message: /options\.variant/ })
  t.throws(() => scoreToolCall('x', GT, { thinkOrder: 'any' as never }), { code: 'ERR_GRPO_INVALID_ARG', message: /options\.thinkOrder/ })
  t.throws(() => scoreToolCall('x', GT, 'binary' as never), { code: 'ERR_GRPO_INVALID_ARG' })
  t.throws(() => scoreToolCall(5 as never, GT), { code: 'ERR_GRPO_INVALID_ARG', message: /for completion/ })
  t.equal(scoreToolCall('x', GT, null as never).reason, 'no-call')
})

t.test('deeply nested model output never throws', async (t) => {
  t.equal(score(wrap('['.repeat(300000))).reason, 'bad-json')
  t.equal(score(wrap('['.repeat(300000) + ']'.repeat(300000))).reason, 'bad-json')
  // Nesting is capped at MAX_JSON_DEPTH levels, on every thread alike (Python's json gives up near 1,000).
  const nested = (depth: number) => '{"a": '.repeat(depth) + '1' + '}'.repeat(depth)
  const call = (depth: number) => wrap(`[{"name": "get_weather", "arguments": ${nested(depth)}}]`)
  t.equal(score(call(MAX_JSON_DEPTH - 2)).reason, 'args-mismatch', 'the deepest arguments that parse')
  t.equal(score(call(MAX_JSON_DEPTH - 1)).reason, 'bad-json', 'one level deeper')
  t.equal(score(call(3000)).reason, 'bad-json')
})

t.test('canonical() is injective on the values that matter', async (t) => {
  const texts = ['1', '1.0', '"1"', '[1]', '{"1": 1}', 'true', 'null', '[]', '{}', '""', '[[]]', '{"a": []}']
  const seen = new Set(texts.map((text) => canonical(parseLossless(text))))
  t.equal(seen.size, texts.length)
})

t.test('never throws on model output, whatever it contains (property)', async (t) => {
  const fragments = [
    '<think>', '</think>', '<tool_call>', '</tool_call>', '<|im_start|>assistant', '[', ']', '{', '}', '"', ',', ':',
    '"name"', '"arguments"', '"get_weather"', '"Paris"', '2', '2.0', '-0.0', 'null', 'true', '\\', '\\u00e9', '\n', ' ',
  ]
  const text = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.array(fc.constantFrom(...fragments), { maxLength: 60 }).map((parts) => parts.join('')),
  )
  const variants = ['binary', 'binary-no-think', 'partial', 'partial-name'] as const
  fc.assert(
    fc.property(text, fc.constantFrom(...variants), fc.boolean(), (completion, variant, strict) => {
      const r = scoreToolCall(completion, GT, { variant, thinkOrder: strict ? 'strict' : 'presence' })
      return [0, 0.2, 0.4, 0.8, 1].includes(r.score) && typeof r.reason === 'string'
    }),
    { numRuns: 3000 },
  )
  t.pass('no exception')
})

t.test('calls keep exact numbers for logging', async (t) => {
  const r = score(wrap('[{"name": "f", "arguments": {"a": 5.0, "b": 12345678901234567890, "c": [-0.0]}}]'), '[]')
  t.equal(stringify(r.calls), '[{"name":"f","arguments":{"a":5.0,"b":12345678901234567890,"c":[-0.0]}}]')
})

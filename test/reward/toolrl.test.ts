/**
 * The toolrl variant against cases worked by hand from the definitions of ToolRL (arXiv 2504.13958, §3.3, and its
 * released scorer): format ∈ {0, 1}; correctness = 6 · S / S_max − 3 with S the name IoU plus, per expected call,
 * the best unused same-name prediction's argument-name IoU plus its count of equal values, and S_max = 1 +
 * Σ (1 + |expected arguments|). Also: Python's `==` on values, the no-call request, ToolRL's own line layout,
 * the batch scorer (workers included) and the worked example of docs/reward.md.
 */
import t from 'tap'
import { closeScoringPool, scoreBatch, scoreToolCall } from '../../lib/reward/index.js'
import { multisetIou, pythonValueKey, toolrlFormat, toolrlReply } from '../../lib/reward/toolrl.js'

t.teardown(() => closeScoringPool())

const toolrl = { variant: 'toolrl' } as const
const think = '<think>plan</think>\n'
/** A reply in the exact layout (format 1) with these calls as a JSON list. */
const reply = (calls: unknown) => `${think}<tool_call>\n${JSON.stringify(calls)}\n</tool_call>`
const score = (completion: string, truth: unknown) => scoreToolCall(completion, truth as never, toolrl)
const near = (t: Tap.Test, a: number, b: number, what: string) => t.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} ≈ ${b}`)

t.test('exact match: format 1 + correctness 3', async (t) => {
  const truth = [{ name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } }]
  const r = score(reply(truth), truth)
  t.same([r.score, r.reason, r.parts], [4, 'ok', { format: 1, correctness: 3 }])
  // The same calls without the think block: format 0, reason bad-layout.
  const bare = score(`<tool_call>\n${JSON.stringify(truth)}\n</tool_call>`, truth)
  t.same([bare.score, bare.reason, bare.parts], [3, 'bad-layout', { format: 0, correctness: 3 }])
})

t.test('one wrong value: S = 1 (names) + 1 (keys) + 1 (one value) of S_max = 4', async (t) => {
  const truth = [{ name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } }]
  const r = score(reply([{ name: 'get_weather', arguments: { city: 'Paris', unit: 'kelvin' } }]), truth)
  // 6 · 3 / 4 − 3 = 1.5
  t.same([r.score, r.reason, r.parts], [2.5, 'args-mismatch', { format: 1, correctness: 1.5 }])
  // A missing key: key IoU 1/2, one value: S = 1 + 0.5 + 1 = 2.5 → 6 · 2.5 / 4 − 3 = 0.75.
  const missing = score(reply([{ name: 'get_weather', arguments: { city: 'Paris' } }]), truth)
  near(t, missing.parts!.correctness, 0.75, 'missing key')
  // An extra key: key IoU 2/3, both values: S = 1 + 2/3 + 2 → 6 · (11/3) / 4 − 3 = 2.5.
  const extra = score(reply([{ name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius', days: 3 } }]), truth)
  near(t, extra.parts!.correctness, 2.5, 'extra key')
})

t.test('two expected calls, one right name, one wrong: name IoU 1/3', async (t) => {
  const truth = [
    { name: 'a', arguments: { x: 1 } },
    { name: 'b', arguments: { y: 2, z: 3 } },
  ]
  const r = score(reply([{ name: 'b', arguments: { y: 2 } }, { name: 'c', arguments: {} }]), truth)
  // Names [a, b] vs [b, c]: 1 / (2 + 2 − 1) = 1/3. a: no prediction. b: key IoU 1/2 + one value = 1.5.
  // S = 1/3 + 1.5 = 11/6, S_max = 1 + 2 + 3 = 6: 6 · (11/6) / 6 − 3 = −7/6.
  near(t, r.parts!.correctness, -7 / 6, 'correctness')
  t.equal(r.reason, 'name-mismatch')
  near(t, r.score, 1 - 7 / 6, 'score')
})

t.test('repeated names count with their frequency; matching is greedy and one-to-one', async (t) => {
  const truth = [
    { name: 'a', arguments: { x: 1 } },
    { name: 'a', arguments: { x: 2 } },
  ]
  // One of two: IoU 1/2; the first expected call takes the prediction (2 points), the second finds none.
  // S = 0.5 + 2 = 2.5, S_max = 1 + 2 + 2 = 5: 6 · 2.5 / 5 − 3 = 0.
  t.equal(score(reply([{ name: 'a', arguments: { x: 1 } }]), truth).parts!.correctness, 0)
  // In the other order, each expected call finds its own.
  t.equal(score(reply([{ name: 'a', arguments: { x: 2 } }, { name: 'a', arguments: { x: 1 } }]), truth).parts!.correctness, 3)
  // A same-name prediction worth 0 (no shared key, no value) is not a match.
  const zero = score(reply([{ name: 'a', arguments: { y: 1 } }]), [{ name: 'a', arguments: { x: 1 } }])
  near(t, zero.parts!.correctness, (6 * 1) / 3 - 3, 'S = 1 (names) of 3')
})

t.test("values compare as Python's == on json.loads values", async (t) => {
  const truth = [{ name: 'f', arguments: { n: 5, flag: true, off: false, list: [1, 2], obj: { b: 1, a: 2 }, neg: 0 } }]
  const text = `${think}<tool_call>\n[{"name": "f", "arguments": {"n": 5.0, "flag": 1, "off": 0.0, "list": [1.0, 2], "obj": {"a": 2, "b": 1.0}, "neg": -0.0}}]\n</tool_call>`
  t.same(score(text, truth).parts, { format: 1, correctness: 3 })
  // Order matters in lists; strings are not numbers; 1e20 == 10**20.
  t.ok(score(text.replace('[1.0, 2]', '[2, 1]'), truth).parts!.correctness < 3)
  t.ok(score(text.replace('"n": 5.0', '"n": "5"'), truth).parts!.correctness < 3)
  t.equal(pythonValueKey(1e20), pythonValueKey(BigInt(10) ** BigInt(20)))
  t.not(pythonValueKey(0.1), pythonValueKey(1))
  t.equal(pythonValueKey(NaN), 'nan')
  t.throws(() => pythonValueKey(() => 1))
})

t.test('no call, bad JSON, bad arguments, and a request that expects no call', async (t) => {
  const truth = [{ name: 'f', arguments: { x: 1 } }]
  t.same(
    [score('<think>x</think>', truth)].map((r) => [r.score, r.reason]),
    [[-3, 'no-call']],
  )
  t.same(
    [score(`${think}<tool_call>\n[{"name": "f", "arguments": {x: 1}}]\n</tool_call>`, truth)].map((r) => [r.score, r.reason, r.calls]),
    [[-2, 'bad-json', null]],
  )
  t.same(
    [score(reply([{ name: 'f', arguments: [1] }]), truth)].map((r) => [r.score, r.reason]),
    [[-2, 'bad-format']],
    'arguments that are not an object, on a call whose name matches',
  )
  t.same([score(reply([{ name: 'f' }]), truth)].map((r) => r.reason), ['bad-format'], 'no arguments key')
  // Nothing expected: format only, correctness 0 (the released scorer's choice).
  t.same([score('<think>no tool fits</think>', [])].map((r) => [r.score, r.reason]), [[1, 'ok']])
  t.same([score('<think>x</think>\n<response>Hello</response>', [])].map((r) => [r.score, r.reason]), [[1, 'ok']])
  t.same([score(reply(truth), [])].map((r) => [r.score, r.reason]), [[0, 'name-mismatch']])
  t.same([score('hello', [])].map((r) => [r.score, r.reason]), [[0, 'bad-layout']])
  t.throws(() => score(reply(truth), [{ name: 'f', arguments: 'x=1' }]), { message: /an object of arguments/ })
})

t.test("ToolRL's own layout: one object per line, `parameters`", async (t) => {
  const truth = [
    { name: 'a', arguments: { x: 1 } },
    { name: 'b', arguments: {} },
  ]
  const text = `${think}<tool_call>\n{"name": "a", "parameters": {"x": 1}}\n{"name": "b", "parameters": {}}\n</tool_call>`
  t.same(score(text, truth).parts, { format: 1, correctness: 3 })
  t.equal(score(text.replace('{"name": "b"', '{"name": b'), truth).reason, 'bad-json', 'one bad line spoils the block')
})

t.test('the format rule: exactly <think>…</think>\\n<tool_call>\\n…\\n</tool_call>', async (t) => {
  const ok = '<think>a</think>\n<tool_call>\nX\n</tool_call>'
  t.equal(toolrlFormat(ok, true), 1)
  for (const bad of [
    ' ' + ok.slice(0, -1),
    '<think>a</think><tool_call>\nX\n</tool_call>',
    '<think>a</think>\n<tool_call>X\n</tool_call>',
    '<think>a</think>\n<tool_call>\nX</tool_call>',
    ok + '\n<tool_call>\nY\n</tool_call>',
    ok + ' trailing',
    '<think>a</think>\n<tool_call>\n</tool_call>',
  ]) {
    t.equal(toolrlFormat(bad, true), 0, JSON.stringify(bad))
  }
  t.equal(toolrlFormat('<think>a</think>\n<response>b</response>', false), 1)
  t.equal(toolrlFormat('<think>a</think>\n<response>b</response><response>c</response>', false), 0)
  // The reply is the last assistant turn, up to its end marker, stripped.
  t.equal(toolrlReply('<|im_start|>assistant\nold<|im_end|>\n<|im_start|>assistant\n  new reply \n<|im_end|>\nmore'), 'new reply')
  const wrapped = `<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n${ok}<|im_end|>`
  t.equal(score(wrapped, [{ name: 'x', arguments: {} }]).parts!.format, 1)
})

t.test('multisetIou', async (t) => {
  t.equal(multisetIou([], []), 1)
  t.equal(multisetIou(['a'], []), 0)
  t.equal(multisetIou(['a', 'a', 'b'], ['a', 'b', 'b']), 2 / 4)
})

t.test('the worked example of docs/reward.md', async (t) => {
  const truth = [
    { name: 'find_restaurant', arguments: { name: 'Luigi' } },
    { name: 'book_table', arguments: { restaurant_id: 4821, people: 4, time: '19:30' } },
  ]
  const completion = '<think>Look it up, then book.</think>\n<tool_call>\n[{"name": "book_table", "arguments": {"restaurant_id": 4821, "people": 2}}]\n</tool_call>'
  const r = score(completion, truth)
  // Names: 1 / 2. find_restaurant: nothing. book_table: key IoU 2/3 + 1 value = 5/3. S = 1/2 + 5/3 = 13/6.
  // S_max = 1 + (1 + 1) + (1 + 3) = 7. correctness = 6 · (13/6) / 7 − 3 = 13/7 − 3 = −8/7.
  near(t, r.parts!.correctness, -8 / 7, 'correctness')
  near(t, r.score, 1 - 8 / 7, 'score')
  t.equal(r.reason, 'name-mismatch')
})

t.test('scoreBatch with toolrl: inline and on workers, the same scores as one by one', async (t) => {
  const truth = JSON.stringify([{ name: 'f', arguments: { x: 1, y: 'a' } }])
  const completions = [reply([{ name: 'f', arguments: { x: 1, y: 'a' } }]), reply([{ name: 'f', arguments: { x: 2, y: 'a' } }]), 'none', '<tool_call>[{"name": "g", "arguments": {}}]</tool_call>']
  const items = Array.from({ length: 600 }, (_, i) => ({ completion: completions[i % 4]!, groundTruth: i % 2 ? truth : JSON.parse(truth) }))
  for (const batch of [items.slice(0, 8), items]) {
    const results = await scoreBatch(batch, toolrl)
    const mismatches = results.filter((r, i) => {
      const one = score(batch[i]!.completion, batch[i]!.groundTruth)
      return r.score !== one.score || r.reason !== one.reason || JSON.stringify(r.parts) !== JSON.stringify(one.parts)
    })
    t.equal(mismatches.length, 0, `${batch.length} items`)
  }
  await t.rejects(scoreBatch([{ completion: 'x', groundTruth: [{ name: 'f', arguments: 1 }] }], toolrl), { message: /items\[0\]\.groundTruth\[0\]\.arguments/ })
})

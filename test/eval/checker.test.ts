/**
 * The BFCL checker on fixtures in BFCL's file format: every rule both ways, every category, read from files
 * written here and scored end to end (data reader → completions file → decoder → checker → scores).
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { checkAst, checkCall, checkRelevance, functionSpec } from '../../lib/eval/checker.js'
import { expectedCalls, readBfcl } from '../../lib/eval/data.js'
import { decodeText } from '../../lib/eval/decode.js'
import { evaluateBfcl, summarize } from '../../lib/eval/run.js'
import { JsonlSource } from '../../lib/eval/sources.js'
import { PyTuple, parseJsonValue } from '../../lib/eval/values.js'
import { parseLossless } from '../../lib/reward/json.js'
import { ALL_CASES, RULE_CASES, answerLine, completionOf, questionLine } from './fixtures.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-bfcl-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

/** Writes the cases as a BFCL data folder (simple under its v4 name) and their completions as JSONL. */
async function writeFixtures(root: string): Promise<{ data: string; completions: string }> {
  const data = join(root, 'data')
  await mkdir(join(data, 'possible_answer'), { recursive: true })
  const categories = [...new Set(ALL_CASES.map((c) => c.category))]
  for (const category of categories) {
    const cases = ALL_CASES.filter((c) => c.category === category)
    const file = category === 'simple' ? 'BFCL_v4_simple_python.json' : `BFCL_v3_${category}.json`
    await writeFile(join(data, file), cases.map((c) => questionLine(c)).join('\n') + '\n')
    if (cases[0]!.answer !== null) await writeFile(join(data, 'possible_answer', file), cases.map(answerLine).join('\n') + '\n')
  }
  const completions = join(root, 'completions.jsonl')
  await writeFile(completions, ALL_CASES.map((c) => JSON.stringify({ id: c.id, completion: completionOf(c) })).join('\n') + '\n')
  return { data, completions }
}

t.test('every rule both ways, read from BFCL files and scored end to end', async (t) => {
  const { data, completions } = await writeFixtures(dir)
  const read = await readBfcl(data)
  t.same(read.problems, [], 'the fixture files read cleanly')
  t.equal(read.entries.length, ALL_CASES.length)
  const report = await evaluateBfcl(read.entries, await JsonlSource.open(completions))
  t.equal(report.evaluated, ALL_CASES.length)
  const byId = new Map(report.entries.map((e) => [e.id, e]))
  for (const c of ALL_CASES) {
    const r = byId.get(c.id)!
    t.same({ valid: r.valid, reason: r.reason, bfcl: r.bfclErrorType }, { valid: c.valid, reason: c.reason, bfcl: c.bfcl }, `${c.id} (${c.rule}): ${c.valid ? 'accepted' : c.reason}`)
    if (!c.valid) t.ok(r.messages.length > 0 && r.messages.every((m) => m.length > 10), `${c.id} says why`)
  }
  // Each rule has a case it accepts and a case it rejects (the decoder's and relevance rules included).
  for (const rule of new Set(ALL_CASES.map((c) => c.rule).filter((r) => r !== 'decode' && r !== 'format' && r !== 'python'))) {
    const cases = ALL_CASES.filter((c) => c.rule === rule)
    t.ok(cases.some((c) => c.valid) && cases.some((c) => !c.valid), `rule ${rule} is tested both ways`)
  }
  // Every category of the evaluation has fixtures.
  t.same(Object.keys(report.categories).sort(), ['irrelevance', 'live_irrelevance', 'live_multiple', 'live_parallel', 'live_parallel_multiple', 'live_relevance', 'live_simple', 'multiple', 'parallel', 'parallel_multiple', 'simple'])
  for (const [category, s] of Object.entries(report.categories)) {
    const cases = ALL_CASES.filter((c) => c.category === category)
    t.same(s, { correct: cases.filter((c) => c.valid).length, total: cases.length, accuracy: cases.filter((c) => c.valid).length / cases.length }, `${category} score`)
  }
  t.equal(Object.values(report.reasons).reduce((a, b) => a + b, 0), ALL_CASES.length, 'one reason per entry')
  const noMatch = report.entries.find((e) => e.reason === 'no-match')!
  t.ok(noMatch.details && noMatch.details.candidates.length > 0, 'a parallel failure lists why each candidate was rejected')
})

t.test('the summary figures are BFCL\'s: unweighted non-live, count-weighted live, their mean', async (t) => {
  const s = summarize({
    simple: { correct: 9, total: 10, accuracy: 0.9 },
    multiple: { correct: 8, total: 10, accuracy: 0.8 },
    parallel: { correct: 7, total: 10, accuracy: 0.7 },
    parallel_multiple: { correct: 3, total: 5, accuracy: 0.6 },
    live_simple: { correct: 50, total: 100, accuracy: 0.5 },
    live_multiple: { correct: 10, total: 10, accuracy: 1 },
    live_parallel: { correct: 0, total: 10, accuracy: 0 },
    live_parallel_multiple: { correct: 0, total: 0, accuracy: 0 },
    irrelevance: { correct: 1, total: 2, accuracy: 0.5 },
    live_irrelevance: { correct: 1, total: 1, accuracy: 1 },
  })
  t.equal(s.nonLive.accuracy, (0.9 + 0.8 + 0.7 + 0.6) / 4)
  t.equal(s.live.accuracy, 60 / 120, 'live: correct over total')
  t.equal(s.overall.accuracy, (0.75 + 0.5) / 2)
  t.equal(s.irrelevance.accuracy, 0.75)
  t.same(s.relevance, { accuracy: null, total: 0, missing: ['live_relevance'] })
  const partial = summarize({ simple: { correct: 1, total: 2, accuracy: 0.5 } })
  t.same(partial.nonLive.missing, ['multiple', 'parallel', 'parallel_multiple'], 'a partial summary says what is missing')
  t.equal(partial.overall.accuracy, 0.5)
  t.equal(summarize({}).overall.accuracy, null)
})

const calls = (json: string) => {
  const r = decodeText(`<tool_call>${json}</tool_call>`, 'tool-call')
  if ('error' in r) throw new Error(r.message)
  return r.calls
}

t.test('direct checks: parallel matching is greedy, as released', async (t) => {
  const fns = [{ name: 'f', parameters: { type: 'dict', properties: { x: { type: 'integer' } }, required: ['x'] } }]
  const answer = expectedCalls(parseLossless('[{"f": {"x": [1, 2]}}, {"f": {"x": [1]}}]'))
  // The first answer call takes the first model call that fits (x=1), leaving x=2 for an answer that needs 1.
  t.equal(checkAst('parallel', fns, calls('[{"name": "f", "arguments": {"x": 1}}, {"name": "f", "arguments": {"x": 2}}]'), answer).reason, 'no-match')
  t.equal(checkAst('parallel', fns, calls('[{"name": "f", "arguments": {"x": 2}}, {"name": "f", "arguments": {"x": 1}}]'), answer).reason, 'ok')
})

t.test('direct checks: malformed entries are bad-entry, not a crash', async (t) => {
  const fns = [{ name: 'f', parameters: { type: 'dict', properties: { x: { type: 'integer' } }, required: ['x'] } }]
  const one = calls('[{"name": "g", "arguments": {"x": 1}}]')
  t.equal(checkAst('multiple', fns, one, expectedCalls(parseLossless('[{"g": {"x": [1]}}]'))).reason, 'bad-entry', 'the answer names a function the entry lacks')
  t.equal(checkAst('parallel', fns, one, expectedCalls(parseLossless('[{"g": {"x": [1]}}]'))).reason, 'bad-entry')
  t.equal(checkAst('simple', [], one, []).reason, 'bad-entry')
  t.equal(checkAst('multiple', fns, [], []).reason, 'bad-entry')
  const odd = [{ name: 'f', parameters: { type: 'dict', properties: { x: { type: 'complex' } }, required: [] } }]
  t.equal(checkAst('simple', odd, calls('[{"name": "f", "arguments": {"x": 1}}]'), expectedCalls(parseLossless('[{"f": {"x": [1]}}]'))).reason, 'bad-entry', 'an unknown type')
  const oddItems = [{ name: 'f', parameters: { type: 'dict', properties: { x: { type: 'array', items: { type: 'complex' } } }, required: [] } }]
  t.equal(checkAst('simple', oddItems, calls('[{"name": "f", "arguments": {"x": [1]}}]'), expectedCalls(parseLossless('[{"f": {"x": [[1]]}}]'))).reason, 'bad-entry')
  t.match(functionSpec({ name: 1 }), /without a string name/)
  t.match(functionSpec({ name: 'f', parameters: { properties: { x: {} } } }), /has no type/)
  t.match(functionSpec({ name: 'f', parameters: { properties: {}, required: 'x' } }), /not a list of names/)
  t.same(functionSpec({ name: 'f' }), { name: 'f', properties: new Map(), required: [] }, 'a function without parameters')
  t.same(checkRelevance('live_relevance', null).reason, 'no-call')
})

t.test('direct checks: JSON-Schema type aliases, tuples from Python calls, dict and list answers', async (t) => {
  const fns = [{ name: 'f', parameters: { type: 'object', properties: { x: { type: 'number' }, d: { type: 'object' }, tup: { type: 'tuple', items: { type: 'integer' } } }, required: [] } }]
  const spec = functionSpec(fns[0])
  if (typeof spec === 'string') throw new Error(spec)
  const answer = expectedCalls(parseLossless('[{"f": {"x": [1.5], "d": [{"k": ["v"]}], "tup": [[1, 2]]}}]'))[0]!
  const ok = checkCall(spec, { name: 'f', arguments: new Map([['x', 1.5], ['d', new Map([['k', 'V']])], ['tup', new PyTuple([1n, 2n])]]) }, answer)
  t.equal(ok.reason, 'ok', 'number is float, object is dict, a tuple value is read as a list')
  // Answers whose type is not the document's make the value a "variable", compared by == (as released).
  const odd = expectedCalls(parseLossless('[{"f": {"d": [5, {"k": ["v"]}]}}]'))[0]!
  t.equal(checkCall(spec, { name: 'f', arguments: new Map([['d', new Map([['k', 'v']])]]) }, odd).reason, 'wrong-value')
  const dictNotDict = expectedCalls(parseLossless('[{"f": {"d": ["", "x"]}}]'))[0]!
  t.equal(checkCall(spec, { name: 'f', arguments: new Map([['d', new Map([['k', 'v']])]]) }, dictNotDict).reason, 'wrong-value')
  const listFns = { name: 'g', properties: new Map([['l', { type: 'array', itemsType: 'dict' }]]), required: [] }
  const listAnswer = expectedCalls(parseLossless('[{"g": {"l": ["", 7]}}]'))[0]!
  t.equal(checkCall(listFns, { name: 'g', arguments: new Map([['l', []]]) }, listAnswer).reason, 'wrong-value')
  t.equal(checkCall(listFns, { name: 'g', arguments: new Map([['l', ['x']]]) }, listAnswer).reason, 'wrong-value')
  // Where the released checker raises (a string item in a list of dicts), this one rejects the value.
  const listDictAnswer = expectedCalls(parseLossless('[{"g": {"l": ["", [{"a": [1]}]]}}]'))[0]!
  t.equal(checkCall(listFns, { name: 'g', arguments: new Map([['l', ['x']]]) }, listDictAnswer).reason, 'wrong-dict-value')
  t.equal(checkCall(listFns, { name: 'g', arguments: new Map([['l', [new Map([['a', 1n]])]]]) }, listDictAnswer).reason, 'ok')
  const emptyAnswer = expectedCalls(parseLossless('[{"g": {"l": []}}]'))[0]!
  t.equal(checkCall(listFns, { name: 'g', arguments: new Map([['l', [new Map()]]]) }, emptyAnswer).reason, 'wrong-type', 'no accepted value: the item check fails, a type error')
  // A dict answer option that is not a dict is skipped; one that is matches.
  const mixed = expectedCalls(parseLossless('[{"f": {"d": [{"k": ["v"]}, 3]}}]'))[0]!
  t.equal(checkCall(spec, { name: 'f', arguments: new Map([['d', new Map([['k', 'v']])]]) }, mixed).reason, 'ok')
  t.equal(checkCall(spec, { name: 'f', arguments: new Map([['d', new Map([['k', 'w']])]]) }, mixed).reason, 'wrong-dict-key')
})

t.test('the fixtures are what the released checker decides (values as parsed by json.loads)', async (t) => {
  // Spot checks of Python semantics the cases rely on.
  t.equal(parseJsonValue('5'), 5n)
  t.equal(parseJsonValue('5.0'), 5)
  t.ok(RULE_CASES.length >= 45)
})

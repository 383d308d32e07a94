/**
 * Reading BFCL's data files: v3 and v4 names, question shapes, possible answers by id, and bad lines reported
 * with their file and line number, then skipped.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { categoryOfFile, numberedLines, readBfcl } from '../../lib/eval/data.js'
import { toolTaskBfcl, writeBfcl } from '../../lib/eval/bundled.js'
import { entryPrompt, openAITools, toJsonSchemaTools, toolN1Template } from '../../lib/eval/prompt.js'
import { generateToolTask } from '../../lib/task/tool-task.js'

const root = await mkdtemp(join(tmpdir(), 'node-grpo-bfcl-data-'))
t.teardown(() => rm(root, { recursive: true, force: true }))

const FN = { name: 'f', description: 'd', parameters: { type: 'dict', properties: { x: { type: 'float', description: 'x', default: 1.0 } }, required: ['x'] } }
const q = (id: string, extra: Record<string, unknown> = {}) => JSON.stringify({ id, question: [[{ role: 'user', content: `ask ${id}` }]], function: [FN], ...extra })
const a = (id: string, gt = '[{"f": {"x": [1.0]}}]') => `{"id": "${id}", "ground_truth": ${gt}}`

t.test('file names: v3, v4, plain, results', async (t) => {
  t.same(categoryOfFile('BFCL_v3_simple.json'), { category: 'simple', name: 'simple' })
  t.same(categoryOfFile('/x/BFCL_v4_simple_python.json'), { category: 'simple', name: 'simple_python' })
  t.same(categoryOfFile('BFCL_v3_live_parallel_multiple.json')?.category, 'live_parallel_multiple')
  t.same(categoryOfFile('parallel_multiple.jsonl')?.category, 'parallel_multiple')
  t.same(categoryOfFile('BFCL_v3_simple_result.json')?.category, 'simple')
  t.same(categoryOfFile('BFCL_v4_simple_java.json'), { category: null, name: 'simple_java' })
  t.equal(categoryOfFile('notes.txt'), null)
  t.same(numberedLines('a\n\n  \r\nb\r\n'), [{ line: 1, text: 'a' }, { line: 4, text: 'b' }], 'blank lines are dropped, numbers kept')
})

t.test('a released-style folder: entries, answers by id, skipped files, and bad lines with their line numbers', async (t) => {
  const dir = join(root, 'released')
  await mkdir(join(dir, 'possible_answer'), { recursive: true })
  const lines = [
    q('simple_0'),
    'not json at all',
    '',
    JSON.stringify({ question: [[{ role: 'user', content: 'no id' }]], function: [FN] }),
    q('simple_1', { question: 'a plain string question' }),
    q('simple_2', { question: [{ role: 'user', content: 'one list of messages' }] }),
    q('simple_3', { function: FN }),
    q('simple_4', { question: [[{ role: 'user' }]] }),
    q('simple_5', { function: [{ description: 'no name' }] }),
    q('simple_0'),
    q('simple_6'),
    q('simple_7'),
    '[1, 2]',
  ]
  await writeFile(join(dir, 'BFCL_v3_simple.json'), lines.join('\n') + '\n')
  const answers = [a('simple_0'), a('simple_1'), '{"id": 5}', a('simple_2'), a('simple_3'), a('simple_6', '[{"f": {"x": 1.0}}]'), a('simple_7', '[{"f": 1, "g": 2}]'), '{oops']
  await writeFile(join(dir, 'possible_answer', 'BFCL_v3_simple.json'), answers.join('\n') + '\n')
  await writeFile(join(dir, 'BFCL_v3_irrelevance.json'), q('irrelevance_0') + '\n')
  await writeFile(join(dir, 'BFCL_v3_multiple.json'), q('multiple_0') + '\n')
  await writeFile(join(dir, 'BFCL_v3_java.json'), q('java_0') + '\n')
  await writeFile(join(dir, 'BFCL_v3_multi_turn_base.json'), q('mt_0') + '\n')
  await writeFile(join(dir, 'BFCL_v3_exec_simple.json'), q('e_0') + '\n')
  await writeFile(join(dir, 'BFCL_v3_mystery.json'), q('m_0') + '\n')
  await writeFile(join(dir, 'simple.json'), q('dup_0') + '\n')
  await writeFile(join(dir, 'README.md'), '# data\n')

  const data = await readBfcl(dir)
  t.same(data.entries.map((e) => e.id), ['simple_0', 'simple_1', 'simple_2', 'simple_3', 'irrelevance_0'])
  const [s0, s1, s2, s3] = data.entries
  t.same(s0!.source, { file: join(dir, 'BFCL_v3_simple.json'), line: 1 })
  t.same(s1!.turns, [[{ role: 'user', content: 'a plain string question' }]], 'a string question is one user turn')
  t.same(s2!.turns, [[{ role: 'user', content: 'one list of messages' }]])
  t.equal(s3!.functions.length, 1, 'a single function object is a list of one')
  t.equal(data.entries[4]!.answer, null, 'irrelevance has no answer')
  t.equal(s0!.answer![0]!.params.get('x')![0], 1, '1.0 stays a float')
  const problems = data.problems.map((p) => `${p.file.slice(dir.length + 1)}:${p.line ?? '-'} ${p.message}`)
  t.match(problems, [
    /^BFCL_v3_simple.json:2 not a JSON object/,
    /^BFCL_v3_simple.json:4 Expected a string "id"/,
    /^BFCL_v3_simple.json:8 Expected a \{role, content\} message/,
    /^BFCL_v3_simple.json:9 Expected "function" to be a list/,
    /^BFCL_v3_simple.json:10 duplicate id "simple_0"/,
    /^BFCL_v3_simple.json:11 no possible answer with id "simple_6"/,
    /^BFCL_v3_simple.json:12 no possible answer with id "simple_7"/,
    /^BFCL_v3_simple.json:13 not a JSON object/,
    /^possible_answer\/BFCL_v3_simple.json:3 Expected a string "id"/,
    /^possible_answer\/BFCL_v3_simple.json:6 Expected a list of accepted values for f.x/,
    /^possible_answer\/BFCL_v3_simple.json:7 Expected ground_truth\[0\] to be an object with one function name/,
    /^possible_answer\/BFCL_v3_simple.json:8 not a JSON object/,
  ])
  t.equal(problems.length, 12)
  const skipped = Object.fromEntries(data.skipped.map((s) => [s.file.slice(dir.length + 1), s.reason]))
  t.match(skipped, {
    'BFCL_v3_java.json': /Java and JavaScript/,
    'BFCL_v3_multi_turn_base.json': /multi-turn/,
    'BFCL_v3_exec_simple.json': /not an AST category/,
    'BFCL_v3_mystery.json': /not a BFCL category/,
    'BFCL_v3_multiple.json': /no possible answer file/,
    'simple.json': /a second file for category simple/,
  })
})

t.test('categories, limit, a single file, and argument errors', async (t) => {
  const dir = join(root, 'small')
  await mkdir(join(dir, 'possible_answer'), { recursive: true })
  await writeFile(join(dir, 'BFCL_v3_simple.json'), [q('s0'), q('s1'), q('s2')].join('\n'))
  await writeFile(join(dir, 'possible_answer', 'BFCL_v3_simple.json'), [a('s0'), a('s1'), a('s2')].join('\n'))
  await writeFile(join(dir, 'BFCL_v3_live_irrelevance.json'), [q('li0'), q('li1')].join('\n'))
  t.same((await readBfcl(dir, { limit: 2 })).entries.map((e) => e.id), ['s0', 's1', 'li0', 'li1'])
  t.same((await readBfcl(dir, { categories: ['live_irrelevance'] })).entries.map((e) => e.id), ['li0', 'li1'])
  t.same((await readBfcl(join(dir, 'BFCL_v3_simple.json'))).entries.length, 3, 'one question file, answers from the folder next to it')
  await t.rejects(readBfcl(join(root, 'missing')), { code: 'ERR_GRPO_INVALID_ARG', message: /existing BFCL data folder/ })
  await t.rejects(readBfcl(dir, { categories: ['exec_simple'] }), { message: /a list of categories among simple, multiple, .* for categories/ })
  await t.rejects(readBfcl(dir, { limit: 0 }), { message: /an integer >= 1 for limit/ })
  await t.rejects(readBfcl(dir, { limt: 2 } as never), { message: /did you mean limit\?/ })
  await t.rejects(readBfcl(''), { code: 'ERR_GRPO_INVALID_ARG' })
  const empty = join(root, 'empty')
  await mkdir(empty)
  await t.rejects(readBfcl(empty), { message: /a folder holding BFCL question files/ })
})

t.test('prompts: JSON-Schema tools in written order, the Tool-N1 template, OpenAI names', async (t) => {
  const doc = { name: 'a.b', description: 'd', parameters: { type: 'dict', properties: { x: { type: 'float', description: 'x' }, l: { type: 'array', items: { type: 'tuple' } }, o: { type: 'dict', properties: { k: { type: 'any' } } }, z: { type: 'weird' } }, required: ['x'] } }
  t.same(toJsonSchemaTools([doc]), [
    { name: 'a.b', description: 'd', parameters: { type: 'object', properties: { x: { type: 'number', description: 'x' }, l: { type: 'array', items: { type: 'array' } }, o: { type: 'object', properties: { k: { type: 'string' } } }, z: { type: 'string' } }, required: ['x'] } },
  ])
  const { tools, names } = openAITools([doc])
  t.equal(tools[0]!.function.name, 'a_b')
  t.equal(names.get('a_b'), 'a.b')
  const prompt = toolN1Template({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: null, calls: [{ name: 'a.b', arguments: { x: 1 } }] }, { role: 'tool', content: '42' }], tools: toJsonSchemaTools([doc]) })
  t.match(prompt, /^<\|im_start\|>system\nYou are an expert in composing function calls/)
  t.match(prompt, /"type": "number"/)
  t.match(prompt, /Be brief\.<\|im_end\|>\n<\|im_start\|>user\nhi<\|im_end\|>/, "the entry's system prompt follows ours")
  t.match(prompt, /<tool_call>\n\[\{"name": "a\.b", "arguments": \{"x": 1\}\}\]\n<\/tool_call>/)
  t.match(prompt, /<tool_response>\n42\n<\/tool_response>/)
  t.ok(prompt.endsWith('<|im_start|>assistant\n'))
  t.throws(() => toolN1Template({ messages: [{ role: 'robot' as never, content: 'x' }], tools: [] }), { message: /"system", "user", "assistant" or "tool"/ })
  t.throws(() => toolN1Template(null as never), { code: 'ERR_GRPO_INVALID_ARG' })
})

t.test('the bundled task as BFCL data: categories, files that read back, and prompts identical to training', async (t) => {
  t.throws(() => toolTaskBfcl({ perCategory: 0 }), { message: /an integer >= 1 for perCategory/ })
  const entries = toolTaskBfcl({ seed: 3, perCategory: 12 })
  const count = (c: string) => entries.filter((e) => e.category === c).length
  t.same([count('simple'), count('multiple'), count('parallel_multiple'), count('irrelevance')], [12, 12, 12, 12])
  t.ok(entries.filter((e) => e.category === 'simple').every((e) => e.functions.length === 1))
  t.ok(entries.filter((e) => e.category === 'parallel_multiple').every((e) => e.answer!.length === 2 && e.answer![0]!.name !== e.answer![1]!.name))
  t.ok(entries.filter((e) => e.category === 'irrelevance').every((e) => e.functions.length === 2 && e.answer === null), 'irrelevance: the two distractors only')
  // The multiple entries are the task's held-out examples, rendered exactly as the policy saw them in training.
  const one = generateToolTask({ seed: 3, train: 0, heldOut: 72 }).heldOut.filter((e) => e.groundTruth.length === 1)
  entries.filter((e) => e.category === 'multiple').forEach((e, i) => t.equal(entryPrompt(e), one[i]!.prompt, `multiple_${i}: same prompt as the task's`))
  const dir = join(root, 'bundled')
  const files = await writeBfcl(dir, entries)
  t.equal(files.length, 7, 'four question files and three answer files')
  const back = await readBfcl(dir)
  t.same(back.problems, [])
  t.same(back.entries.map((e) => [e.id, e.answer?.map((c) => [c.name, [...c.params]])]), entries.map((e) => [e.id, e.answer?.map((c) => [c.name, [...c.params]])]), 'answers read back with their types (ints stay ints)')
})

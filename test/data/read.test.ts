import t from 'tap'
import { writeFileSync, createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { join } from 'node:path'
import { readRecordTexts, RecordSplitter, type RecordItem, type ReadOptions } from '../../lib/data/index.js'

async function collect(source: Parameters<typeof readRecordTexts>[0], options?: ReadOptions): Promise<RecordItem[]> {
  const out: RecordItem[] = []
  for await (const record of readRecordTexts(source, undefined, options)) out.push(record)
  return out
}

async function* pieces(text: string, size: number): AsyncGenerator<string> {
  for (let i = 0; i < text.length; i += size) yield text.slice(i, i + size)
}

const tricky = [
  { id: 1, query: 'a, b ] } [ {', tools: '[{"name": "f"}]' },
  { id: 2, query: 'quote " and backslash \\ and \\" and ]', nested: [[1, 2], { a: [3] }] },
  { id: 3, query: 'ünïcödé 東京 😀' },
]

t.test('a JSON array is split into records, whatever the chunk boundaries', async (t) => {
  const text = '\ufeff \n' + JSON.stringify(tricky, null, 2) + '\n'
  for (const size of [1, 2, 3, 7, 64, 1 << 20]) {
    const records = await collect(pieces(text, size))
    t.same(records.map((r) => r.index), [0, 1, 2], `chunk size ${size}`)
    t.same(records.map((r) => JSON.parse(r.text)), tricky, `chunk size ${size}`)
  }
})

t.test('JSONL: one record per line, blank lines skipped, CRLF accepted', async (t) => {
  const text = tricky.map((r) => JSON.stringify(r)).join('\r\n\r\n') + '\r\n\n'
  for (const size of [1, 5, 1 << 20]) {
    const records = await collect(pieces(text, size))
    t.same(records.map((r) => JSON.parse(r.text)), tricky, `chunk size ${size}`)
  }
  t.same(await collect(pieces('{"a": 1}', 3)), [{ index: 0, line: 1, text: '{"a": 1}' }], 'no final newline')
  // A malformed line is passed on as it is: the record's own parse reports it.
  t.same((await collect(pieces('{"a": 1}\nnot json\n', 4))).map((r) => r.text), ['{"a": 1}', 'not json'])
})

t.test('bytes with multi-byte characters split across chunks', async (t) => {
  const bytes = Buffer.from(JSON.stringify(tricky))
  async function* byteChunks() {
    for (let i = 0; i < bytes.length; i += 3) yield bytes.subarray(i, i + 3)
  }
  t.same((await collect(byteChunks())).map((r) => JSON.parse(r.text)), tricky)
})

t.test('empty inputs, malformed arrays', async (t) => {
  t.same(await collect(pieces('', 1)), [])
  t.same(await collect(pieces('  \n ', 1)), [])
  t.same(await collect(pieces('[]', 1)), [])
  t.same(await collect(pieces(' [ \n ] \n', 1)), [])
  t.same((await collect(pieces('[1, "a,b", null]', 2))).map((r) => r.text), ['1', '"a,b"', 'null'])
  t.same((await collect(pieces('[{"a": 1}, {"b": }]', 2))).map((r) => r.text), ['{"a": 1}', '{"b": }'])
  // An unclosed array: the records read so far, the unfinished one, then an error in place of the closing ].
  const unclosed = await collect(pieces('[{"a": 1},\n {"b": 2}', 4))
  t.same(unclosed.map((r) => r.text), ['{"a": 1}', '{"b": 2}', undefined])
  t.match(unclosed[2], { index: 2, line: 2, error: /closing \] of the array for the input but received the end of the input \(line 2\)/ })
  const splitter = new RecordSplitter('x.json')
  t.same(splitter.push('['), [])
  t.match(splitter.end(), [{ error: /for x\.json/ }])
})

t.test('one broken element never takes the file with it (issue 18 item 6)', async (t) => {
  // Before: a bracket that does not match made every later element part of the broken one, and the file failed
  // as a whole with "Expected the closing ]"; a stray ] ended the array and failed the rest.
  const broken = '[\n{"a": 1},\n{"b": [1, 2},\n{"c": 3},\n{"d": ]},\n{"e": 5}\n]'
  for (const size of [1, 3, 1 << 20]) {
    const records = await collect(pieces(broken, size))
    t.same(records.map((r) => r.text), ['{"a": 1}', '{"b": [1, 2}', '{"c": 3}', '{"d": ]}', '{"e": 5}'], `chunk size ${size}`)
    t.same(records.map((r) => r.line), [2, 3, 4, 5, 6], 'each with the line it starts on')
  }
  const early = await collect(pieces('[{"a": 1}, ]x, {"c": 3}]', 2))
  t.same(early.map((r) => r.text), ['{"a": 1}', 'x', '{"c": 3}'], 'text after a premature ] is read as more elements')
  t.same((await collect(pieces('[{"a": 1}] x', 4))).map((r) => r.text), ['{"a": 1}', 'x'], 'junk after the array is a record of its own')
})

t.test('line numbers, blank lines kept on request, a record size limit', async (t) => {
  const text = '{"a": 1}\n\n  \r\n{"b": 2}\n{"c": 3}'
  t.same((await collect(pieces(text, 2))).map((r) => [r.index, r.line, r.text]), [[0, 1, '{"a": 1}'], [1, 4, '{"b": 2}'], [2, 5, '{"c": 3}']])
  t.same(
    (await collect(pieces(text, 2), { keepBlankLines: true })).map((r) => [r.index, r.line, r.text]),
    [[0, 1, '{"a": 1}'], [1, 2, ''], [2, 3, ''], [3, 4, '{"b": 2}'], [4, 5, '{"c": 3}']],
  )
  // A record over the limit is not held: it becomes an error in its place, and the next records still come.
  const long = `{"a": 1}\n{"b": "${'x'.repeat(5000)}"}\n{"c": 3}\n`
  const limited = await collect(pieces(long, 100), { maxRecordChars: 1000 })
  t.same(limited.map((r) => r.text), ['{"a": 1}', undefined, '{"c": 3}'])
  t.match(limited[1], { line: 2, error: /at most 1000 characters for line 2 of the input but received \d+/ })
  const array = `[{"a": 1}, {"b": "${'x'.repeat(5000)}"}, {"c": 3}]`
  t.same((await collect(pieces(array, 64), { maxRecordChars: 1000 })).map((r) => r.text ?? 'error'), ['{"a": 1}', 'error', '{"c": 3}'])
})

t.test('60,000 records from a file, streamed: records come before the file is read whole', async (t) => {
  const dir = t.testdir()
  const record = (i: number) => ({ id: i, query: `query ${i}, with "quotes" and ] brackets`, tools: '[]', answers: '[]' })
  for (const [name, array] of [['xlam.json', true], ['xlam.jsonl', false]] as const) {
    const path = join(dir, name)
    const out = createWriteStream(path)
    out.write(array ? '[\n' : '')
    for (let i = 0; i < 60000; i++) {
      out.write((array && i > 0 ? ',\n' : '') + JSON.stringify(record(i)) + (array ? '' : '\n'))
    }
    out.end(array ? '\n]\n' : '')
    await once(out, 'finish')
    let count = 0
    let ok = true
    for await (const { index, text } of readRecordTexts(path)) {
      if (index !== count || JSON.parse(text).id !== count) ok = false
      count++
    }
    t.equal(count, 60000, name)
    t.ok(ok, `${name}: records in order`)
  }
  // Progressive: the first record is yielded while most chunks are still unread.
  let consumed = 0
  async function* counted() {
    for (let i = 0; i < 100; i++) {
      consumed++
      yield (i === 0 ? '[' : ',') + JSON.stringify(record(i))
    }
    yield ']'
  }
  for await (const first of readRecordTexts(counted())) {
    t.equal(first.index, 0)
    t.ok(consumed < 5, `first record after ${consumed} chunks`)
    break
  }
  writeFileSync(join(dir, 'empty.jsonl'), '')
  t.same(await collect(join(dir, 'empty.jsonl')), [])
  await t.rejects(collect('in\u0000.jsonl'), { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG', message: /readable file/ }, 'a path with a NUL byte')
  await t.rejects(collect(join(dir, 'missing.jsonl')), { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG', message: /readable file for .*missing\.jsonl.*ENOENT/, cause: { code: 'ENOENT' } })
})

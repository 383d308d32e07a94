/**
 * The bundled tool-calling task and its tokenizer: reproducible splits that share no request, reference
 * completions that the binary reward scores 1, values copied verbatim from the request, and a tokenizer whose
 * decode inverts encode.
 */
import t from 'tap'
import { reward, task } from '../../lib/index.js'

const small = task.generateToolTask({ seed: 3, train: 300, heldOut: 60 })

t.test('splits: sizes, reproducible, disjoint, same tools', async (t) => {
  t.equal(small.train.length, 300)
  t.equal(small.heldOut.length, 60)
  t.equal(small.tools.length, 11, 'eleven tools')
  const again = task.generateToolTask({ seed: 3, train: 300, heldOut: 60 })
  t.same(again.train.map((e) => e.query), small.train.map((e) => e.query), 'same seed, same examples')
  const other = task.generateToolTask({ seed: 4, train: 300, heldOut: 60 })
  t.not(other.train.map((e) => e.query).join('|'), small.train.map((e) => e.query).join('|'), 'another seed, other examples')
  const trainQueries = new Set(small.train.map((e) => e.query))
  t.ok(small.heldOut.every((e) => !trainQueries.has(e.query)), 'no held-out request is in the train split')
  const twoCalls = small.train.filter((e) => e.groundTruth.length === 2).length / small.train.length
  t.ok(twoCalls > 0.15 && twoCalls < 0.35, `about a quarter need two calls (${twoCalls})`)
  const names = new Set(small.train.flatMap((e) => e.groundTruth.map((c) => c.name)))
  t.equal(names.size, 11, 'every tool is used')
  t.same(task.generateToolTask({ train: 0, heldOut: 0 }).train, [], 'empty splits')
})

t.test('examples: the paper format, values copied from the request, references that score 1', async (t) => {
  for (const e of [...small.train, ...small.heldOut]) {
    t.ok(e.prompt.startsWith('<|im_start|>system\n'), 'a ChatML prompt')
    t.ok(e.prompt.endsWith('<|im_start|>assistant\n'), 'ending with the generation prompt')
    t.ok(e.prompt.includes(e.query), 'containing the request')
    t.equal(e.messages.length, 2)
    const needed = e.groundTruth.map((c) => c.name)
    t.ok(needed.every((n) => e.tools.some((tool) => tool.name === n)), 'the needed tools are offered')
    t.equal(e.tools.length, new Set(needed).size + 2, 'plus two distractors')
    for (const call of e.groundTruth) {
      for (const value of Object.values(call.arguments)) t.ok(e.query.includes(String(value)), `${value} is in "${e.query}"`)
    }
    const score = reward.scoreToolCall(e.reference, e.groundTruth)
    t.equal(score.score, 1, `the reference scores 1: ${e.reference}`)
    t.match(e.reference, /^<think>.+<\/think>\n<tool_call>\n\[.*\]\n<\/tool_call>$/s)
  }
})

t.test('generator options', async (t) => {
  const none = task.generateToolTask({ seed: 1, train: 50, heldOut: 0, twoCallShare: 0, distractors: 0 })
  t.ok(none.train.every((e) => e.groundTruth.length === 1 && e.tools.length === 1), 'one call, no distractors')
  const all = task.generateToolTask({ seed: 1, train: 20, heldOut: 0, twoCallShare: 1 })
  t.ok(all.train.every((e) => e.groundTruth.length === 2 && e.groundTruth[0]!.name !== e.groundTruth[1]!.name), 'two different tools')
  t.throws(() => task.generateToolTask({ train: -1 }), { code: 'ERR_GRPO_INVALID_ARG', message: /non-negative integer for train but received -1/ })
  t.throws(() => task.generateToolTask({ twoCallShare: 2 }), { message: /\[0, 1\] for twoCallShare/ })
  t.throws(() => task.generateToolTask(null as never), { message: /options object/ })
  t.equal(task.referenceCompletion([{ name: 'a', arguments: { x: 1 } }]), '<think>Use a.</think>\n<tool_call>\n[{"name": "a", "arguments": {"x": 1}}]\n</tool_call>')
  t.ok(task.toolTaskSpecials().includes('"city": '), 'one special per argument key')
})

t.test('tokenizer: fitted vocabulary, specials, round trip, copyable values', async (t) => {
  const tok = task.fitToolTaskTokenizer(small)
  t.ok(tok.vocabSize > 100 && tok.vocabSize < 2000, `a small vocabulary (${tok.vocabSize})`)
  t.same(tok.vocab.slice(0, 3), ['<pad>', '<unk>', '<eos>'])
  for (const e of small.train.slice(0, 50)) {
    t.equal(tok.decode(tok.encode(e.prompt)), e.prompt, 'prompt round trip')
    const ids = tok.encode(e.reference, { eos: true })
    t.equal(ids[ids.length - 1], tok.eosId)
    t.equal(tok.decode(ids), e.reference, 'completion round trip (eos decodes to nothing)')
  }
  const pieces = tok.pieces('<think>x</think>\n<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]')
  t.same(pieces, ['<think>', 'x', '</think>', '\n', '<tool_call>', '\n', '[', '{"name": "', 'get_weather', '", "arguments": {', '"city": ', '"', 'Paris', '"', '}}', ']'])
  t.same(tok.pieces('at 07:30. Email ana@example.com, 2025-03-14?'), ['at', ' ', '07:30', '.', ' ', 'Email', ' ', 'ana@example.com', ', ', '2025-03-14', '?'])
  // A value is the same token in the request and in the call.
  const q = tok.encode('weather in Paris')
  const c = tok.encode('"city": "Paris"')
  t.ok(q.includes(tok.id('Paris')!) && c.includes(tok.id('Paris')!))
  t.equal(tok.encode('zzzunknownzzz')[0], tok.unkId, 'unknown pieces are <unk>')
  t.equal(tok.decode([tok.padId, tok.id('Paris')!, tok.eosId]), 'Paris')
  t.throws(() => tok.decode([tok.vocabSize]), { code: 'ERR_GRPO_INVALID_ARG', message: /token id in \[0, \d+\) for tokens\[0\]/ })
  t.throws(() => tok.pieces(5 as never), { message: /a string for text/ })
  const restored = task.WordTokenizer.fromJSON(JSON.parse(JSON.stringify(tok.toJSON())))
  t.same(restored.vocab, tok.vocab, 'JSON round trip')
  t.same(Array.from(restored.encode(small.train[0]!.prompt)), Array.from(tok.encode(small.train[0]!.prompt)))
})

t.test('tokenizer: fit options and bad JSON', async (t) => {
  const tok = task.WordTokenizer.fit(['a b a', 'c'], { minCount: 2 })
  t.ok(tok.id('a') !== undefined && tok.id('c') === undefined, 'minCount drops rare pieces')
  t.ok(tok.id(' ') !== undefined, 'whitespace is a piece')
  t.same(task.WordTokenizer.fit([]).vocab, ['<pad>', '<unk>', '<eos>'])
  t.throws(() => task.WordTokenizer.fit(['a'], { specials: [''] }), { message: /non-empty strings for specials/ })
  t.throws(() => task.WordTokenizer.fit(['a'], { minCount: 0 }), { message: /for minCount/ })
  t.throws(() => task.WordTokenizer.fit([1 as never]), { message: /a string for texts/ })
  t.throws(() => task.WordTokenizer.fromJSON({ kind: 'x' } as never), { message: /word-tokenizer/ })
  t.throws(() => task.WordTokenizer.fromJSON({ kind: 'node-grpo-word-tokenizer', version: 1, specials: [], vocab: ['a'] }), { message: /vocabulary starting with/ })
  t.throws(() => task.WordTokenizer.fromJSON({ kind: 'node-grpo-word-tokenizer', version: 1, specials: 'x' as never, vocab: ['<pad>', '<unk>', '<eos>'] }), { message: /specials/ })
})

/**
 * Fuzz: the reward gives every completion the same result alone (scoreToolCall), scored inline and scored on
 * the worker pool (issue 18). Completions are generated around the format (tags, JSON fragments, nesting near
 * and past the depth limit, big and odd numbers, strings with escapes), so the parser, the canonical form and
 * the depth limit are all reached; the batch is made large enough for the pool.
 */
import t from 'tap'
import fc from 'fast-check'
import { stringify } from 'lossless-json'
import { closeScoringPool, scoreBatch, scoreToolCall, type BatchItem, type ScoreResult } from '../../lib/reward/index.js'
import { INLINE_LIMIT } from '../../lib/reward/batch.js'
import { FUZZ_CASES, SEED } from './harness.js'

t.teardown(() => closeScoringPool())

const TRUTHS = ['[{"name": "f", "arguments": {"a": 1}}]', '[{"name": "f", "arguments": {"a": 1.0}}, {"name": "g", "arguments": {}}]', '[]', '{"name": "f", "arguments": {"s": "x\\u00e9"}}']

const value: fc.Arbitrary<string> = fc.letrec<{ v: string }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom('1', '1.0', '-0', '0.0', '1e400', '12345678901234567890', 'true', 'null', '"a"', '"x\\u00e9"', '"\\ud800"', 'NaN', "'a'"),
    fc.integer().map(String),
    fc.double({ noNaN: true }).map((d) => JSON.stringify(d)),
    fc.string({ maxLength: 8 }).map((s) => JSON.stringify(s)),
    fc.array(tie('v'), { maxLength: 3 }).map((xs) => `[${xs.join(', ')}]`),
    fc.dictionary(fc.constantFrom('a', 's', 'name', 'arguments'), tie('v'), { maxKeys: 3 }).map((o) => `{${Object.entries(o).map(([k, v]) => `"${k}": ${v}`).join(', ')}}`),
  ),
})).v

const nested = fc.constantFrom(100, 509, 510, 511, 512, 600, 5000).map((depth) => `{"a": ${'['.repeat(depth)}1${']'.repeat(depth)}}`)

const call: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('f', 'g', 'h', 'f\\u0000'), fc.oneof(value, nested))
  .map(([name, args]) => `{"name": "${name}", "arguments": ${args}}`)

const completion: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom('', '<think>ok</think>', '</think><think>', '<|im_start|>assistant\n<think>x</think>'),
    fc.oneof(
      fc.array(call, { maxLength: 3 }).map((calls) => `[${calls.join(', ')}]`),
      call,
      value,
      fc.string({ maxLength: 30 }),
      nested,
    ),
    fc.constantFrom('<tool_call>', '<tool_call> ', '<tool_call>\n', '<tool_call><tool_call>'),
    fc.constantFrom('</tool_call>', '</tool_call> trailing', '', '</tool_call><tool_call>x</tool_call>'),
  )
  .map(([think, body, open, close]) => `${think}${open}${body}${close}`)

const summary = (r: ScoreResult) => `${r.score}|${r.reason}|${r.calls === null ? 'null' : stringify(r.calls)}`

t.test(`generated completions score the same alone, inline and on workers (seed ${SEED})`, async (t) => {
  const n = Math.max(INLINE_LIMIT + 64, Math.floor(FUZZ_CASES / 4))
  const samples = fc.sample(fc.tuple(completion, fc.constantFrom(...TRUTHS)), { numRuns: n, seed: SEED })
  const items: BatchItem[] = samples.map(([c, truth]) => ({ completion: c, groundTruth: truth }))
  const alone = items.map((item) => summary(scoreToolCall(item.completion, item.groundTruth)))
  const inline = (await scoreBatch(items, { workers: 0 })).map(summary)
  const pooled = (await scoreBatch(items, { workers: 2 })).map(summary)
  const differ = items.map((_, i) => i).filter((i) => inline[i] !== alone[i] || pooled[i] !== alone[i])
  t.same(
    differ.slice(0, 3).map((i) => ({ completion: items[i]!.completion.slice(0, 200), alone: alone[i], inline: inline[i], pooled: pooled[i] })),
    [],
    `${items.length} completions, ${differ.length} scored differently`,
  )
  const reasons = new Set(alone.map((s) => s.split('|')[1]))
  t.ok(reasons.size >= 5, `the generator reaches many outcomes: ${[...reasons].join(' ')}`)
})

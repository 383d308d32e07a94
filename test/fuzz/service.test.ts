/**
 * Fuzz: the reward service with generated bad bodies (issue 18). Each request is built to be wrong in one way
 * (not JSON, truncated, the wrong shape, a bad field, labels too deep or too large, a body over the limit, …);
 * each must get a 4xx with a JSON {"error": {code, message}}, never a 5xx or a dropped connection, and the
 * server must answer /health right after.
 */
import t from 'tap'
import fc from 'fast-check'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRewardServer } from '../../lib/commands/serve.js'
import { closeScoringPool } from '../../lib/reward/index.js'
import { FUZZ_CASES, SEED } from './harness.js'

t.teardown(() => closeScoringPool())

const LIMIT = 256 * 1024
const GT = '[{"name": "f", "arguments": {"a": 1}}]'
const GOOD = '<think>x</think><tool_call>[{"name": "f", "arguments": {"a": 1}}]</tool_call>'

/** JSON values that are wrong wherever a list of strings, a list of labels or a number is expected. */
const badJson = fc.oneof(
  fc.constantFrom<unknown>(null, true, 0, -1, 1.5, 'x', '', {}, [], [null], [1], [[]], [{}], { query: 1 }, ['[{"name": 5}]'], [GT, GT]),
  fc.jsonValue({ maxDepth: 3 }),
)

const deep = (depth: number) => '['.repeat(depth) + ']'.repeat(depth)

/** A ground truth the scorer accepts: a list of {name: string, arguments} objects, one such object, or its JSON text. */
function validTruth(v: unknown, text = true): boolean {
  if (typeof v === 'string' && text) {
    try {
      return validTruth(JSON.parse(v), true)
    } catch {
      return false
    }
  }
  const isCall = (c: unknown) => typeof c === 'object' && c !== null && !Array.isArray(c) && typeof (c as { name?: unknown }).name === 'string' && 'arguments' in c
  return Array.isArray(v) ? v.every(isCall) : isCall(v)
}

/** Whether replacing `key` of the valid body {query: [GOOD], labels: [GT]} by `v` leaves it valid. */
function stillValid(key: string, v: unknown): boolean {
  const oneString = Array.isArray(v) && v.length === 1 && typeof v[0] === 'string'
  if (key === 'query') return oneString
  if (key === 'prompts') return v === null || oneString
  return Array.isArray(v) && v.length === 1 && validTruth(v[0])
}

/** Whether an /advantages body is one the op accepts (the generator keeps only those it does not). */
function validAdvantages(b: Record<string, unknown>): boolean {
  const rewards = b.rewards
  if (!Array.isArray(rewards) || !rewards.every((r) => typeof r === 'number' || r === null)) return false
  if (rewards.some((r) => r === null) && b.non_finite !== 'exclude') return false
  const size = b.group_size ?? null
  const ids = b.group_ids ?? null
  if ((size === null) === (ids === null)) return false
  if (size !== null && !(Number.isSafeInteger(size) && (size as number) >= 1 && rewards.length % (size as number) === 0)) return false
  if (ids !== null && !(Array.isArray(ids) && ids.length === rewards.length && ids.every((i) => Number.isInteger(i) && Math.abs(i) < 2 ** 31))) return false
  if (b.baseline !== undefined && !['mean', 'leave-one-out'].includes(b.baseline as string)) return false
  if (b.scale !== undefined && !['group', 'batch', 'none'].includes(b.scale as string)) return false
  if (b.eps !== undefined && !(typeof b.eps === 'number' && b.eps >= 0)) return false
  if (b.non_finite !== undefined && !['error', 'exclude'].includes(b.non_finite as string)) return false
  return true
}

/** Raw bodies (strings), each wrong in its own way. */
const getRewardBody: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }).filter((s) => s.trim() !== '[]' && s.trim() !== '{}'),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)).filter((s) => !s.startsWith('{"query":[')),
  // a valid body, cut short
  fc.integer({ min: 1, max: 60 }).map((n) => JSON.stringify({ query: [GOOD], labels: [GT] }).slice(0, n)),
  // one field of a valid body replaced by a bad value (replacements that happen to be valid are left out)
  fc
    .tuple(fc.constantFrom('query', 'prompts', 'labels'), badJson)
    .filter(([key, v]) => !stillValid(key, v))
    .map(([key, v]) => JSON.stringify({ query: [GOOD], labels: [GT], [key]: v })),
  // an unknown key
  fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !['query', 'prompts', 'labels'].includes(k)).map((k) => JSON.stringify({ query: [GOOD], labels: [GT], [k]: 1 })),
  // labels too deep, as text and as structure; labels too large for a ground truth
  fc.constantFrom(513, 600, 5000, 100000).map((d) => `{"query": ["x"], "labels": [${JSON.stringify(deep(d))}]}`),
  fc.constantFrom(513, 600, 5000, 100000).map((d) => `{"query": ["x"], "labels": [${deep(d)}]}`),
  fc.constant(`{"query": ["x"], "labels": [${JSON.stringify('['.repeat(200_000))}]}`),
  // more labels than queries, malformed ground truths
  fc.constantFrom(`{"query": ["x"], "labels": [${GT}, ${GT}]}`, `{"query": ["x"], "labels": ["[{\\"name\\": \\"f\\"}]"]}`, `{"query": ["x"], "labels": [[{"name": 5, "arguments": {}}]]}`),
  // a body over the limit
  fc.constant(JSON.stringify({ query: ['x'.repeat(LIMIT)], labels: [GT] })),
)

const advantagesBody: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.tuple(fc.constantFrom('rewards', 'group_size', 'group_ids', 'baseline', 'scale', 'eps', 'non_finite'), badJson)
    .map(([key, v]) => ({ rewards: [1, 0, 1, 1], group_size: 2, [key]: v }) as Record<string, unknown>)
    .filter((b) => !validAdvantages(b))
    .map((b) => JSON.stringify(b)),
  fc.constant('{"rewards": [1, 2, 3], "group_size": 2}'),
  fc.constant('{"rewards": [1, 2], "group_size": 2, "group_ids": [0, 0]}'),
)

t.test(`generated bad bodies: a JSON 4xx each, and a live server after each (seed ${SEED})`, async (t) => {
  const server: Server = createRewardServer({ maxBodyBytes: LIMIT, timeBudgetMs: 10_000 })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const n = Math.max(60, Math.floor(FUZZ_CASES / 10))
  const cases = [
    ...fc.sample(getRewardBody, { numRuns: n, seed: SEED }).map((body) => ['/get_reward', body] as const),
    ...fc.sample(advantagesBody, { numRuns: Math.ceil(n / 3), seed: SEED ^ 1 }).map((body) => ['/advantages', body] as const),
  ]
  const broken: string[] = []
  const statuses = new Map<number, number>()
  for (const [path, body] of cases) {
    let status = 0
    let error: unknown = null
    try {
      const response = await fetch(url + path, { method: 'POST', body, signal: AbortSignal.timeout(60_000) })
      status = response.status
      const json = await response.json()
      error = json?.error
    } catch (e) {
      broken.push(`${path} ${body.slice(0, 80)}: ${String(e)}`)
      continue
    }
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
    const ok = status >= 400 && status < 500 && typeof (error as { code?: unknown })?.code === 'string' && typeof (error as { message?: unknown })?.message === 'string'
    if (!ok) broken.push(`${path} ${body.slice(0, 80)}: ${status} ${JSON.stringify(error)?.slice(0, 120)}`)
    const health = await fetch(`${url}/health`).then((r) => r.status, () => 0)
    if (health !== 200) broken.push(`after ${path} ${body.slice(0, 80)}: /health answered ${health}`)
  }
  t.same(broken.slice(0, 5), [], `${cases.length} bad requests: ${[...statuses].map(([s, c]) => `${c} × ${s}`).join(', ')}; ${broken.length} broke the promise`)
  const good = await fetch(`${url}/get_reward`, { method: 'POST', body: JSON.stringify({ query: [GOOD], labels: [GT] }) })
  t.same([good.status, (await good.json()).rewards], [200, [1]], 'a good request still scores right')
})

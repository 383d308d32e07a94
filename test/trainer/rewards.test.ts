/**
 * The reward side of a step: several rewards (run concurrently, sum and GDPO's normalize-then-sum against a
 * hand-computed case), the overlong penalty (DAPO's formula), maskTruncated, dynamic sampling (filterGroups,
 * including a filter that can never fill the batch), and remoteReward against node-grpo's own reward server and
 * a misbehaving one (retries, timeouts, bad answers).
 */
import { createServer, type Server } from 'node:http'
import t from 'tap'
import { LogLinearPolicy, Trainer, presets, remoteReward, type NamedReward, type TrainerOptions, type TrainerPrompt } from '../../lib/index.js'
import { createRewardServer } from '../../lib/commands/serve.js'
import { fillWithSpread, hasSpread, nextRoundSize } from '../../lib/trainer/group-filter.js'
import { normalizeThenSum, overlongPenalty, rewardSpecs, weightedSum } from '../../lib/trainer/rewards.js'

const V = 8
const EOS = 0
const prompts: TrainerPrompt[] = [1, 2, 3].map((p) => ({ tokens: [p] }))
/** 1 when the first token is the prompt's + 3 (the tiny task of trainer.test.ts). */
const right = (_text: string, prompt: TrainerPrompt, tokens: Int32Array) => (tokens[0] === (prompt.tokens as number[])[0]! + 3 ? 1 : 0)

function makeTrainer(options: Partial<TrainerOptions> = {}): { trainer: Trainer; policy: LogLinearPolicy } {
  const policy = new LogLinearPolicy({ vocabSize: V, hashSize: 256, promptWindow: 4, device: 'cpu' })
  const trainer = new Trainer({
    ...presets.toolN1,
    temperature: 1,
    beta: 0,
    policy,
    decode: (tokens) => Array.from(tokens).join(','),
    ...(options.rewards ? {} : { reward: right }),
    stop: [EOS],
    maxNewTokens: 3,
    optimizer: { lr: 0.05, eps: 1e-5 },
    seed: 3,
    ...options,
  })
  return { trainer, policy }
}

async function weights(policy: LogLinearPolicy): Promise<Float32Array> {
  return policy.parameters()[0]!.value.toFloat32Array()
}

const close = (t: Tap.Test, actual: number, expected: number, what: string, tol = 1e-9) => t.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} ≈ ${expected}`)

t.test('GDPO normalize-then-sum against a hand-computed case', async (t) => {
  // Group 0: r1 = [1, 0, 0] → mean 1/3, unbiased std √(1/3) → [2/√3, −1/√3, −1/√3];
  //          r2 = [0.5, 1, 0] → mean 0.5, std 0.5 → [0, 1, −1]; weights 1 and 2.
  // Group 1: both rewards flat → 0. Group 2: one completion → 0.
  const scored = {
    scores: [Float64Array.of(1, 0, 0, 1, 1, 7), Float64Array.of(0.5, 1, 0, 2, 2, 3)],
    weights: [1, 2],
  }
  const out = normalizeThenSum(scored, [0, 0, 0, 1, 1, 2], 0)
  const s3 = Math.sqrt(3)
  const expected = [2 / s3, -1 / s3 + 2, -1 / s3 - 2, 0, 0, 0]
  expected.forEach((e, i) => close(t, out[i]!, e, `completion ${i}`, 1e-12))
  // eps joins the std: (r − mean) / (std + eps).
  const withEps = normalizeThenSum({ scores: [Float64Array.of(1, 0)], weights: [1] }, [4, 4], 0.5)
  close(t, withEps[0]!, 0.5 / (Math.SQRT1_2 + 0.5), 'eps', 1e-12)
  t.same(Array.from(weightedSum(scored)), [2, 2, 0, 5, 5, 13], 'sum: Σ w·r')
})

t.test('several rewards in a step: weights, per-reward means, reasons, GDPO scaling', async (t) => {
  const rewards: NamedReward[] = [
    { name: 'right', fn: (text, p, tokens) => ({ score: right(text, p, tokens), reason: right(text, p, tokens) ? 'ok' : 'wrong' }) },
    { name: 'short', fn: async (_text, _p, tokens) => (tokens.length === 1 ? 1 : 0), weight: 0.5 },
  ]
  const { trainer, policy } = makeTrainer({ rewards })
  t.teardown(() => (trainer.dispose(), policy.dispose()))
  const m = await trainer.step(prompts)
  t.same(Object.keys(m.rewards), ['right', 'short'])
  close(t, m.rewardMean, m.rewards.right! + 0.5 * m.rewards.short!, 'the reward is Σ weight · mean')
  t.same(Object.keys(m.reasons).sort(), Object.keys(m.reasons).filter((k) => k.startsWith('right/')).sort(), 'reasons are prefixed by the reward')
  t.equal(trainer.settings.scale, 'group')
  const e = await trainer.evaluate(prompts)
  t.same(Object.keys(e.rewards), ['right', 'short'])

  // presets.toolN1 sets scale 'group'; left unset, GDPO's batch scale is the default.
  const gdpo = makeTrainer({ rewards, rewardAggregation: 'normalize-then-sum', scale: undefined })
  t.teardown(() => (gdpo.trainer.dispose(), gdpo.policy.dispose()))
  t.equal(gdpo.trainer.settings.scale, 'batch', "GDPO's batch normalization is the default scale")
  const g = await gdpo.trainer.step(prompts)
  t.ok(Number.isFinite(g.loss))
  const explicit = makeTrainer({ rewards, rewardAggregation: 'normalize-then-sum', scale: 'none' })
  t.equal(explicit.trainer.settings.scale, 'none', 'an explicit scale wins')
  explicit.trainer.dispose()
  explicit.policy.dispose()
})

t.test('rewards run concurrently; failures and bad values are reported', async (t) => {
  // Reward a waits until reward b has started: run one after the other, the step would never end.
  let bStarted!: () => void
  const started = new Promise<void>((resolve) => (bStarted = resolve))
  const rewards: NamedReward[] = [
    { name: 'a', fn: async () => (await started, 1) },
    { name: 'b', fn: () => (bStarted(), 0) },
  ]
  const { trainer, policy } = makeTrainer({ rewards })
  t.teardown(() => (trainer.dispose(), policy.dispose()))
  const m = await trainer.step(prompts)
  t.same(m.rewards, { a: 1, b: 0 })
  t.equal(m.zeroStdFraction, 1)

  const failing = makeTrainer({ rewards: [{ name: 'ok', fn: () => 1 }, { name: 'bad', fn: async () => Promise.reject(new Error('reward service down')) }] })
  await t.rejects(failing.trainer.step(prompts), { message: 'reward service down' })
  failing.trainer.dispose()
  failing.policy.dispose()
  const nan = makeTrainer({ rewards: [{ name: 'ok', fn: () => 1 }, { name: 'nan', fn: () => NaN }] })
  await t.rejects(nan.trainer.step(prompts), { code: 'ERR_GRPO_NONFINITE', message: /from the reward function nan but received NaN/ })
  nan.trainer.dispose()
  nan.policy.dispose()
})

t.test('rewards option checks', async (t) => {
  const fn = () => 1
  t.throws(() => rewardSpecs([]), { message: /non-empty array/ })
  t.throws(() => rewardSpecs([{ name: 'a', fn }, { name: 'a', fn }]), { message: /name not used before.* for rewards\[1\]\.name/ })
  t.throws(() => rewardSpecs([{ name: 'overlong', fn }]), { message: /overlong/ })
  t.throws(() => rewardSpecs([{ name: '', fn }]), { message: /non-empty string for rewards\[0\]\.name/ })
  t.throws(() => rewardSpecs([{ name: 'a', fn: 1 as never }]), { message: /reward function for rewards\[0\]\.fn/ })
  t.throws(() => rewardSpecs([{ name: 'a', fn, weight: Infinity }]), { message: /finite number for rewards\[0\]\.weight/ })
  t.throws(() => rewardSpecs([{ name: 'a', fn, wieght: 2 } as never]), { message: /only the keys name, fn and weight/ })
  t.throws(() => rewardSpecs([null as never]), { message: /\{name, fn, weight\?\} object/ })
  t.throws(() => makeTrainer({ rewards: [{ name: 'a', fn }], ...{ reward: fn } }), { message: /either reward or rewards/ })
  t.throws(() => makeTrainer({ rewardAggregation: 'mean' as never }), { message: /rewardAggregation/ })
})

t.test("DAPO's overlong penalty: the formula and in a step", async (t) => {
  // maxNewTokens 10, buffer 4: no penalty up to 6 tokens, then −(length − 6) / 4 · factor.
  const p = { buffer: 4, factor: 1 }
  t.same([0, 6, 7, 8, 10].map((n) => overlongPenalty(n, 10, p)), [0, 0, -0.25, -0.5, -1])
  t.equal(overlongPenalty(9, 10, { buffer: 4, factor: 2 }), -1.5)
  t.equal(overlongPenalty(10, 10, { buffer: 10, factor: 1 }), -1, 'a buffer as long as the limit')
  // No stop token: every completion runs to maxNewTokens (3), so each gets −factor.
  const { trainer, policy } = makeTrainer({ stop: [], overlongPenalty: { buffer: 2, factor: 0.5 } })
  t.teardown(() => (trainer.dispose(), policy.dispose()))
  const m = await trainer.step(prompts)
  t.equal(m.rewards.overlong, -0.5)
  close(t, m.rewardMean, m.rewards.reward! - 0.5, 'the penalty joins the reward')
  t.equal(m.truncatedFraction, 1)
  t.throws(() => makeTrainer({ overlongPenalty: { buffer: 4 } }), { message: /integer in \[1, 3\] \(maxNewTokens\) for overlongPenalty.buffer/ })
  t.throws(() => makeTrainer({ overlongPenalty: { buffer: 1, factor: -1 } }), { message: /factor/ })
  t.throws(() => makeTrainer({ overlongPenalty: { factor: 1 } as never }), { message: /overlongPenalty.buffer/ })
  t.throws(() => makeTrainer({ overlongPenalty: { buffer: 1, size: 2 } as never }), { message: /size/ })
})

t.test('maskTruncated: completions cut at maxNewTokens take no part in the loss', async (t) => {
  // No stop token: every completion is cut, so nothing is left to train on and no update is made.
  const { trainer, policy } = makeTrainer({ stop: [], maskTruncated: true })
  t.teardown(() => (trainer.dispose(), policy.dispose()))
  const before = await weights(policy)
  const m = await trainer.step(prompts)
  t.equal(m.tokens, 0)
  t.equal(m.truncatedFraction, 1)
  t.match(m.warnings, [/no completion token takes part in the loss/])
  t.same(await weights(policy), before, 'no update')
  t.equal(trainer.stepCount, 1, 'the step still counts')
  // Without it the same step trains on them.
  const plain = makeTrainer({ stop: [] })
  t.teardown(() => (plain.trainer.dispose(), plain.policy.dispose()))
  const p = await plain.trainer.step(prompts)
  t.equal(p.tokens, 15 * 3)
  // With a stop token, only the cut completions drop out: the counted tokens are fewer than all tokens.
  const some = makeTrainer({ maskTruncated: true, maxNewTokens: 2 })
  t.teardown(() => (some.trainer.dispose(), some.policy.dispose()))
  const s = await some.trainer.step(prompts)
  t.ok(s.truncatedFraction > 0 && s.truncatedFraction < 1, `some are cut (${s.truncatedFraction})`)
  t.ok(s.tokens <= s.completions * 2 * (1 - s.truncatedFraction), `only the stopped ones count (${s.tokens} tokens)`)
})

t.test('filterGroups: pure logic', async (t) => {
  t.equal(hasSpread([1, 1, 1]), false)
  t.equal(hasSpread([1, 1, 0]), true)
  t.equal(hasSpread([]), false)
  t.equal(nextRoundSize(8, 0, 8), 8, 'nothing kept yet: a whole batch')
  t.equal(nextRoundSize(8, 2, 8), 8, 'capped at a batch')
  t.equal(nextRoundSize(8, 6, 8), 3, 'the missing 2 at the kept share 6/8')
  // Round sizes and the report; surplus groups are counted, not kept.
  const sizes: number[] = []
  const r = await fillWithSpread(4, 5, async (count, round) => {
    sizes.push(count)
    return Array.from({ length: count }, (_, i) => ({ group: `${round}.${i}`, spread: round > 0 || i === 0 }))
  })
  t.same(sizes, [4, 4])
  t.same(r.kept, ['0.0', '1.0', '1.1', '1.2'])
  t.same(r.report, { rounds: 2, sampled: 8, kept: 4, dropped: 3, surplus: 1, full: true })
  t.equal(r.warning, null)
})

t.test('filterGroups in a step: more prompts until the batch is full; a filter that can never fill it stops', async (t) => {
  // Only prompt 1 can earn a reward; prompts 2 and 3 always get 0 (no spread).
  const only1 = (text: string, p: TrainerPrompt, tokens: Int32Array) => ((p.tokens as number[])[0] === 1 ? right(text, p, tokens) + (tokens.length === 1 ? 0.5 : 0) : 0)
  const { trainer, policy } = makeTrainer({ reward: only1, filterGroups: { maxRounds: 6 } })
  t.teardown(() => (trainer.dispose(), policy.dispose()))
  const asked: number[] = []
  const m = await trainer.step(prompts, {
    morePrompts: (count) => {
      asked.push(count)
      return Array.from({ length: count }, () => ({ tokens: [1] }))
    },
  })
  t.ok(m.filter!.full, 'the batch was filled from later rounds')
  t.equal(m.filter!.kept, 3)
  t.ok(m.filter!.dropped >= 2, `prompts 2 and 3 dropped (${m.filter!.dropped})`)
  t.equal(m.filter!.rounds, asked.length + 1)
  t.equal(m.completions, 15, '3 groups of 5 trained')
  t.same(m.warnings, [])

  // A reward with no spread anywhere: never fills; stops at maxRounds with a warning and no update.
  const flat = makeTrainer({ reward: () => 1, filterGroups: { maxRounds: 3 } })
  t.teardown(() => (flat.trainer.dispose(), flat.policy.dispose()))
  const before = await weights(flat.policy)
  const f = await flat.trainer.step(prompts)
  t.same(f.filter, { rounds: 3, sampled: 9, kept: 0, dropped: 9, surplus: 0, full: false })
  t.match(f.warnings, [/filterGroups: 0 of 3 groups have reward spread after 3 rounds \(maxRounds\).*No update was made/])
  t.equal(f.completions, 0)
  t.equal(f.zeroStdFraction, 1)
  t.same(await weights(flat.policy), before)
  // Through train(): later rounds draw the next prompts of the dataset.
  const r = await flat.trainer.train(prompts, { steps: 2, batchSize: 2 })
  t.equal(r.steps.length, 2)
  t.ok(r.steps.every((s) => s.filter!.rounds === 3))

  t.throws(() => makeTrainer({ filterGroups: { maxRounds: 0 } }), { message: /maxRounds/ })
  t.throws(() => makeTrainer({ filterGroups: {} as never }), { message: /filterGroups.maxRounds/ })
  t.throws(() => makeTrainer({ filterGroups: 3 as never }), { message: /\{maxRounds\} object or null for filterGroups/ })
  await t.rejects(flat.trainer.step(prompts, { morePrompts: () => [] }), { message: /non-empty array of prompts for morePrompts\(count\)/ })
  await t.rejects(flat.trainer.step(prompts, { morePrompts: 1 as never }), { message: /morePrompts/ })
})

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as { port: number }
  return `http://127.0.0.1:${address.port}`
}

t.test('remoteReward against node-grpo serve (toolrl variant): one batched request per step', async (t) => {
  const server = createRewardServer({ variant: 'toolrl' })
  const url = await listen(server)
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const truth = [{ name: 'get_weather', arguments: { city: 'Paris' } }]
  const reward = remoteReward({ url: `${url}/get_reward`, batchSize: 2 })
  const good = '<think>x</think>\n<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n</tool_call>'
  const half = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Rome"}}]</tool_call>'
  const results = await Promise.all([good, half, 'nothing'].map((c) => reward(c, { tokens: [], groundTruth: truth }, new Int32Array(), { turns: [], finishReason: 'stop' })))
  // toolrl: format 1 + correctness 3; format 0 + (6 · (1 + 1 + 0) / 3 − 3) = 1; no call: −3.
  t.same(results, [
    { score: 4, reason: 'ok' },
    { score: 1, reason: 'args-mismatch' },
    { score: -3, reason: 'no-call' },
  ])
})

t.test('remoteReward: retries, timeouts, bad answers, options', async (t) => {
  let requests = 0
  let mode = 'flaky'
  const bodies: unknown[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      requests++
      bodies.push(JSON.parse(body))
      const n = (JSON.parse(body) as { query: string[] }).query.length
      if (mode === 'flaky' && requests % 2 === 1) return res.writeHead(503).end('busy')
      if (mode === 'bad-request') return res.writeHead(400).end('no')
      if (mode === 'hang') return
      if (mode === 'not-json') return res.writeHead(200).end('<html>')
      if (mode === 'short') return res.writeHead(200).end(JSON.stringify({ rewards: [1] }))
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ scores: Array.from({ length: n }, (_, i) => i / 2) }))
    })
  })
  const url = await listen(server)
  t.teardown(() => (server.closeAllConnections(), new Promise((resolve) => server.close(resolve))))
  const context = { turns: [], finishReason: 'stop' as const }
  const call = (r: ReturnType<typeof remoteReward>, n = 2) => Promise.all(Array.from({ length: n }, (_, i) => r(`c${i}`, { tokens: [], text: 'P:', groundTruth: { name: 'x', arguments: {} } }, new Int32Array(), context)))

  const flaky = remoteReward({ url, retryDelay: 1 })
  t.same(await call(flaky), [{ score: 0 }, { score: 0.5 }], 'a 503 is retried; `scores` is read when `rewards` is absent')
  t.equal(requests, 2)
  t.same(bodies[1], { query: ['P:c0', 'P:c1'], prompts: ['P:', 'P:'], labels: [{ name: 'x', arguments: {} }, { name: 'x', arguments: {} }] })

  mode = 'bad-request'
  requests = 0
  await t.rejects(call(remoteReward({ url, retryDelay: 1 })), { code: 'ERR_GRPO_REMOTE', message: /answered 400/ })
  t.equal(requests, 1, 'a 400 is not retried')
  mode = 'hang'
  requests = 0
  // (The client's count of attempts: under load a timed-out request may not have reached the server yet.)
  await t.rejects(call(remoteReward({ url, timeout: 200, retries: 1, retryDelay: 1 })), { code: 'ERR_GRPO_REMOTE', message: /none after 2 attempts \(no answer within 200 ms\)/ })
  mode = 'not-json'
  await t.rejects(call(remoteReward({ url })), { message: /JSON answer/ })
  mode = 'short'
  await t.rejects(call(remoteReward({ url })), { message: /Expected 2 finite rewards/ })
  await t.rejects(call(remoteReward({ url: 'http://127.0.0.1:1/x', retries: 0 })), { code: 'ERR_GRPO_REMOTE' })

  t.throws(() => remoteReward({ url: 'ftp://x' }), { message: /http\(s\) URL/ })
  t.throws(() => remoteReward({ url: [] }), { message: /non-empty array of URLs/ })
  t.throws(() => remoteReward({ url, retries: -1 }), { message: /integer >= 0 for retries/ })
  t.throws(() => remoteReward({ url, headers: { a: 1 } as never }), { message: /header strings/ })
  t.throws(() => remoteReward({ url, batchSize: 1.5 }), { message: /batchSize/ })
  t.throws(() => remoteReward({ url, timeout: 0 }), { message: /timeout/ })
  t.throws(() => remoteReward({ url, retry: 1 } as never), { message: /one of the options of remoteReward/ })
  t.throws(() => remoteReward(null as never), { message: /options object with url/ })
})

/**
 * Trainer: GRPO steps that raise the reward of a tiny task, rollouts with external log-probs, supervised steps,
 * evaluation, an AbortSignal, checkpoints that resume to the identical next step, the optimizer, and argument
 * checks.
 *
 * The tiny task: prompts are one token p in {1, 2, 3}; a completion earns 1 when its first token is p + 3. A
 * zero-initialized policy guesses right one time in eight.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AdamW, LogLinearPolicy, RolloutBatch, Tensor, Trainer, presets, toolCallReward, type TrainerOptions, type TrainerPrompt } from '../../lib/index.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-trainer-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

const V = 8
const EOS = 0
const prompts: TrainerPrompt[] = [1, 2, 3].map((p) => ({ tokens: [p] }))
const reward = (_text: string, prompt: TrainerPrompt, tokens: Int32Array) => ({
  score: tokens[0] === (prompt.tokens as number[])[0]! + 3 ? 1 : 0,
  reason: tokens[0] === (prompt.tokens as number[])[0]! + 3 ? 'ok' : 'wrong',
})

function makePolicy(): LogLinearPolicy {
  return new LogLinearPolicy({ vocabSize: V, hashSize: 256, promptWindow: 4, device: 'cpu' })
}

function makeTrainer(policy: LogLinearPolicy, options: Partial<TrainerOptions> = {}): Trainer {
  return new Trainer({
    ...presets.toolN1,
    temperature: 1,
    policy,
    decode: (tokens) => Array.from(tokens).join(','),
    reward,
    stop: [EOS],
    maxNewTokens: 2,
    optimizer: { lr: 0.05, eps: 1e-5 },
    seed: 3,
    ...options,
  })
}

t.test('a few GRPO steps on a tiny task raise the reward', async (t) => {
  await using policy = makePolicy()
  await using trainer = makeTrainer(policy)
  const before = await trainer.evaluate(prompts, { greedy: false, n: 20, seed: 1 })
  t.ok(before.reward < 0.35, `starts near chance (${before.reward})`)
  const result = await trainer.train(prompts, { steps: 12, batchSize: 3 })
  t.equal(result.steps.length, 12)
  t.equal(result.aborted, false)
  const after = await trainer.evaluate(prompts, { greedy: false, n: 20, seed: 1 })
  t.ok(after.reward > before.reward + 0.4, `sampled reward ${before.reward} → ${after.reward}`)
  const greedy = await trainer.evaluate(prompts)
  t.equal(greedy.reward, 1, 'greedy decoding solves every prompt')
  t.equal(greedy.solved, 1)
  t.same(greedy.reasons, { ok: 3 })

  const m = result.steps[result.steps.length - 1]!
  t.equal(m.step, 12)
  t.equal(trainer.stepCount, 12)
  t.equal(m.completions, 15, '3 prompts × group 5')
  for (const key of ['rewardMean', 'rewardStd', 'zeroStdFraction', 'loss', 'pgLoss', 'kl', 'approxKl', 'clipFrac', 'entropy', 'ratioMax', 'completionLength', 'tokens', 'gradNorm', 'clipCoef', 'tokensPerSecond'] as const) {
    t.ok(Number.isFinite(m[key]), `${key} is a number (${m[key]})`)
  }
  t.ok(Object.values(m.time).every((s) => s >= 0), 'time split')
  t.ok(m.time.total >= m.time.sample + m.time.reward, 'total covers the parts')
  t.ok(result.steps.some((s) => s.kl > 0), 'KL to the reference (β = 1e-3) is tracked')
  t.ok(trainer.reference !== null, 'a reference was cloned at the first step')
  t.equal(m.clipFrac, 0, 'one on-policy pass: ratio 1, nothing clipped')
  t.ok(Math.abs(m.approxKl) < 1e-5, 'sampled log-probs equal the loss log-probs')
})

t.test('epochs, micro-batches and other aggregations run', async (t) => {
  for (const options of [
    { epochs: 2, miniBatches: 2 },
    { lossAgg: 'seq-mean-token-mean' as const, beta: 0 },
    { lossAgg: 'seq-mean-token-sum-norm' as const, normLength: 4, miniBatches: 20 },
  ]) {
    await using policy = makePolicy()
    await using trainer = makeTrainer(policy, options)
    const m = await trainer.step(prompts)
    t.ok(Number.isFinite(m.loss) && Number.isFinite(m.gradNorm), JSON.stringify(options))
    if (options.beta === 0) t.equal(trainer.reference, null, 'no reference without KL')
  }
})

t.test('stepFromRollouts: GRPO on rollouts sampled elsewhere, with their log-probs', async (t) => {
  await using policy = makePolicy()
  await using trainer = makeTrainer(policy)
  // The "inference server": a copy of the policy that returns tokens and their log-probs.
  await using server = await policy.clone()
  const sampled = await server.sample(prompts.map((p) => p.tokens), { n: 4, temperature: 1, maxNewTokens: 2, stop: [EOS], seed: 11 })
  const rollouts = sampled.map((c) => ({
    prompt: prompts[c.prompt]!.tokens,
    completion: c.tokens,
    logprobs: c.logprobs,
    reward: reward('', prompts[c.prompt]!, c.tokens).score,
    group: c.prompt,
  }))
  const m = await trainer.stepFromRollouts(rollouts)
  t.ok(Math.abs(m.approxKl) < 1e-5, 'the server log-probs match the trainer policy')
  t.equal(m.clipFrac, 0)
  t.equal(m.time.sample, 0, 'no sampling time')
  t.equal(m.completions, 12)

  // Stale log-probs (the server lagging behind): the ratio moves away from 1 and the clip engages.
  const stale = rollouts.map((r) => ({ ...r, logprobs: Array.from(r.logprobs, (x) => x - 0.5) }))
  const m2 = await trainer.stepFromRollouts(stale)
  t.ok(m2.clipFrac > 0, `clipped tokens (${m2.clipFrac})`)
  t.ok(m2.ratioMax > 1.2)

  // No log-probs: the first pass is its own old policy; a prebuilt batch stays the caller's.
  const m3 = await trainer.stepFromRollouts(rollouts.map(({ logprobs: _, ...r }) => r))
  t.equal(m3.clipFrac, 0)
  await using twoEpochs = makeTrainer(policy, { epochs: 2 })
  using batch = await RolloutBatch.fromRollouts(rollouts.map(({ logprobs: _, ...r }) => r), { device: 'cpu' })
  const m4 = await twoEpochs.stepFromRollouts(batch)
  t.ok(Number.isFinite(m4.clipFrac), 'the second pass compares with the first')
  t.equal(batch.disposed, false, 'the caller keeps its batch')
  await t.rejects(trainer.stepFromRollouts([{ ...rollouts[0]!, group: 99 }, ...rollouts.slice(1)]), { code: 'ERR_GRPO_SHAPE', message: /at least 2 completions per group/ })
})

t.test('rollout correction: oldLogp recomputed by the policy, tokens weighed by the sampler gap', async (t) => {
  await using policy = makePolicy()
  await using server = await policy.clone()
  const sampled = await server.sample(prompts.map((p) => p.tokens), { n: 4, temperature: 1, maxNewTokens: 2, stop: [EOS], seed: 5 })
  const rollouts = sampled.map((c) => ({
    prompt: prompts[c.prompt]!.tokens,
    completion: c.tokens,
    logprobs: c.logprobs,
    reward: reward('', prompts[c.prompt]!, c.tokens).score,
    group: c.prompt,
  }))
  // A sampler whose log-probs are off by 0.3 nats (a bf16 engine, other kernels): the trainer's own log-probs
  // become old, so the ratio stays 1 and the gap only weighs the tokens: exp(0.3) = 1.35 truncated at 1.2.
  const shifted = rollouts.map((r) => ({ ...r, logprobs: Array.from(r.logprobs, (x) => x - 0.3) }))
  await using trainer = makeTrainer(policy, { rolloutCorrection: { level: 'token', mode: 'truncate', max: 1.2 }, beta: 0 })
  const m = await trainer.stepFromRollouts(shifted)
  t.ok(Math.abs(m.approxKl) < 1e-5, `old recomputed by the policy: ratio 1 (approxKl ${m.approxKl})`)
  t.equal(m.clipFrac, 0, 'nothing clipped: the sampler gap does not reach the ratio')
  t.ok(Math.abs(m.rolloutGapMean - 0.3) < 1e-5, `gap 0.3 (${m.rolloutGapMean})`)
  t.ok(Math.abs(m.rolloutWeightMean - 1.2) < 1e-6, `every weight truncated at 1.2 (${m.rolloutWeightMean})`)
  t.equal(m.rolloutCorrectedFrac, 1)
  t.ok(Math.abs(m.rolloutKl - (Math.exp(0.3) - 1.3)) < 1e-5, `k3 of the gap (${m.rolloutKl})`)

  // The same step without correction treats the sampler's log-probs as old: the ratio is exp(0.3), clipped.
  await using plainPolicy = makePolicy()
  await using plain = makeTrainer(plainPolicy, { beta: 0 })
  const p = await plain.stepFromRollouts(shifted)
  t.ok(p.clipFrac > 0, `without correction the gap reaches the ratio (clipFrac ${p.clipFrac})`)
  t.equal(p.rolloutWeightMean, 0)

  // Masking every token (max below every weight): no policy gradient at all.
  await using maskedPolicy = makePolicy()
  await using masked = makeTrainer(maskedPolicy, { rolloutCorrection: { mode: 'mask', max: 1.1 }, beta: 0 })
  const mm = await masked.stepFromRollouts(shifted)
  t.equal(mm.rolloutWeightMean, 0, 'all tokens masked')
  t.equal(mm.gradNorm, 0, 'zero gradient')

  // The other variants go through the Trainer to the loss.
  for (const options of [
    { ratioLevel: 'sequence' as const, loss: 'cispo' as const },
    { ratioCap: 2, klBiasCorrection: true, topEntropyQuantile: 0.5 },
    { lossType: 'dr_grpo' as const, normLength: 4, lossAgg: undefined }, // the preset's lossAgg would contradict it
  ]) {
    await using variantPolicy = makePolicy()
    await using tr = makeTrainer(variantPolicy, options)
    const s = await tr.stepFromRollouts(rollouts)
    t.ok(Number.isFinite(s.loss) && Number.isFinite(s.gradNorm), JSON.stringify(options))
  }
  t.throws(() => makeTrainer(policy, { lossType: 'grpo', lossAgg: 'token-mean' }), { code: 'ERR_GRPO_INVALID_ARG', message: /lossAgg/ })
  t.throws(() => makeTrainer(policy, { rolloutCorrection: { level: 'tokens' } as never }), { code: 'ERR_GRPO_INVALID_ARG', message: /level/ })
})

t.test('supervised steps lower the nll; resetOptimizer', async (t) => {
  await using policy = makePolicy()
  await using trainer = makeTrainer(policy)
  const examples = [1, 2, 3].map((p) => ({ prompt: [p], completion: [p + 3, EOS] }))
  const first = await trainer.supervisedStep(examples, { lr: 0.1 })
  let last = first
  for (let i = 0; i < 10; i++) last = await trainer.supervisedStep(examples, { lr: 0.1 })
  t.ok(last.loss < first.loss / 2, `nll ${first.loss} → ${last.loss}`)
  t.equal(last.tokens, 6)
  t.equal(last.step, 11)
  t.equal(trainer.stepCount, 0, 'supervised steps are not GRPO steps')
  trainer.resetOptimizer()
  t.equal(trainer.optimizer.stepCount, 0)
  t.equal((await trainer.evaluate(prompts)).reward, 1, 'the warm start solved the task')
  await t.rejects(trainer.supervisedStep(examples, { temperature: 0 }), { message: /number in \[1e-6, 1e6\] for temperature/ })
})

t.test('train: an AbortSignal stops after the current step; periodic evaluation', async (t) => {
  await using policy = makePolicy()
  await using trainer = makeTrainer(policy)
  const controller = new AbortController()
  const evals: number[] = []
  const result = await trainer.train(prompts, {
    steps: 10,
    batchSize: 2,
    evalEvery: 1,
    evalPrompts: prompts,
    signal: controller.signal,
    onStep: (m) => {
      if (m.step === 2) controller.abort()
    },
    onEval: (_e, step) => {
      evals.push(step)
    },
  })
  t.equal(result.aborted, true)
  t.equal(result.steps.length, 2, 'stopped cleanly after the step in progress')
  t.same(evals, [1, 2])
  t.equal(result.evaluations.length, 2)
  const none = await trainer.train(prompts, { steps: 3, signal: controller.signal })
  t.equal(none.steps.length, 0, 'an aborted signal runs no step')
  t.equal(none.aborted, true)
  await t.rejects(trainer.train(prompts, { steps: 1, evalEvery: 1 }), { message: /evalPrompts/ })
  await t.rejects(trainer.train(prompts, { steps: 1, signal: {} as never }), { message: /an AbortSignal for signal/ })
  await t.rejects(trainer.train(prompts, {} as never), { message: /integer >= 0 for steps/ })
  await t.rejects(trainer.train([], { steps: 1 }), { message: /non-empty array of prompts for dataset/ })
  await t.rejects(trainer.train(prompts, null as never), { message: /options object with steps/ })
})

t.test('checkpoint: save → load → the identical next step', async (t) => {
  const path = join(dir, 'ckpt')
  await using a = makePolicy()
  await using ta = makeTrainer(a)
  await ta.train(prompts, { steps: 2, batchSize: 2 })
  await ta.saveCheckpoint(path)
  const nextA = await ta.train(prompts, { steps: 1, batchSize: 2 })

  await using b = makePolicy()
  await using tb = makeTrainer(b)
  await tb.loadCheckpoint(path)
  t.equal(tb.stepCount, 2)
  const nextB = await tb.train(prompts, { steps: 1, batchSize: 2 })
  const strip = (m: (typeof nextA.steps)[number]) => ({ ...m, time: null, tokensPerSecond: null })
  t.same(strip(nextB.steps[0]!), strip(nextA.steps[0]!), 'same rewards, loss, KL, gradient norm')
  const params = (p: LogLinearPolicy) => p.parameters().map((x) => Array.from(x.value.toArraySync()))
  t.same(params(b), params(a), 'bit-identical parameters after the step')
  t.same(Array.from((tb.reference as LogLinearPolicy).parameters()[0]!.value.toArraySync()), Array.from((ta.reference as LogLinearPolicy).parameters()[0]!.value.toArraySync()), 'same reference')

  await t.rejects(tb.loadCheckpoint(join(dir, 'nowhere')), { code: 'ERR_GRPO_INVALID_ARG', message: /checkpoint directory with trainer.json/ })
  await t.rejects(tb.saveCheckpoint(''), { message: /directory path/ })
  await t.rejects(tb.loadCheckpoint(''), { message: /directory path/ })
})

t.test('the Tool-N1 reward and preset', async (t) => {
  t.same(
    { ...presets.toolN1 },
    { groupSize: 5, clipLow: 0.2, clipHigh: 0.2, beta: 1e-3, kl: 'k3', lossAgg: 'token-mean', temperature: 0.7, topP: 1, entropyCoef: 0, epochs: 1, baseline: 'mean', scale: 'group' },
  )
  t.ok(Object.isFrozen(presets.toolN1))
  const score = toolCallReward()
  const truth = [{ name: 'f', arguments: { a: 1 } }]
  t.same(await score('<think>x</think><tool_call>[{"name": "f", "arguments": {"a": 1}}]</tool_call>', { tokens: [], groundTruth: truth }, new Int32Array(0)), { score: 1, reason: 'ok' })
  t.same(await score('no call', { tokens: [], groundTruth: truth }, new Int32Array(0)), { score: 0, reason: 'no-call' })
  t.throws(() => score('x', { tokens: [] }, new Int32Array(0)), { message: /groundTruth/ })
  // The default reward of a Trainer is this one.
  await using policy = makePolicy()
  await using trainer = new Trainer({ policy, decode: () => '<think>x</think><tool_call>[{"name": "f", "arguments": {"a": 1}}]</tool_call>', maxNewTokens: 1 })
  const e = await trainer.evaluate([{ tokens: [1], groundTruth: truth }])
  t.equal(e.reward, 1)
})

t.test('reward functions: plain numbers, promises, bad values', async (t) => {
  await using policy = makePolicy()
  await using numeric = makeTrainer(policy, { reward: async () => 0.5 })
  const m = await numeric.step(prompts)
  t.equal(m.rewardMean, 0.5)
  t.same(m.reasons, {})
  t.equal(m.zeroStdFraction, 1, 'equal rewards: every group without spread')
  await using bad = makeTrainer(policy, { reward: () => NaN })
  await t.rejects(bad.step(prompts), { code: 'ERR_GRPO_NONFINITE', message: /from the reward function but received NaN/ })
  await using badDecode = makeTrainer(policy, { decode: () => 5 as never })
  await t.rejects(badDecode.step(prompts), { message: /a string from decode/ })
})

t.test('rewards: the built-in one scored in a batch, user rewards awaited together', async (t) => {
  await using policy = makePolicy()
  const truth = [{ name: 'f', arguments: { a: 1 } }]
  const texts = ['<think>x</think><tool_call>[{"name": "f", "arguments": {"a": 1}}]</tool_call>', 'no call', '<tool_call>[{"name": "g", "arguments": {}}]</tool_call>']
  const decode = (tokens: Int32Array) => texts[tokens[0]! % 3]!
  const many = Array.from({ length: 60 }, (_, i) => ({ tokens: [1 + (i % 3)], groundTruth: truth }))
  // The built-in reward goes through reward.scoreBatch (300 completions: worker threads); the same function
  // hidden behind a plain wrapper is called once per completion. The scores and reasons agree.
  const builtIn = toolCallReward()
  await using batched = makeTrainer(policy, { reward: builtIn, decode, groupSize: 5 })
  await using single = makeTrainer(policy, { reward: (c, p, k) => builtIn(c, p, k), decode, groupSize: 5 })
  const a = await batched.evaluate(many, { greedy: false, n: 5, seed: 4 })
  const b = await single.evaluate(many, { greedy: false, n: 5, seed: 4 })
  t.equal(a.count, 300)
  t.same(a.reasons, b.reasons, `same reasons (${JSON.stringify(a.reasons)})`)
  t.equal(a.reward, b.reward)
  await t.rejects(batched.evaluate([{ tokens: [1] }]), { message: /a groundTruth on every prompt/ }, 'the batch path asks for groundTruth too')

  // A user reward is called for every completion before any is awaited: this one resolves only once all 15
  // calls of the step are pending, which one-at-a-time awaiting would never reach.
  let pending = 0
  let release!: () => void
  const allCalled = new Promise<void>((resolve) => (release = resolve))
  await using together = makeTrainer(policy, {
    reward: async () => {
      if (++pending === 15) release()
      await allCalled
      return 1
    },
  })
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the rewards were awaited one at a time')), 20_000)))
  const m = (await Promise.race([together.step(prompts), timeout]).finally(() => clearTimeout(timer))) as { rewardMean: number }
  t.equal(m.rewardMean, 1)
  t.equal(pending, 15)

  // Of several failures, the first in completion order is reported, whichever settles first.
  let call = 0
  await using failing = makeTrainer(policy, {
    reward: async () => {
      const k = call++
      if (k === 1) return new Promise((_, reject) => setTimeout(() => reject(new Error('completion 1')), 50))
      if (k === 3) throw new Error('completion 3')
      return 0
    },
  })
  await t.rejects(failing.step(prompts), { message: 'completion 1' })
})

t.test('AdamW: clipping, non-finite gradients, state', async (t) => {
  await using policy = makePolicy()
  const opt = new AdamW(() => policy.parameters(), { lr: 0.1, maxGradNorm: 0.5 })
  t.equal(opt.maxGradNorm, 0.5)
  const [w, b] = policy.parameters()
  // A gradient of norm 2 on the bias: clipped to 0.5.
  using g = Tensor.from([2, 0, 0, 0, 0, 0, 0, 0], [1, 8])
  using ids = Tensor.from(new Int32Array([-1]), [1, 1])
  const { embeddingBagBackwardSync } = await import('../../lib/model-ops.js')
  embeddingBagBackwardSync(g, ids, w!.grad!, { gradBias: b!.grad! })
  const r = await opt.step()
  t.ok(Math.abs(r.gradNorm - 2) < 1e-6)
  t.ok(Math.abs(r.clipCoef - 0.25) < 1e-6)
  t.ok(Math.abs((b!.value.toArraySync() as Float32Array)[0]! + 0.1) < 1e-4, 'one Adam step moves by lr')
  t.ok((b!.grad!.toArraySync() as Float32Array).every((x) => x === 0), 'gradients zeroed')
  t.same(Object.keys(opt.stateTensors()).sort(), ['m.bias', 'm.weight', 'v.bias', 'v.weight'])

  using nan = Tensor.from([NaN, 0, 0, 0, 0, 0, 0, 0], [1, 8])
  embeddingBagBackwardSync(nan, ids, w!.grad!, { gradBias: b!.grad! })
  await t.rejects(opt.step(), { code: 'ERR_GRPO_NONFINITE', message: /finite gradient norm/ })
  t.ok((b!.grad!.toArraySync() as Float32Array).every((x) => x === 0), 'a skipped step clears the bad gradient')
  t.equal(opt.stepCount, 1, 'and does not count')

  const noClip = new AdamW(() => policy.parameters(), { maxGradNorm: null })
  t.equal(noClip.maxGradNorm, null)
  t.equal((await noClip.step()).clipCoef, 1)
  noClip.dispose()
  noClip.dispose()
  await t.rejects(noClip.step(), { code: 'ERR_GRPO_DISPOSED' })

  t.throws(() => opt.loadState({}, 3), { message: /moments m.weight and v.weight/ })
  t.throws(() => opt.loadState({ 'm.weight': { dtype: 'f32', shape: [1], data: new Float32Array(1) }, 'v.weight': { dtype: 'f32', shape: [1], data: new Float32Array(1) } }, 3), { message: /f32 tensor of shape \[256, 8\] for m.weight/ })
  t.throws(() => opt.loadState({}, -1), { message: /non-negative integer for stepCount/ })
  await using frozen = await policy.clone()
  const none = new AdamW(() => frozen.parameters())
  await t.rejects(none.step(), { message: /at least one parameter with a gradient/ })
  none.dispose()
  t.throws(() => new AdamW('x' as never), { message: /function returning the parameters/ })
  t.throws(() => new AdamW(() => [], null as never), { message: /options object/ })
  for (const [key, value] of [['lr', -1], ['beta1', 1], ['beta2', 2], ['eps', 0], ['weightDecay', -1], ['maxGradNorm', 0]] as const) {
    t.throws(() => new AdamW(() => [], { [key]: value }), { code: 'ERR_GRPO_INVALID_ARG', message: new RegExp(`for ${key}`) })
  }
  await t.rejects(opt.step({ lr: -1 }), { message: /for lr/ })
  opt.dispose()
})

t.test('argument checks and dispose', async (t) => {
  await using policy = makePolicy()
  const base = { policy, decode: (x: Int32Array) => x.join() }
  const bad = (o: object, pattern: RegExp) => t.throws(() => new Trainer({ ...base, ...o } as never), { code: 'ERR_GRPO_INVALID_ARG', message: pattern })
  t.throws(() => new Trainer(null as never), { message: /options object/ })
  bad({ policy: {} }, /a Policy for policy/)
  bad({ decode: undefined }, /function from token ids to text for decode/)
  bad({ reward: 5 }, /reward function/)
  bad({ reference: {} }, /a Policy or null for reference/)
  bad({ groupSize: 1 }, /integer >= 2 for groupSize/)
  bad({ temperature: 0 }, /for temperature/)
  bad({ topP: 1.5 }, /for topP/)
  bad({ maxNewTokens: 0 }, /for maxNewTokens/)
  bad({ stop: [V] }, /token ids in \[0, 8\) for stop/)
  bad({ clipLow: 1 }, /for clipLow/)
  bad({ clipHigh: -1 }, /for clipHigh/)
  bad({ dualClip: 1 }, /for dualClip/)
  bad({ logRatioClamp: 0 }, /for logRatioClamp/)
  bad({ beta: -1 }, /for beta/)
  bad({ kl: 'k4' }, /one of 'k1', 'abs', 'k2', 'k3', 'k3\+' for kl/)
  bad({ entropyCoef: NaN }, /for entropyCoef/)
  bad({ lossAgg: 'sum' }, /for lossAgg/)
  bad({ normLength: 0 }, /for normLength/)
  bad({ epochs: 0 }, /for epochs/)
  bad({ miniBatches: 0 }, /for miniBatches/)
  bad({ baseline: 'median' }, /for baseline/)
  bad({ scale: 'std' }, /for scale/)
  bad({ advantageEps: -1 }, /for advantageEps/)
  bad({ seed: -1 }, /for seed/)
  bad({ beta: 0.1, reference: null }, /a reference policy \(beta > 0\)/)
  const ok = new Trainer({ ...base, dualClip: null, logRatioClamp: null, reference: null })
  t.equal(ok.settings.dualClip, null)
  t.equal(ok.settings.logRatioClamp, null)
  await t.rejects(ok.step([]), { message: /non-empty array of prompts/ })
  await t.rejects(ok.step([{}] as never), { message: /\{tokens, …\} prompt for prompts\[0\]/ })
  await t.rejects(ok.evaluate([]), { message: /non-empty array of prompts/ })
  await t.rejects(ok.evaluate(prompts, null as never), { message: /options object/ })
  await t.rejects(ok.evaluate(prompts, { greedy: 1 as never }), { message: /boolean for greedy/ })
  await using other = makePolicy()
  using foreign = await RolloutBatch.fromRollouts([
    { prompt: [1], completion: [2], reward: 0, group: 0 },
    { prompt: [1], completion: [3], reward: 1, group: 0 },
  ], { device: 'cpu' })
  t.ok(foreign)
  void other
  ok.dispose()
  ok.dispose()
  t.equal(ok.disposed, true)
  await t.rejects(ok.step(prompts), { code: 'ERR_GRPO_DISPOSED' })
  t.throws(() => ok.resetOptimizer(), { code: 'ERR_GRPO_DISPOSED' })
})

/**
 * The data-parallel pieces of the Trainer (lib/distributed-trainer.ts) in this process, as a world of one: the
 * option, the shares, ZeRO-1's sharded AdamW and its checkpoints, the agreement on rank 0's writes, a
 * coordinated abort. A world of one runs every data-parallel code path (the collectives copy or do nothing), and
 * must train exactly as the plain Trainer does. The multi-rank runs are in training.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { DataParallel, DataParallelAdamW, shareOf } from '../../lib/distributed-trainer.js'
import * as distributed from '../../lib/distributed.js'
import { readSafetensors } from '../../lib/safetensors.js'
import { Tensor } from '../../lib/tensor.js'
import { LogLinearPolicy } from '../../lib/log-linear-policy.js'
import { Trainer, type TrainerOptions, type TrainerPrompt } from '../../lib/trainer.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-dp1-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

const prompts: TrainerPrompt[] = Array.from({ length: 6 }, (_, i) => ({ tokens: [1 + i, 2 + (i % 4)] }))
const countUp = (_text: string, prompt: TrainerPrompt, tokens: Int32Array) => {
  let last = (prompt.tokens as number[]).at(-1)!
  let good = 0
  for (const tok of tokens) if (tok === last + 1 || tok === 0) (good++, (last = tok))
  return good / tokens.length
}

function make(distributed: TrainerOptions['distributed']): Trainer {
  return new Trainer({
    policy: new LogLinearPolicy({ vocabSize: 10, hashSize: 101, device: 'cpu' }),
    decode: (tokens) => Array.from(tokens).join(' '),
    reward: countUp,
    stop: [0],
    maxNewTokens: 5,
    groupSize: 3,
    beta: 0.02,
    scale: 'batch',
    optimizer: { lr: 0.05, eps: 1e-3 },
    seed: 7,
    distributed,
  })
}

async function params(trainer: Trainer): Promise<number[]> {
  const out: number[] = []
  for (const p of trainer.policy.parameters()) out.push(...(await p.value.toFloat32Array()))
  return out
}

const maxDiff = (a: readonly number[], b: readonly number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), a.length === b.length ? 0 : Infinity)

t.test('the distributed option', async (t) => {
  t.equal(DataParallel.fromOption(false), null, 'false: none')
  t.equal(DataParallel.fromOption(undefined), null, 'default: none for a process started alone')
  t.throws(() => DataParallel.fromOption('yes' as never), { code: 'ERR_GRPO_INVALID_ARG', message: /a boolean or data-parallel options/ })
  t.throws(() => DataParallel.fromOption({ zero: 2 as 1 }), { code: 'ERR_GRPO_INVALID_ARG', message: /0 or 1/ })
  t.throws(() => DataParallel.fromOption({ bucketMB: 0 }), { code: 'ERR_GRPO_INVALID_ARG', message: /MiB/ })
  t.throws(() => DataParallel.fromOption({ zeroo: 1 } as never), { code: 'ERR_GRPO_INVALID_ARG', message: /did you mean zero/ })
  const dp = DataParallel.fromOption({ timeout: 90 })!
  t.match(dp, { rank: 0, size: 1, zero: 0, bucketBytes: 25 * 1024 * 1024 })
  t.ok(dp.writer, 'rank 0 writes')
  t.same(dp.share(['a', 'b'], 'prompts'), { items: ['a', 'b'], start: 0 })
  t.throws(() => dp.share([], 'prompts'), { code: 'ERR_GRPO_SHAPE', message: /at least 1 prompts \(one per rank/ })
  t.same(await dp.sum([1, 2]), [1, 2])
  t.same(await dp.gather({ a: 1 }), [{ a: 1 }])
  await t.rejects(dp.onWriter(async () => { throw new Error('disk full') }), /disk full/, "rank 0's failure is thrown")
  await dp.onWriter(async () => {})
  await t.rejects(dp.advantages([NaN], [0], {}, { baseline: 'mean', scale: 'group', eps: 1e-6 }), { code: 'ERR_GRPO_NONFINITE', message: /rollouts\[0\].reward/ })
  await t.rejects(dp.advantages([1], [0.5], {}, { baseline: 'mean', scale: 'group', eps: 1e-6 }), { code: 'ERR_GRPO_INVALID_ARG', message: /rollouts\[0\].group/ })
  t.equal(dp.backwardOptions(), undefined, 'no optimizer yet: nothing to report gradients to')
})

t.test('shares of a batch', async (t) => {
  t.same([0, 1, 2].map((r) => shareOf(10, r, 3)), [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 10 }], 'contiguous, the last ranks take the larger shares')
  t.same([0, 1].map((r) => shareOf(7, r, 2)), [{ start: 0, end: 3 }, { start: 3, end: 7 }])
  t.same(shareOf(4, 0, 1), { start: 0, end: 4 })
})

for (const zero of [0, 1] as const) {
  t.test(`a world of one trains exactly as the plain Trainer (ZeRO-${zero})`, async (t) => {
    const plain = make(false)
    const dp = make({ zero })
    t.teardown(() => {
      for (const x of [plain, dp]) (x.policy.dispose(), x.dispose())
    })
    t.equal(plain.dataParallel, null)
    t.match(dp.dataParallel, { size: 1, zero })
    t.type(dp.optimizer, DataParallelAdamW)
    const examples = prompts.map((p) => ({ prompt: p.tokens, completion: [(p.tokens as number[])[1]! + 1, 0] }))
    const [a, b] = [await plain.supervisedStep(examples), await dp.supervisedStep(examples)]
    t.ok(Math.abs(a.loss - b.loss) < 1e-9 && a.tokens === b.tokens, 'the warm start')
    const [ra, rb] = [await plain.train(prompts, { steps: 3, batchSize: 4 }), await dp.train(prompts, { steps: 3, batchSize: 4 })]
    ra.steps.forEach((m, i) => {
      const n = rb.steps[i]!
      t.equal(n.rewardMean, m.rewardMean, `step ${i + 1}: the same completions and rewards`)
      t.ok(Math.abs(n.loss - m.loss) < 1e-6 && Math.abs(n.gradNorm - m.gradNorm) < 1e-6 * m.gradNorm, `step ${i + 1}: loss and gradient norm`)
    })
    t.ok(maxDiff(await params(plain), await params(dp)) < 1e-6, 'the same parameters')
    const [ea, eb] = [await plain.evaluate(prompts, { n: 2, greedy: false, batchSize: 4 }), await dp.evaluate(prompts, { n: 2, greedy: false, batchSize: 4 })]
    t.same({ ...eb, time: 0 }, { ...ea, time: 0 }, 'the same evaluation')
    const rollouts = [0, 1, 2, 3].map((k) => ({ prompt: [1, 2], completion: [3, 4, 0].slice(0, 1 + (k % 3)), reward: k % 2, group: 40 + Math.floor(k / 2) }))
    const [sa, sb] = [await plain.stepFromRollouts(rollouts), await dp.stepFromRollouts(rollouts)]
    t.ok(Math.abs(sa.loss - sb.loss) < 1e-6 && sa.rewardMean === sb.rewardMean, 'stepFromRollouts, with the caller\'s group ids')

    // Checkpoints: the moments come back whole (gathered from the shards under ZeRO-1) and load back.
    const ckpt = join(dir, `zero${zero}`)
    await dp.saveCheckpoint(ckpt)
    const saved = await readSafetensors(join(ckpt, 'optimizer.safetensors'))
    t.same(Object.keys(saved.tensors).sort(), ['m.bias', 'm.weight', 'v.bias', 'v.weight'], 'every moment, whole')
    t.same(saved.tensors['m.weight']!.shape, dp.policy.parameters()[0]!.value.shape)
    const back = make({ zero })
    t.teardown(() => (back.policy.dispose(), back.dispose()))
    await back.loadCheckpoint(ckpt)
    t.equal(back.optimizer.stepCount, dp.optimizer.stepCount, 'the step count')
    const [next, nextBack] = [await dp.step(prompts.slice(0, 3)), await back.step(prompts.slice(0, 3))]
    t.ok(Math.abs(next.loss - nextBack.loss) < 1e-7 && Math.abs(next.gradNorm - nextBack.gradNorm) < 1e-7, 'a step after loading equals a step without the round trip')
    t.ok(maxDiff(await params(dp), await params(back)) < 1e-7, 'and so do the parameters')
    if (zero === 1) {
      t.throws(() => dp.optimizer.stateTensors(), { code: 'ERR_GRPO_INVALID_ARG', message: /gatherState/ }, 'ZeRO-1 moments are gathered, not read')
      t.throws(() => dp.optimizer.loadState({}, 3), { code: 'ERR_GRPO_INVALID_ARG', message: /moments m.weight/ })
      t.throws(() => dp.optimizer.loadState({ 'm.weight': { dtype: 'f32', shape: [1], data: new Float32Array(1) }, 'v.weight': { dtype: 'f32', shape: [1], data: new Float32Array(1) } }, 3), { code: 'ERR_GRPO_INVALID_ARG', message: /an f32 tensor of shape/ })
      t.throws(() => dp.optimizer.loadState({}, -1), { code: 'ERR_GRPO_INVALID_ARG' })
      await t.rejects(dp.optimizer.step({ lr: -1 }), { code: 'ERR_GRPO_INVALID_ARG' })
      dp.resetOptimizer()
      t.equal(dp.optimizer.stepCount, 0, 'resetOptimizer drops the shards\' moments')
      t.same(await (dp.optimizer as DataParallelAdamW).gatherState(), {}, 'nothing to gather before a step')
    }
  })
}

t.test("issue 14's one-process features in a world of one train exactly as the plain Trainer", async (t) => {
  const options = (distributed: TrainerOptions['distributed']): TrainerOptions => ({
    policy: new LogLinearPolicy({ vocabSize: 10, hashSize: 101, device: 'cpu' }),
    decode: (tokens) => Array.from(tokens).join(' '),
    rewards: [
      { name: 'count-up', fn: countUp },
      { name: 'short', fn: (_text, _prompt, tokens) => (tokens.length <= 3 ? 1 : 0), weight: 0.5 },
    ],
    rewardAggregation: 'normalize-then-sum',
    overlongPenalty: { buffer: 2 },
    maskTruncated: true,
    stop: [0],
    maxNewTokens: 5,
    groupSize: 3,
    optimizer: { lr: 0.05, eps: 1e-3 },
    seed: 11,
    distributed,
  })
  const plain = new Trainer(options(false))
  const dp = new Trainer(options({}))
  t.teardown(() => {
    for (const x of [plain, dp]) (x.policy.dispose(), x.dispose())
  })
  const [ra, rb] = [await plain.train(prompts, { steps: 2, batchSize: 4 }), await dp.train(prompts, { steps: 2, batchSize: 4 })]
  ra.steps.forEach((m, i) => {
    const n = rb.steps[i]!
    t.same({ ...n.rewards, mean: n.rewardMean, std: n.rewardStd, t: n.truncatedFraction, z: n.zeroStdFraction, tokens: n.tokens }, { ...m.rewards, mean: m.rewardMean, std: m.rewardStd, t: m.truncatedFraction, z: m.zeroStdFraction, tokens: m.tokens }, `step ${i + 1}: the same rewards (by name), masks and counts`)
    t.ok(Math.abs(n.loss - m.loss) < 1e-6, `step ${i + 1}: the same loss`)
  })
  t.ok(maxDiff(await params(plain), await params(dp)) < 1e-6, 'the same parameters')
  const [ea, eb] = [await plain.evaluate(prompts, { n: 2, greedy: false, batchSize: 4 }), await dp.evaluate(prompts, { n: 2, greedy: false, batchSize: 4 })]
  t.same({ ...eb, time: 0 }, { ...ea, time: 0 }, 'the same evaluation, every reward by name')
})

t.test('features that need one decision over every rank are refused with distributed', async (t) => {
  const base = (extra: Partial<TrainerOptions>): TrainerOptions => ({
    policy: new LogLinearPolicy({ vocabSize: 10, hashSize: 101, device: 'cpu' }),
    decode: (tokens) => Array.from(tokens).join(' '),
    reward: countUp,
    distributed: {},
    ...extra,
  })
  const made: TrainerOptions[] = []
  const build = (extra: Partial<TrainerOptions>) => {
    const o = base(extra)
    made.push(o)
    return () => new Trainer(o)
  }
  t.teardown(() => {
    for (const o of made) o.policy.dispose()
  })
  t.throws(build({ filterGroups: { maxRounds: 3 } }), { code: 'ERR_GRPO_INVALID_ARG', message: /^Expected filterGroups off when distributed is on .* for filterGroups/ })
  t.throws(build({ tools: { lookup: () => 'x' }, encode: () => new Int32Array([1]) }), { code: 'ERR_GRPO_INVALID_ARG', message: /^Expected no tools when distributed is on .* for tools but received "?tools lookup/ })
  // Without distributed, both are fine.
  const ok = new Trainer(base({ filterGroups: { maxRounds: 3 }, distributed: false }))
  ok.dispose()
})

t.test('an abort stops every rank after the same step', async (t) => {
  const dp = make(true)
  t.teardown(() => (dp.policy.dispose(), dp.dispose()))
  const controller = new AbortController()
  const r = await dp.train(prompts, { steps: 5, batchSize: 3, signal: controller.signal, onStep: (m) => (m.step === 2 ? controller.abort() : undefined) })
  t.equal(r.steps.length, 2)
  t.equal(r.aborted, true)
})

t.test('a non-finite gradient under ZeRO-1 skips the update', async (t) => {
  const dp = make({ zero: 1 })
  t.teardown(() => (dp.policy.dispose(), dp.dispose()))
  await dp.step(prompts.slice(0, 2))
  const grad = dp.policy.parameters()[0]!.grad!
  // A world of one's all-gather is a copy: a way to write NaN into the gradient.
  using nan = Tensor.from(new Float32Array(grad.size).fill(NaN), [grad.size])
  await distributed.allGather(nan, grad)
  await t.rejects(dp.optimizer.step(), { code: 'ERR_GRPO_NONFINITE', message: /finite gradient norm/ })
  const after = await dp.policy.parameters()[0]!.grad!.toFloat32Array()
  t.ok(after.every((v) => v === 0), 'and leaves the gradients zeroed for the next step')
})

/**
 * RolloutBatch: the padded tensors and advantages it builds, split into micro-batches, reference log-probs, and
 * the validation of rollouts produced elsewhere.
 */
import t from 'tap'
import { RolloutBatch, Tensor, memoryInfo, ops } from '../../lib/index.js'

const rollouts = [
  { prompt: [1, 2], completion: [3, 4, 5], logprobs: [-0.1, -0.2, -0.3], reward: 1, group: 7 },
  { prompt: [1, 2], completion: [6], logprobs: [-1], reward: 0, group: 7 },
  { prompt: [9], completion: [3, 3], logprobs: [-0.5, -0.25], reward: 0.5, group: -2 },
  { prompt: [9], completion: [4, 4, 4, 4], logprobs: [-0.5, -0.5, -0.5, -0.5], reward: 0.5, group: -2 },
  { prompt: [9], completion: [2], logprobs: [-2], reward: 2, group: -2 },
]

t.test('padded tensors, masks, old log-probs and advantages', async (t) => {
  using batch = await RolloutBatch.fromRollouts(rollouts, { device: 'cpu', vocabSize: 10 })
  t.equal(batch.size, 5)
  t.equal(batch.length, 4, 'L = the longest completion')
  t.equal(batch.tokens, 11)
  t.equal(batch.device, 'cpu')
  t.same(Array.from(batch.targets.toArraySync()), [3, 4, 5, 0, 6, 0, 0, 0, 3, 3, 0, 0, 4, 4, 4, 4, 2, 0, 0, 0])
  t.same(Array.from(batch.mask.toArraySync()), [1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0])
  const old = batch.oldLogp!.toArraySync() as Float32Array
  t.same(Array.from(old.subarray(0, 4)), [Math.fround(-0.1), Math.fround(-0.2), Math.fround(-0.3), 0])
  const expected = await ops.groupAdvantages(rollouts.map((r) => r.reward), { groupIds: rollouts.map((r) => r.group) })
  t.same(Array.from(batch.advantages.toArraySync()), Array.from(expected.advantages.toArraySync()), 'the advantages of ops.groupAdvantages')
  t.same(Array.from(batch.advantageValues()), Array.from(expected.advantages.toArraySync()))
  expected.advantages.dispose()
  t.same(Array.from(batch.groupStats!.groupIds), [-2, 7])
  t.equal(batch.groupStats!.zeroStdFraction, 0)
  t.same(Array.from(batch.rewards), [1, 0, 0.5, 0.5, 2])
  t.same(Array.from(batch.groupIds), [7, 7, -2, -2, -2])
  t.same(batch.prompts.map((p) => Array.from(p)), rollouts.map((r) => r.prompt))

  using loo = await RolloutBatch.fromRollouts(rollouts, { device: 'cpu', baseline: 'leave-one-out', scale: 'none' })
  t.same(Array.from(loo.advantages.toArraySync()).slice(0, 2), [1, -1], 'advantage options are passed on')
})

t.test('rollouts without log-probs', async (t) => {
  using batch = await RolloutBatch.fromRollouts(rollouts.map(({ logprobs: _, ...r }) => r))
  t.equal(batch.oldLogp, undefined)
})

t.test('split into micro-batches with the same L, and reference log-probs', async (t) => {
  using batch = await RolloutBatch.fromRollouts(rollouts, { device: 'cpu' })
  const parts = batch.split(2)
  t.same(parts.map((p) => p.size), [2, 3])
  t.ok(parts.every((p) => p.length === 4), 'each padded to the whole batch L')
  t.same(Array.from(parts[1]!.targets.toArraySync()), Array.from(batch.targets.toArraySync()).slice(8))
  t.same(Array.from(parts[1]!.oldLogp!.toArraySync()), Array.from(batch.oldLogp!.toArraySync()).slice(8))
  t.same(Array.from(parts[1]!.advantages.toArraySync()), Array.from(batch.advantages.toArraySync()).slice(2))
  t.equal(parts[1]!.groupStats, batch.groupStats, 'the whole batch statistics')
  const ref = Tensor.from(new Float32Array(12).fill(-1), [3, 4])
  parts[1]!.setRefLogp(ref)
  t.equal(parts[1]!.refLogp, ref)
  parts[1]!.setRefLogp(ref)
  using wrongShape = Tensor.from(new Float32Array(4), [1, 4])
  using wrongType = Tensor.from(new Int32Array(12), [3, 4])
  t.throws(() => parts[1]!.setRefLogp(wrongShape), { code: 'ERR_GRPO_SHAPE', message: /shape \[3, 4\] for refLogp/ })
  t.throws(() => parts[1]!.setRefLogp(wrongType), { code: 'ERR_GRPO_DTYPE' })
  t.throws(() => parts[1]!.setRefLogp('x' as never), { message: /a Tensor for refLogp/ })
  for (const p of parts) p.dispose()
  t.equal(ref.disposed, true, 'the batch disposes its reference log-probs')
  t.same(batch.split(1).map((p) => { p.dispose(); return p.size }), [5])
  t.throws(() => batch.split(6), { message: /integer in \[1, 5\] for parts but received 6/ })
})

t.test('supervised batches', async (t) => {
  using batch = RolloutBatch.fromExamples([{ prompt: [1], completion: [2, 3] }, { prompt: [], completion: new Int32Array([4]) }])
  t.same(Array.from(batch.advantages.toArraySync()), [0, 0])
  t.equal(batch.oldLogp, undefined)
  t.equal(batch.groupStats, null)
  t.throws(() => RolloutBatch.fromExamples([]), { message: /non-empty array/ })
  t.throws(() => RolloutBatch.fromExamples([null as never]), { message: /\{prompt, completion\} object for examples\[0\]/ })
  t.throws(() => RolloutBatch.fromExamples([{ prompt: [1], completion: [] }]), { code: 'ERR_GRPO_SHAPE' })
  t.throws(() => RolloutBatch.fromExamples([{ prompt: [1], completion: [1, 2] }], { maxLength: 1 }), { code: 'ERR_GRPO_SHAPE', message: /at most 1 tokens \(maxLength\)/ })
})

t.test('validation: clear errors for bad rollouts', async (t) => {
  const base = rollouts.slice(0, 2)
  const bad = async (changes: object, index: number, match: object, options: object = {}) => {
    const list = base.map((r, i) => (i === index ? { ...r, ...changes } : r))
    await t.rejects(RolloutBatch.fromRollouts(list as never, options), match)
  }
  await bad({ completion: [1, 2, 3, 4, 5, 6] }, 0, { code: 'ERR_GRPO_SHAPE', message: /Expected a completion of at most 4 tokens \(maxLength\) for rollouts\[0\].completion but received .*6 tokens/ }, { maxLength: 4 })
  await bad({ group: 8 }, 1, { code: 'ERR_GRPO_SHAPE', message: /at least 2 completions per group .* for group 7/ })
  await bad({ logprobs: [-1, -1] }, 1, { code: 'ERR_GRPO_SHAPE', message: /1 log-probs \(one per completion token\) for rollouts\[1\].logprobs but received .*2 values/ })
  await bad({ logprobs: undefined }, 1, { message: /logprobs \(rollouts\[0\] has them\)/ })
  await bad({ logprobs: [0.5] }, 1, { code: 'ERR_GRPO_NONFINITE', message: /finite log-prob <= 0 for rollouts\[1\].logprobs\[0\] but received 0.5/ })
  await bad({ logprobs: [NaN] }, 1, { code: 'ERR_GRPO_NONFINITE' })
  await bad({ logprobs: 'x' }, 1, { message: /array of log-probs/ })
  await bad({ reward: NaN }, 0, { code: 'ERR_GRPO_NONFINITE', message: /finite number for rollouts\[0\].reward but received NaN/ })
  await bad({ reward: '1' }, 0, { code: 'ERR_GRPO_NONFINITE' })
  await bad({ group: 1.5 }, 0, { message: /32-bit integer for rollouts\[0\].group/ })
  await bad({ completion: [] }, 0, { message: /at least 1 token/ })
  await bad({ completion: [10] }, 0, { message: /token id in \[0, 10\) for rollouts\[0\].completion\[0\] but received 10/ }, { vocabSize: 10 })
  await bad({ prompt: [-1] }, 0, { message: /non-negative 32-bit token id for rollouts\[0\].prompt\[0\]/ })
  await bad({ prompt: 'abc' }, 0, { message: /array of token ids for rollouts\[0\].prompt/ })
  await t.rejects(RolloutBatch.fromRollouts([]), { message: /non-empty array of rollouts/ })
  await t.rejects(RolloutBatch.fromRollouts([null, null] as never), { message: /object for rollouts\[0\]/ })
  await t.rejects(RolloutBatch.fromRollouts(rollouts.map(({ logprobs: _, ...r }, i) => (i === 1 ? { ...r, logprobs: [-1] } : r))), { message: /no logprobs \(rollouts\[0\] has none\)/ })
  await t.rejects(RolloutBatch.fromRollouts(base, { device: 'tpu' as never }), { message: /'cpu' or 'cuda' for device/ })
  await t.rejects(RolloutBatch.fromRollouts(base, { maxLength: 0 }), { message: /positive integer for maxLength/ })
  await t.rejects(RolloutBatch.fromRollouts(base, { vocabSize: 0 }), { message: /positive integer for vocabSize/ })
  await t.rejects(RolloutBatch.fromRollouts(base, null as never), { message: /options object/ })
})

t.test('dispose: idempotent, frees tensors and cached features', async (t) => {
  const before = memoryInfo().cpu.tensors
  const batch = await RolloutBatch.fromRollouts(rollouts)
  batch.cache.set('x', Tensor.from([1], [1]))
  t.equal(memoryInfo().cpu.tensors, before + 5)
  batch.dispose()
  batch.dispose()
  t.equal(batch.disposed, true)
  t.equal(memoryInfo().cpu.tensors, before)
  t.throws(() => batch.split(1), { code: 'ERR_GRPO_DISPOSED' })
  using ref = Tensor.from([1], [1, 1])
  t.throws(() => batch.setRefLogp(ref), { code: 'ERR_GRPO_DISPOSED' })
  {
    await using scoped = await RolloutBatch.fromRollouts(rollouts)
    t.equal(scoped.disposed, false)
  }
  t.equal(memoryInfo().cpu.tensors, before + 1, 'await using disposes')
})

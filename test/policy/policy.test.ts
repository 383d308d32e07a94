/**
 * LogLinearPolicy: its logits against a float64 recomputation, a finite-difference check of its backward through
 * the nll loss, sampling (reproducible, stop tokens, log-probs consistent with the loss), clone, save/load,
 * dispose, and argument checks.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { GrpoError, LogLinearPolicy, RolloutBatch, Tensor, memoryInfo, ops, readSafetensors, writeSafetensors } from '../../lib/index.js'
import { embeddingBagForward, relativeError, rng } from './model-reference.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-policy-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

const V = 12
const H = 64

function randomPolicy(seed: number, options: Partial<ConstructorParameters<typeof LogLinearPolicy>[0]> = {}): Promise<LogLinearPolicy> {
  const r = rng(seed)
  const policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 6, device: 'cpu', ...options })
  const path = join(dir, `random-${seed}.safetensors`)
  const weight = Float32Array.from({ length: H * V }, () => (r() - 0.5) * 2)
  const bias = Float32Array.from({ length: V }, () => (r() - 0.5) * 2)
  return (async () => {
    await policy.save(path) // the metadata of this configuration
    const saved = await readSafetensors(path)
    await writeSafetensors(path, { weight: { dtype: 'f32', shape: [H, V], data: weight }, bias: { dtype: 'f32', shape: [V], data: bias } }, saved.metadata)
    await policy.load(path)
    return policy
  })()
}

const examples = [
  { prompt: [1, 2, 3, 4], completion: [5, 6, 7, 2] },
  { prompt: [4, 3, 9], completion: [8, 8, 1] },
  { prompt: [11], completion: [0] },
]

t.test('logits are bias + the sum of the feature rows (float64 recomputation)', async (t) => {
  await using policy = await randomPolicy(1)
  using batch = RolloutBatch.fromExamples(examples, { device: 'cpu' })
  using logits = await policy.logits(batch)
  t.same(logits.shape, [3, 4, V])
  using ids = policy.features(batch)
  t.equal(ids.shape[0], 3)
  t.equal(ids.shape[1], 4)
  const [weight, bias] = policy.parameters().map((p) => p.value.toArraySync() as Float32Array)
  const ref = embeddingBagForward(weight!, bias!, ids.toArraySync() as Int32Array, 12, ids.shape[2]!, V)
  t.ok(relativeError(logits.toArraySync() as Float32Array, ref) < 1e-6)
  // Padding positions (past a completion's end) have no features: their logits are the bias.
  const flat = ids.toArraySync() as Int32Array
  const F = ids.shape[2]!
  t.ok(flat.subarray((2 * 4 + 1) * F, (2 * 4 + 2) * F).every((x) => x === -1), 'a padding position has no features')
  t.ok(flat.subarray(0, F).some((x) => x >= 0), 'a real position has features')
})

t.test('gradient check: backward through the nll loss matches finite differences', async (t) => {
  await using policy = await randomPolicy(2)
  using batch = RolloutBatch.fromExamples(examples, { device: 'cpu' })
  const loss = async (): Promise<number> => {
    using logits = await policy.logits(batch)
    const r = await ops.grpoLoss({ logits, targets: batch.targets, mask: batch.mask, advantages: batch.advantages }, { loss: 'nll', temperature: 0.7 })
    r.gradLogits.dispose()
    r.logp.dispose()
    return r.loss
  }
  await policy.zeroGrad()
  {
    using logits = await policy.logits(batch)
    const r = await ops.grpoLoss(
      { logits, targets: batch.targets, mask: batch.mask, advantages: batch.advantages },
      { loss: 'nll', temperature: 0.7, inplace: true },
    )
    r.logp.dispose()
    await policy.backward(batch, logits)
  }
  const [w, b] = policy.parameters()
  const gw = w!.grad!.toArraySync() as Float32Array
  const gb = b!.grad!.toArraySync() as Float32Array
  // Perturb a few weight rows that the batch uses and every bias entry, through save/load of the parameters.
  using ids = policy.features(batch)
  const used = [...new Set(Array.from(ids.toArraySync() as Int32Array).filter((x) => x >= 0))].slice(0, 4)
  const path = join(dir, 'perturbed.safetensors')
  const file0 = await readSafetensors(join(dir, 'random-2.safetensors'))
  const weight0 = file0.tensors.weight!.data as Float32Array
  const bias0 = file0.tensors.bias!.data as Float32Array
  const eps = 1e-2
  const central = async (which: 'weight' | 'bias', index: number): Promise<number> => {
    const values: number[] = []
    for (const sign of [1, -1]) {
      const weight = weight0.slice()
      const bias = bias0.slice()
      ;(which === 'weight' ? weight : bias)[index]! += sign * eps
      await writeSafetensors(path, { weight: { dtype: 'f32', shape: [H, V], data: weight }, bias: { dtype: 'f32', shape: [V], data: bias } }, file0.metadata)
      await policy.load(path)
      values.push(await loss())
    }
    return (values[0]! - values[1]!) / (2 * eps)
  }
  let checked = 0
  for (const row of used) {
    for (const j of [0, 5, 11]) {
      const numeric = await central('weight', row * V + j)
      t.ok(Math.abs(numeric - gw[row * V + j]!) < 2e-3 * Math.max(1, Math.abs(numeric)), `dW[${row}, ${j}]: ${gw[row * V + j]} vs ${numeric}`)
      checked++
    }
  }
  for (const j of [0, 2, 7]) {
    const numeric = await central('bias', j)
    t.ok(Math.abs(numeric - gb[j]!) < 2e-3 * Math.max(1, Math.abs(numeric)), `db[${j}]: ${gb[j]} vs ${numeric}`)
  }
  t.ok(checked >= 6, 'several weight entries checked')
  await policy.zeroGrad()
  t.ok((w!.grad!.toArraySync() as Float32Array).every((x) => x === 0), 'zeroGrad clears the gradient')
})

t.test('backward skips masked rows and accumulates', async (t) => {
  await using policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, device: 'cpu' })
  using batch = RolloutBatch.fromExamples(examples.slice(0, 2), { device: 'cpu' })
  using grad = Tensor.from(new Float32Array(2 * 4 * V).fill(1), [2, 4, V])
  await policy.backward(batch, grad)
  const once = Float32Array.from(policy.parameters()[1]!.grad!.toArraySync() as Float32Array)
  t.same(Array.from(once), new Array(V).fill(7), 'bias gradient: 7 counted positions (padding skipped)')
  await policy.backward(batch, grad)
  t.same(Array.from(policy.parameters()[1]!.grad!.toArraySync()), new Array(V).fill(14), 'a second backward adds')
  // A batch without a cache of its own uses the policy's single-entry cache.
  const plain = { prompts: batch.prompts, completions: batch.completions, length: batch.length }
  using a = await policy.logits(plain)
  using b = await policy.logits(plain)
  t.same(Array.from(a.toArraySync()), Array.from(b.toArraySync()))
})

t.test('sampling: reproducible, stop tokens, finish reasons, log-probs as the loss computes them', async (t) => {
  await using policy = await randomPolicy(3)
  const prompts = [[1, 2, 3], new Int32Array([4, 5])]
  const a = await policy.sample(prompts, { n: 3, temperature: 0.7, maxNewTokens: 6, stop: [2], seed: 42 })
  const b = await policy.sample(prompts, { n: 3, temperature: 0.7, maxNewTokens: 6, stop: [2], seed: 42 })
  t.equal(a.length, 6, 'prompts × n completions')
  t.same(a.map((c) => [c.prompt, c.sample]), [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]], 'prompt-major order')
  t.same(a.map((c) => Array.from(c.tokens)), b.map((c) => Array.from(c.tokens)), 'same seed, same completions')
  for (const c of a) {
    t.equal(c.logprobs.length, c.tokens.length)
    const stopAt = Array.from(c.tokens).indexOf(2)
    if (c.finishReason === 'stop') t.equal(stopAt, c.tokens.length - 1, 'ends on its stop token')
    else t.equal(c.tokens.length, 6, 'or runs to maxNewTokens')
  }
  const seeds = new Set<string>()
  for (let s = 0; s < 6; s++) seeds.add((await policy.sample(prompts, { n: 2, maxNewTokens: 6, seed: s })).map((c) => c.tokens.join()).join('|'))
  t.ok(seeds.size > 1, 'different seeds, different completions')
  const greedy = await policy.sample(prompts, { greedy: true, maxNewTokens: 5 })
  const again = await policy.sample(prompts, { greedy: true, maxNewTokens: 5, seed: 7 })
  t.same(greedy.map((c) => c.tokens.join()), again.map((c) => c.tokens.join()), 'greedy ignores the seed')

  // The sampled log-probs are the loss's log-probs of the same tokens at the same temperature.
  using batch = await RolloutBatch.fromRollouts(
    a.map((c) => ({ prompt: prompts[c.prompt]!, completion: c.tokens, logprobs: c.logprobs, reward: c.sample, group: c.prompt })),
    { device: 'cpu' },
  )
  using logits = await policy.logits(batch)
  const lp = await ops.tokenLogprobs(logits, batch.targets, { temperature: 0.7, mask: batch.mask })
  t.ok(relativeError(lp.logp.toArraySync() as Float32Array, batch.oldLogp!.toArraySync() as Float32Array) < 1e-5, 'sampled log-probs = tokenLogprobs')
  lp.logp.dispose()
  lp.lse.dispose()
})

t.test('the prompt window: the last promptWindow tokens after windowAfter, without ignoreTokens', async (t) => {
  await using policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 3, ignoreTokens: [0], windowAfter: [9, 10], device: 'cpu' })
  t.same(Array.from(policy.promptContext([1, 2, 3, 4, 5])), [3, 4, 5], 'the tail')
  t.same(Array.from(policy.promptContext([1, 9, 10, 4, 0, 5])), [4, 5], 'after the marker, without ignored tokens')
  t.same(Array.from(policy.promptContext([9, 10, 1, 9, 10, 2])), [2], 'after the last marker')
  t.same(Array.from(policy.promptContext([0, 0])), [], 'nothing left')
  await using none = new LogLinearPolicy({ vocabSize: V, promptWindow: 0, hashSize: H, device: 'cpu' })
  t.same(Array.from(none.promptContext([1, 2])), [], 'a window of 0')
  const sampled = await none.sample([[1]], { maxNewTokens: 2 })
  t.equal(sampled[0]!.tokens.length, 2, 'samples without prompt features')
  t.same(policy.config, { vocabSize: V, hashSize: H, promptWindow: 3, ignoreTokens: [0], windowAfter: [9, 10] })
})

t.test('clone, save and load', async (t) => {
  await using policy = await randomPolicy(4)
  await using copy = await policy.clone()
  t.equal(copy.trainable, false, 'a clone is frozen')
  t.equal(copy.parameters()[0]!.grad, null, 'without gradients')
  using batch = RolloutBatch.fromExamples(examples, { device: 'cpu' })
  using a = await policy.logits(batch)
  using b = await copy.logits(batch)
  t.same(Array.from(a.toArraySync()), Array.from(b.toArraySync()), 'same logits (sharing the batch cache)')
  t.equal(batch.cache.size, 1, 'one feature tensor for both policies')
  await t.rejects(copy.backward(batch, a), { code: 'ERR_GRPO_INVALID_ARG', message: /frozen/ }, 'no backward on a clone')

  const path = join(dir, 'saved.safetensors')
  await policy.save(path)
  await using loaded = await LogLinearPolicy.fromFile(path, { device: 'cpu' })
  t.same(loaded.config, policy.config, 'configuration restored')
  using c = await loaded.logits(batch)
  t.same(Array.from(c.toArraySync()), Array.from(a.toArraySync()), 'same logits after fromFile')
  await using other = new LogLinearPolicy({ vocabSize: V + 1, hashSize: H, device: 'cpu' })
  await t.rejects(other.load(path), { code: 'ERR_GRPO_SHAPE', message: /vocabSize 13 \(this policy's\) for vocabSize of/ }, 'another configuration')
  await using otherFeatures = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 6, ignoreTokens: [3], device: 'cpu' })
  await t.rejects(otherFeatures.load(path), { code: 'ERR_GRPO_INVALID_ARG', message: /ignoreTokens \[3\] \(this policy's\)/ }, 'other ignored tokens')
  await using otherWindow = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 6, windowAfter: [1], device: 'cpu' })
  await t.rejects(otherWindow.load(path), { code: 'ERR_GRPO_INVALID_ARG', message: /windowAfter \[1\] \(this policy's\)/ }, 'another window marker')
  await writeSafetensors(join(dir, 'foreign.safetensors'), { x: { dtype: 'f32', shape: [1], data: new Float32Array(1) } }, { format: 'other' })
  await t.rejects(LogLinearPolicy.fromFile(join(dir, 'foreign.safetensors')), { code: 'ERR_GRPO_INVALID_ARG', message: /saved by LogLinearPolicy/ })
  const meta = (await readSafetensors(path)).metadata
  await writeSafetensors(join(dir, 'no-weight.safetensors'), { bias: { dtype: 'f32', shape: [V], data: new Float32Array(V) } }, meta)
  await t.rejects(LogLinearPolicy.fromFile(join(dir, 'no-weight.safetensors')), { message: /a tensor named weight/ })
  await writeSafetensors(join(dir, 'bad-shape.safetensors'), { weight: { dtype: 'f32', shape: [1, V], data: new Float32Array(V) }, bias: { dtype: 'f32', shape: [V], data: new Float32Array(V) } }, meta)
  await t.rejects(LogLinearPolicy.fromFile(join(dir, 'bad-shape.safetensors')), { code: 'ERR_GRPO_SHAPE' })
  await writeSafetensors(join(dir, 'bad-dtype.safetensors'), { weight: { dtype: 'i32', shape: [H, V], data: new Int32Array(H * V) }, bias: { dtype: 'f32', shape: [V], data: new Float32Array(V) } }, meta)
  await t.rejects(LogLinearPolicy.fromFile(join(dir, 'bad-dtype.safetensors')), { code: 'ERR_GRPO_DTYPE' })
  await writeSafetensors(join(dir, 'bad-config.safetensors'), {}, { format: meta.format!, config: '{' })
  await t.rejects(LogLinearPolicy.fromFile(join(dir, 'bad-config.safetensors')), { message: /JSON policy config/ })
})

t.test('dispose: idempotent, frees the native memory, later use throws ERR_GRPO_DISPOSED', async (t) => {
  const before = memoryInfo().cpu.tensors
  const policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, device: 'cpu' })
  t.equal(memoryInfo().cpu.tensors, before + 4, 'weight, bias and their gradients')
  await policy.sample([[1]], { maxNewTokens: 3 })
  policy.dispose()
  policy.dispose()
  t.equal(policy.disposed, true)
  t.equal(memoryInfo().cpu.tensors, before, 'all freed')
  t.throws(() => policy.parameters(), { code: 'ERR_GRPO_DISPOSED' })
  await t.rejects(policy.sample([[1]]), { code: 'ERR_GRPO_DISPOSED' })
  {
    using scoped = new LogLinearPolicy({ vocabSize: V, hashSize: H, device: 'cpu' })
    t.equal(scoped.disposed, false)
  }
  {
    await using scoped = new LogLinearPolicy({ vocabSize: V, hashSize: H, device: 'cpu' })
    t.equal(scoped.disposed, false)
  }
  t.equal(memoryInfo().cpu.tensors, before, '`using` and `await using` dispose')
})

t.test('argument checks', async (t) => {
  const make = (o: object) => () => new LogLinearPolicy(o as never)
  t.throws(make({}), { code: 'ERR_GRPO_INVALID_ARG', message: /positive integer for vocabSize but received undefined/ })
  t.throws(make({ vocabSize: 0 }), { message: /for vocabSize but received 0/ })
  t.throws(make({ vocabSize: 4, hashSize: 2 ** 31 }), { message: /below 2\^31 for hashSize/ })
  t.throws(make({ vocabSize: 4096, hashSize: 2 ** 20 }), { message: /at most 2\^30 weights/ })
  t.throws(make({ vocabSize: 4, device: 'tpu' }), { message: /'cpu' or 'cuda' for device/ })
  t.throws(make({ vocabSize: 4, ignoreTokens: [0.5] }), { message: /integer token id for ignoreTokens/ })
  t.throws(make({ vocabSize: 4, windowAfter: 'x' }), { message: /array of token ids for windowAfter/ })
  t.throws(make({ vocabSize: 4, trainable: 'no' }), { message: /boolean for trainable/ })
  t.throws(() => new LogLinearPolicy(null as never), { message: /options object/ })
  await using policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, device: 'cpu' })
  await t.rejects(policy.sample('x' as never), { message: /array of prompts/ })
  await t.rejects(policy.sample([[1]], null as never), { message: /options object for sample options/ })
  await t.rejects(policy.sample([[V]]), { message: /token id in \[0, 12\) for prompts\[0\]\[0\] but received 12/ })
  await t.rejects(policy.sample(['ab' as never]), { message: /array of token ids for prompts\[0\]/ })
  await t.rejects(policy.sample([[1]], { n: 0 }), { message: /positive integer for n/ })
  await t.rejects(policy.sample([[1]], { maxNewTokens: 1.5 }), { message: /for maxNewTokens/ })
  await t.rejects(policy.sample([[1]], { seed: -1 }), { message: /for seed/ })
  await t.rejects(policy.sample([[1]], { stop: [99] }), { message: /for stop\[0\]/ })
  await t.rejects(policy.sample([[1]], { temperature: -1 }), { code: 'ERR_GRPO_INVALID_ARG', message: /temperature/ })
  await t.rejects(policy.logits(null as never), { message: /batch with prompts, completions and length/ })
  await t.rejects(policy.logits({ prompts: [], completions: [new Int32Array(1)], length: 1 }), { message: /same length/ })
  await t.rejects(policy.logits({ prompts: [new Int32Array(0)], completions: [new Int32Array(3)], length: 2 }), { code: 'ERR_GRPO_SHAPE', message: /at most 2 tokens/ })
  await t.rejects(policy.logits({ prompts: [new Int32Array(0)], completions: [Int32Array.of(V)], length: 1 }), { message: /batch.completions\[0\]\[0\]/ })
  await t.rejects(policy.logits({ prompts: [[1] as never], completions: [Int32Array.of(1)], length: 1 }), { message: /Int32Array for batch.prompts\[0\]/ })
  await t.rejects(policy.logits({ prompts: [new Int32Array(0)], completions: [[1] as never], length: 1 }), { message: /Int32Array for batch.completions\[0\]/ })
  await t.rejects(policy.logits({ prompts: [], completions: [], length: -1 }), { message: /non-negative integer for batch.length/ })
  t.ok(GrpoError)
})

/**
 * LogLinearPolicy's copy features (copySpan): the logits they add, recomputed independently with a constant copy
 * table (where the hashes do not matter: each pair adds the constant); a finite-difference check of the copy
 * weights' gradient through the nll loss; masked positions add no gradient; sampled log-probs (after a prefix that
 * holds a span) equal the loss's; clone, save and load carry the copy weights; argument checks.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { LogLinearPolicy, RolloutBatch, Tensor, memoryInfo, ops, readSafetensors, writeSafetensors } from '../../lib/index.js'
import { rng } from './model-reference.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-copy-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

const V = 12
const H = 64
const OPEN = 9
const CLOSE = 10
const copySpan = { open: OPEN, close: CLOSE }

// Completions with spans: none; one closed span and tokens after it; two spans (the latter wins), the second still
// open at the end; a value repeated inside a span; a span opened at the very start.
const examples = [
  { prompt: [1, 2, 3], completion: [5, 6, 2] },
  { prompt: [4, 3], completion: [5, 9, 4, 6, 10, 7, 4, 6, 2] },
  { prompt: [1], completion: [9, 3, 10, 5, 9, 8, 8, 4, 10, 8, 2] },
  { prompt: [2, 2], completion: [9, 1, 5, 1, 10, 3, 1, 5, 2] },
]

async function withTables(policy: LogLinearPolicy, seed: number, copyValue: ((i: number) => number) | null): Promise<{ weight: Float32Array; bias: Float32Array; copy: Float32Array }> {
  const r = rng(seed)
  const weight = Float32Array.from({ length: H * V }, () => (r() - 0.5) * 2)
  const bias = Float32Array.from({ length: V }, () => (r() - 0.5) * 2)
  const copy = Float32Array.from({ length: H }, (_, i) => (copyValue ? copyValue(i) : (r() - 0.5) * 2))
  const path = join(dir, `tables-${seed}-${policy.copySpan ? 'copy' : 'plain'}.safetensors`)
  await policy.save(path)
  const saved = await readSafetensors(path)
  const tensors: Record<string, { dtype: 'f32'; shape: number[]; data: Float32Array }> = {
    weight: { dtype: 'f32', shape: [H, V], data: weight },
    bias: { dtype: 'f32', shape: [V], data: bias },
  }
  if (policy.copySpan) tensors.copy = { dtype: 'f32', shape: [H, 1], data: copy }
  await writeSafetensors(path, tensors, saved.metadata)
  await policy.load(path)
  return { weight, bias, copy }
}

/** The latest span before position l of a completion (the open token left out), recomputed from its definition. */
function spanBefore(c: readonly number[], l: number): number[] {
  let span: number[] = []
  let open = false
  for (let i = 0; i < l; i++) {
    if (c[i] === OPEN) [span, open] = [[], true]
    else if (c[i] === CLOSE) open = false
    else if (open) span.push(c[i]!)
  }
  return span
}

/** How many copy pairs add to the logit of v at position l: 3 per occurrence of v in the span, +1 when it follows c1. */
function pairCount(c: readonly number[], l: number, v: number): number {
  const span = spanBefore(c, l)
  let n = 0
  for (let j = 0; j < span.length; j++) {
    if (span[j] !== v) continue
    n += 3
    if (j >= 1 && l >= 1 && span[j - 1] === c[l - 1]) n += 1
  }
  return n
}

t.test('a constant copy table adds that constant once per copy pair (independent recomputation)', async (t) => {
  await using plain = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 4, device: 'cpu' })
  await using copying = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 4, device: 'cpu', copySpan })
  await withTables(plain, 1, null)
  const c = 0.375
  await withTables(copying, 1, () => c)
  using batch = RolloutBatch.fromExamples(examples, { device: 'cpu' })
  using a = await plain.logits(batch)
  using b = await copying.logits(batch)
  t.equal(batch.cache.size, 2, 'the two feature sets are cached apart')
  const base = a.toArraySync() as Float32Array
  const withCopy = b.toArraySync() as Float32Array
  const L = batch.length
  let pairs = 0
  let worst = 0
  for (let e = 0; e < examples.length; e++) {
    const comp = examples[e]!.completion
    for (let l = 0; l < L; l++) {
      for (let v = 0; v < V; v++) {
        const at = (e * L + l) * V + v
        const expected = l < comp.length ? c * pairCount(comp, l, v) : 0
        pairs += l < comp.length ? pairCount(comp, l, v) : 0
        worst = Math.max(worst, Math.abs(withCopy[at]! - base[at]! - expected))
      }
    }
  }
  t.ok(worst < 1e-5, `largest deviation ${worst}`)
  t.ok(pairs > 50, `${pairs} copy pairs in the batch`)
  // With a zero copy table the logits are the plain policy's.
  await using zero = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 4, device: 'cpu', copySpan })
  await withTables(zero, 1, () => 0)
  using z = await zero.logits(batch)
  t.same(Array.from(z.toArraySync()), Array.from(base), 'zero copy weights: the plain logits')
})

t.test("gradient check: the copy weights' gradient through the nll loss matches finite differences", async (t) => {
  await using policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 4, device: 'cpu', copySpan })
  const tables = await withTables(policy, 2, null)
  using batch = RolloutBatch.fromExamples(examples, { device: 'cpu' })
  const lossOf = async (): Promise<number> => {
    using logits = await policy.logits(batch)
    const r = await ops.grpoLoss({ logits, targets: batch.targets, mask: batch.mask, advantages: batch.advantages }, { loss: 'nll', temperature: 0.7 })
    r.gradLogits.dispose()
    r.logp.dispose()
    return r.loss
  }
  await policy.zeroGrad()
  {
    using logits = await policy.logits(batch)
    const r = await ops.grpoLoss({ logits, targets: batch.targets, mask: batch.mask, advantages: batch.advantages }, { loss: 'nll', temperature: 0.7, inplace: true })
    r.logp.dispose()
    await policy.backward(batch, logits)
  }
  const copyParam = policy.parameters().find((p) => p.name === 'copy')!
  t.same(copyParam.value.shape, [H, 1])
  const grad = copyParam.grad!.toArraySync() as Float32Array
  const used = [...grad.keys()].filter((i) => grad[i] !== 0)
  t.ok(used.length >= 4, `${used.length} copy weights get a gradient`)
  const path = join(dir, 'perturbed.safetensors')
  const meta = (await readSafetensors(join(dir, 'tables-2-copy.safetensors'))).metadata
  const eps = 1e-2
  for (const i of [...used.slice(0, 5), [...grad.keys()].find((k) => grad[k] === 0) ?? 0]) {
    const values: number[] = []
    for (const sign of [1, -1]) {
      const copy = tables.copy.slice()
      copy[i]! += sign * eps
      await writeSafetensors(
        path,
        {
          weight: { dtype: 'f32', shape: [H, V], data: tables.weight },
          bias: { dtype: 'f32', shape: [V], data: tables.bias },
          copy: { dtype: 'f32', shape: [H, 1], data: copy },
        },
        meta,
      )
      await policy.load(path)
      values.push(await lossOf())
    }
    const numeric = (values[0]! - values[1]!) / (2 * eps)
    t.ok(Math.abs(numeric - grad[i]!) < 2e-3 * Math.max(1, Math.abs(numeric)), `dcopy[${i}]: ${grad[i]} vs ${numeric}`)
  }
  await policy.zeroGrad()
  t.ok((copyParam.grad!.toArraySync() as Float32Array).every((x) => x === 0), 'zeroGrad clears it')
})

t.test('backward: masked positions add nothing to the copy weights', async (t) => {
  await using policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 4, device: 'cpu', copySpan })
  // Each example's mask: the model's tokens only (the span and its tags masked out, as tool turns are).
  const masked = examples.map((e) => {
    const mask = spanMask(e.completion)
    return { ...e, mask }
  })
  using batch = RolloutBatch.fromExamples(masked, { device: 'cpu' })
  const L = batch.length
  using ones = Tensor.from(new Float32Array(examples.length * L * V).fill(1), [examples.length, L, V])
  await policy.backward(batch, ones)
  const total = (policy.parameters().find((p) => p.name === 'copy')!.grad!.toArraySync() as Float32Array).reduce((a, x) => a + x, 0)
  let expected = 0
  for (const e of masked) {
    for (let l = 0; l < e.completion.length; l++) {
      if (e.mask[l] === 0) continue
      for (let v = 0; v < V; v++) expected += pairCount(e.completion, l, v)
    }
  }
  t.equal(total, expected, `a gradient of 1 per logit: ${expected} pairs at unmasked positions`)
  t.ok(expected > 0)
})

/** 0 on the tags and the tokens between them, 1 elsewhere. */
function spanMask(c: readonly number[]): number[] {
  let open = false
  return c.map((x) => {
    if (x === OPEN) open = true
    const keep = open ? 0 : 1
    if (x === CLOSE) open = false
    return keep
  })
}

t.test('sampling after a prefix with a span: the sampled log-probs are the loss log-probs', async (t) => {
  await using policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 4, device: 'cpu', copySpan })
  // Large copy weights, so the span visibly shapes what is sampled.
  await withTables(policy, 3, (i) => 3 + (i % 5))
  const prompts = [[1, 2], [3]]
  const prefixes = [[5, 9, 4, 8, 10], [9, 6, 10]]
  const sampled = await policy.sampleContinuations(prompts, prefixes, { n: 4, temperature: 0.8, maxNewTokens: 5, stop: [2], seed: 11 })
  const fromSpan = sampled.filter((c) => c.tokens.length > 0 && spanBefore([...prefixes[c.prompt]!, 10], 99).includes(c.tokens[0]!)).length
  t.ok(fromSpan >= 4, `${fromSpan} of 8 first tokens come from the span`)
  const batch = {
    prompts: sampled.map((c) => Int32Array.from(prompts[c.prompt]!)),
    completions: sampled.map((c) => Int32Array.from([...prefixes[c.prompt]!, ...c.tokens])),
    length: Math.max(...sampled.map((c) => prefixes[c.prompt]!.length + c.tokens.length)),
  }
  using logits = await policy.logits(batch)
  const values = logits.toArraySync() as Float32Array
  let worst = 0
  sampled.forEach((c, b) => {
    const offset = prefixes[c.prompt]!.length
    for (let i = 0; i < c.tokens.length; i++) {
      const row = values.subarray((b * batch.length + offset + i) * V, (b * batch.length + offset + i + 1) * V)
      const scaled = Array.from(row, (x) => x / 0.8)
      const m = Math.max(...scaled)
      const lse = m + Math.log(scaled.reduce((a, x) => a + Math.exp(x - m), 0))
      worst = Math.max(worst, Math.abs(scaled[c.tokens[i]!]! - lse - c.logprobs[i]!))
    }
  })
  t.ok(worst < 1e-4, `largest log-prob deviation ${worst}`)
})

t.test('clone, save and load carry the copy weights; the configuration is checked', async (t) => {
  const before = memoryInfo().cpu.tensors
  {
    await using policy = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 4, device: 'cpu', copySpan })
    t.equal(memoryInfo().cpu.tensors, before + 6, 'weight, bias, copy and their gradients')
    await withTables(policy, 4, null)
    t.same(policy.config.copySpan, copySpan)
    using batch = RolloutBatch.fromExamples(examples, { device: 'cpu' })
    using a = await policy.logits(batch)
    await using clone = await policy.clone()
    t.equal(clone.parameters().find((p) => p.name === 'copy')!.grad, null, 'a frozen clone')
    using b = await clone.logits(batch)
    t.same(Array.from(b.toArraySync()), Array.from(a.toArraySync()), 'the clone: same logits')
    const path = join(dir, 'saved-copy.safetensors')
    await policy.save(path)
    await using loaded = await LogLinearPolicy.fromFile(path, { device: 'cpu' })
    t.same(loaded.copySpan, copySpan)
    using c = await loaded.logits(batch)
    t.same(Array.from(c.toArraySync()), Array.from(a.toArraySync()), 'fromFile: same logits')
    await using plain = new LogLinearPolicy({ vocabSize: V, hashSize: H, promptWindow: 4, device: 'cpu' })
    await t.rejects(plain.load(path), { code: 'ERR_GRPO_INVALID_ARG', message: /copySpan null \(this policy's\)/ })
    t.equal(plain.config.copySpan, undefined, 'no copySpan in a plain policy\'s config (its files are unchanged)')
    const meta = (await readSafetensors(path)).metadata
    await writeSafetensors(join(dir, 'no-copy.safetensors'), { weight: { dtype: 'f32', shape: [H, V], data: new Float32Array(H * V) }, bias: { dtype: 'f32', shape: [V], data: new Float32Array(V) } }, meta)
    await t.rejects(LogLinearPolicy.fromFile(join(dir, 'no-copy.safetensors')), { message: /a tensor named copy/ })
  }
  t.equal(memoryInfo().cpu.tensors, before, 'all freed')
  const make = (o: object) => () => new LogLinearPolicy({ vocabSize: V, hashSize: H, device: 'cpu', ...o } as never)
  t.throws(make({ copySpan: 3 }), { code: 'ERR_GRPO_INVALID_ARG', message: /object \{open, close\}/ })
  t.throws(make({ copySpan: { open: V, close: 1 } }), { message: /token id in \[0, 12\) for copySpan.open but received 12/ })
  t.throws(make({ copySpan: { open: 1 } }), { message: /for copySpan.close but received undefined/ })
  t.throws(make({ copySpan: { open: 1, close: 1 } }), { message: /two different token ids/ })
})

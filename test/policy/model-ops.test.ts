/**
 * The model ops (lib/model-ops.ts) against their float64 references (model-reference.ts), their determinism, and
 * their argument checks (GrpoError codes, "Expected X for Y but received Z").
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { GrpoError, Tensor, modelOps, ops } from '../../lib/index.js'
import { adamwStep, embeddingBagBackward, embeddingBagForward, relativeError, rng, rowUniform, sampleRow } from './model-reference.js'

function randomIds(rows: number, F: number, H: number, r: () => number): Int32Array {
  // About a quarter padding, and repeated ids within a row (hash collisions do that).
  return Int32Array.from({ length: rows * F }, () => (r() < 0.25 ? -1 : Math.floor(r() * H)))
}

function randomFloats(n: number, r: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale)
}

function expectError(t: Test, fn: () => unknown, code: string, pattern: RegExp, label: string): void {
  try {
    fn()
    t.fail(`${label}: no error`)
  } catch (e) {
    t.ok(e instanceof GrpoError, `${label}: a GrpoError`)
    t.equal((e as GrpoError).code, code, `${label}: ${code}`)
    t.match((e as Error).message, pattern, `${label}: message`)
  }
}

t.test('embeddingBagForward matches the float64 reference', async (t) => {
  const r = rng(11)
  for (const [B, L, F, H, V] of [
    [1, 1, 1, 1, 1],
    [2, 3, 5, 7, 11],
    [3, 17, 40, 257, 301],
  ] as const) {
    const W = randomFloats(H * V, r)
    const bias = randomFloats(V, r)
    const ids = randomIds(B * L, F, H, r)
    using w = Tensor.from(W, [H, V])
    using b = Tensor.from(bias, [V])
    using idt = Tensor.from(ids, [B, L, F])
    using out = await modelOps.embeddingBagForward(w, idt, { bias: b })
    t.same(out.shape, [B, L, V], 'shape [B, L, V]')
    const ref = embeddingBagForward(W, bias, ids, B * L, F, V)
    t.ok(relativeError(out.toArraySync() as Float32Array, ref) < 1e-6, `B=${B} L=${L} F=${F} H=${H} V=${V}`)
    using noBias = modelOps.embeddingBagForwardSync(w, idt)
    t.ok(relativeError(noBias.toArraySync() as Float32Array, embeddingBagForward(W, null, ids, B * L, F, V)) < 1e-6, 'without bias (sync)')
  }
  t.test('all-padding rows are the bias', async (t) => {
    using w = Tensor.from([1, 2, 3, 4], [2, 2])
    using b = Tensor.from([0.5, -0.5], [2])
    using ids = Tensor.from(new Int32Array([-1, -1, 1, 1]), [2, 2])
    using out = modelOps.embeddingBagForwardSync(w, ids, { bias: b })
    t.same(Array.from(out.toArraySync()), [0.5, -0.5, 6.5, 7.5])
  })
})

t.test('embeddingBagBackward matches the float64 reference and accumulates', async (t) => {
  const r = rng(12)
  const [B, L, F, H, V] = [4, 9, 30, 64, 129]
  const G = randomFloats(B * L * V, r)
  const ids = randomIds(B * L, F, H, r)
  const mask = Uint8Array.from({ length: B * L }, () => (r() < 0.8 ? 1 : 0))
  const gw0 = randomFloats(H * V, r)
  const gb0 = randomFloats(V, r)
  using grad = Tensor.from(G, [B, L, V])
  using idt = Tensor.from(ids, [B, L, F])
  using m = Tensor.from(mask, [B, L])
  using gw = Tensor.from(gw0, [H, V])
  using gb = Tensor.from(gb0, [V])
  await modelOps.embeddingBagBackward(grad, idt, gw, { gradBias: gb, mask: m })
  const ref = embeddingBagBackward(G, ids, mask, B * L, F, H, V, gw0, gb0)
  t.ok(relativeError(gw.toArraySync() as Float32Array, ref.gradWeight) < 1e-6, 'gradWeight (masked)')
  t.ok(relativeError(gb.toArraySync() as Float32Array, ref.gradBias) < 1e-6, 'gradBias (masked)')
  // Without a mask, and a second call adds on top.
  using gw2 = Tensor.zeros([H, V])
  modelOps.embeddingBagBackwardSync(grad, idt, gw2)
  modelOps.embeddingBagBackwardSync(grad, idt, gw2)
  const once = embeddingBagBackward(G, ids, null, B * L, F, H, V, new Float32Array(H * V), new Float32Array(V))
  t.ok(relativeError(gw2.toArraySync() as Float32Array, once.gradWeight.map((x) => 2 * x)) < 1e-6, 'accumulates across calls')
})

t.test('embedding bag forward and backward are transposes (⟨g, W·x⟩ = ⟨Wᵀg, x⟩)', async (t) => {
  const r = rng(13)
  const [R, F, H, V] = [20, 12, 31, 17]
  const W = randomFloats(H * V, r)
  const ids = randomIds(R, F, H, r)
  const G = randomFloats(R * V, r)
  using w = Tensor.from(W, [H, V])
  using idt = Tensor.from(ids, [R, F])
  using out = modelOps.embeddingBagForwardSync(w, idt)
  using g = Tensor.from(G, [R, V])
  using gw = Tensor.zeros([H, V])
  modelOps.embeddingBagBackwardSync(g, idt, gw)
  const y = out.toArraySync() as Float32Array
  const gwv = gw.toArraySync() as Float32Array
  let lhs = 0
  let rhs = 0
  for (let i = 0; i < y.length; i++) lhs += G[i]! * y[i]!
  for (let i = 0; i < gwv.length; i++) rhs += gwv[i]! * W[i]!
  t.ok(Math.abs(lhs - rhs) <= 1e-4 * Math.max(1, Math.abs(lhs)), `${lhs} vs ${rhs}`)
})

t.test('sampleTokens matches the float64 reference', async (t) => {
  const r = rng(14)
  const V = 37
  const rows = 64
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const opts of [
      { temperature: 1, topP: 1, greedy: false },
      { temperature: 0.7, topP: 1, greedy: false },
      { temperature: 0.7, topP: 0.8, greedy: false },
      { temperature: 2, topP: 0.3, greedy: false },
      { temperature: 0.7, topP: 1, greedy: true },
    ]) {
      const x = randomFloats(rows * V, r, 4)
      for (let row = 0; row < rows; row++) x[row * V + 5] = -Infinity // a banned token
      using logits = Tensor.from(x, [rows, V], { dtype })
      const seed = 1234567891234
      const step = 3
      const s = await modelOps.sampleTokens(logits, { ...opts, seed, step })
      const tokens = s.tokens.toArraySync() as Int32Array
      const logp = s.logp.toArraySync() as Float32Array
      const values = logits.toFloat32ArraySync()
      let agree = 0
      let logpError = 0
      for (let row = 0; row < rows; row++) {
        const ref = sampleRow(values.subarray(row * V, (row + 1) * V), { ...opts, u: rowUniform(seed, step, row) })
        if (ref.token === tokens[row]) agree++
        logpError = Math.max(logpError, Math.abs(ref.logp - logp[row]!))
        t.ok(logp[row]! <= 0, 'log-prob <= 0')
        t.not(tokens[row], 5, 'a banned token is never drawn')
      }
      t.equal(agree, rows, `${dtype} ${JSON.stringify(opts)}: every row picks the reference's token`)
      t.ok(logpError < 1e-5, `log-probs within 1e-5 (${logpError})`)
      s.tokens.dispose()
      s.logp.dispose()
    }
  }
})

t.test('sampled log-probs are what tokenLogprobs computes at the same temperature (usable as oldLogp)', async (t) => {
  const r = rng(15)
  const [B, V] = [32, 50]
  using logits = Tensor.from(randomFloats(B * V, r, 3), [B, 1, V])
  const s = modelOps.sampleTokensSync(logits, { temperature: 0.7, topP: 0.9, seed: 5 })
  t.same(s.tokens.shape, [B, 1])
  const lp = ops.tokenLogprobsSync(logits, s.tokens, { temperature: 0.7 })
  t.ok(relativeError(s.logp.toArraySync() as Float32Array, lp.logp.toArraySync() as Float32Array) < 1e-6, 'same log-probs')
  for (const x of [s.tokens, s.logp, lp.logp, lp.lse]) x.dispose()
})

t.test('sampling is reproducible, depends on seed, step and stream, not on the other rows', async (t) => {
  const r = rng(16)
  const V = 20
  const x = randomFloats(8 * V, r)
  using logits = Tensor.from(x, [8, V])
  const draw = (o: modelOps.SampleTokensOptions, l: Tensor = logits) => {
    const s = modelOps.sampleTokensSync(l, o)
    const out = Array.from(s.tokens.toArraySync())
    s.tokens.dispose()
    s.logp.dispose()
    return out
  }
  t.same(draw({ seed: 9 }), draw({ seed: 9 }), 'same seed, same tokens')
  const many = Array.from({ length: 8 }, (_, k) => draw({ seed: k }).join()).join('|')
  t.not(new Set(many.split('|')).size, 1, 'different seeds give different draws')
  const bySteps = new Set(Array.from({ length: 8 }, (_, k) => draw({ seed: 9, step: k }).join()))
  t.ok(bySteps.size > 1, 'steps are separate streams')
  // Row 5 alone, with stream 5, draws what it drew inside the batch.
  using row = Tensor.from(x.subarray(5 * V, 6 * V), [1, V])
  using stream = Tensor.from(new Int32Array([5]), [1])
  t.equal(draw({ seed: 9, streams: stream }, row)[0], draw({ seed: 9 })[5], 'a row draws the same alone or in a batch')
  // A peaked distribution at low temperature is sampled (almost) greedily.
  using peaked = Tensor.from([0, 10, 0], [1, 3])
  t.same(draw({ seed: 1, temperature: 0.1 }, peaked), [1])
})

t.test('gradNorm and clipping match the float64 reference', async (t) => {
  const r = rng(17)
  const a = randomFloats(70000, r)
  const b = randomFloats(33, r, 10)
  using ta = Tensor.from(a, [70000])
  using tb = Tensor.from(b, [3, 11])
  let sq = 0
  for (const v of [...a, ...b]) sq += v * v
  const norm = Math.sqrt(sq)
  const n0 = await modelOps.gradNorm([ta, tb])
  t.ok(Math.abs(n0.norm - norm) <= 1e-9 * norm, 'norm')
  t.equal(n0.coef, 1, 'no clip without maxNorm')
  t.equal(modelOps.gradNormSync([ta, tb], { maxNorm: norm * 2 }).coef, 1, 'no clip under the threshold')
  const clipped = modelOps.gradNormSync([ta, tb], { maxNorm: 1, scale: true })
  t.ok(Math.abs(clipped.coef - 1 / (norm + 1e-6)) < 1e-12, 'coef = maxNorm / (norm + 1e-6)')
  t.ok(Math.abs(modelOps.gradNormSync([ta, tb]).norm - 1) < 1e-5, 'scaled in place to norm 1')
  t.equal(modelOps.gradNormSync([]).norm, 0, 'no tensors: norm 0')
  using bad = Tensor.from([1, NaN], [2])
  const nan = modelOps.gradNormSync([bad], { maxNorm: 1, scale: true })
  t.ok(Number.isNaN(nan.norm), 'a NaN gradient gives a NaN norm')
  t.equal(nan.coef, 1, 'and is not scaled')
})

t.test('adamw matches the float64 reference', async (t) => {
  const r = rng(18)
  const n = 40000
  const p0 = randomFloats(n, r)
  const g0 = randomFloats(n, r, 0.1)
  const m0 = randomFloats(n, r, 0.01)
  const v0 = Float32Array.from(randomFloats(n, r, 0.01), (x) => x * x)
  for (const o of [
    { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1, gradScale: 1 },
    { lr: 3e-3, beta1: 0.8, beta2: 0.99, eps: 1e-5, weightDecay: 0.1, step: 7, gradScale: 0.25 },
  ]) {
    using p = Tensor.from(p0, [n])
    using g = Tensor.from(g0, [n])
    using m = Tensor.from(m0, [n])
    using v = Tensor.from(v0, [n])
    await modelOps.adamw({ params: [p], grads: [g], m: [m], v: [v] }, { ...o, zeroGrad: true })
    const ref = adamwStep(p0, g0, m0, v0, o)
    t.ok(relativeError(p.toArraySync() as Float32Array, ref.p) < 1e-6, `params ${JSON.stringify(o)}`)
    t.ok(relativeError(m.toArraySync() as Float32Array, ref.m) < 1e-6, 'm')
    t.ok(relativeError(v.toArraySync() as Float32Array, ref.v) < 1e-6, 'v')
    t.ok((g.toArraySync() as Float32Array).every((x) => x === 0), 'zeroGrad clears the gradient')
  }
  using p = Tensor.from([1, 2], [2])
  using g = Tensor.from([1, 1], [2])
  using m = Tensor.zeros([2])
  using v = Tensor.zeros([2])
  modelOps.adamwSync({ params: [p], grads: [g], m: [m], v: [v] })
  t.same(Array.from(g.toArraySync()), [1, 1], 'the gradient is kept without zeroGrad')
  t.ok(Math.abs((p.toArraySync() as Float32Array)[0]! - (1 - 1e-3)) < 1e-6, 'defaults: lr 1e-3, step 1 moves by lr')
})

t.test('zeroTensors zeroes any dtype', async (t) => {
  using a = Tensor.from([1, 2, 3], [3])
  using b = Tensor.from(new Int32Array([4, 5]), [2])
  using c = Tensor.from(new Uint8Array([1]), [1])
  await modelOps.zeroTensors([a, b])
  modelOps.zeroTensorsSync([c])
  t.same([...a.toArraySync(), ...b.toArraySync(), ...c.toArraySync()], [0, 0, 0, 0, 0, 0])
})

t.test('results do not depend on the thread count', async (t) => {
  // The same computation in a child process with one worker thread gives the same bits.
  const script = fileURLToPath(new URL('./thread-count-child.ts', import.meta.url))
  const run = (threads: string) =>
    spawnSync(process.execPath, [...process.execArgv, script], { env: { ...process.env, GRPO_NUM_THREADS: threads }, encoding: 'utf8' })
  const one = run('1')
  const two = run('2')
  t.equal(one.status, 0, one.stderr)
  t.equal(two.status, 0, two.stderr)
  t.equal(one.stdout.trim(), two.stdout.trim(), 'same digest with 1 and 2 threads')
})

t.test('bad inputs', async (t) => {
  using w = Tensor.from(new Float32Array(12), [3, 4])
  using ids = Tensor.from(new Int32Array([0, 1, -1, 2]), [2, 2])
  using bad = Tensor.from(new Int32Array([0, 3]), [1, 2])
  using neg = Tensor.from(new Int32Array([-2, 0]), [1, 2])
  using g = Tensor.from(new Float32Array(8), [2, 4])
  using f16 = Tensor.from([1, 2], [2], { dtype: 'f16' })
  const E = (fn: () => unknown, code: string, pattern: RegExp, label: string) => expectError(t, fn, code, pattern, label)

  E(() => modelOps.embeddingBagForwardSync(w, bad), 'ERR_GRPO_INVALID_ARG', /Expected a feature id in \[0, 3\) or -1 \(padding\) for ids\[0, 1\] but received 3/, 'id past H')
  E(() => modelOps.embeddingBagForwardSync(w, neg), 'ERR_GRPO_INVALID_ARG', /for ids\[0, 0\] but received -2/, 'id -2')
  E(() => modelOps.embeddingBagBackwardSync(Tensor.from(new Float32Array(4), [1, 4]), bad, w), 'ERR_GRPO_INVALID_ARG', /feature id/, 'backward id past H')
  E(() => modelOps.embeddingBagForwardSync(w, g as never), 'ERR_GRPO_DTYPE', /Expected a i32 tensor for ids but received .*a f32 tensor/, 'ids dtype')
  E(() => modelOps.embeddingBagForwardSync(ids, ids), 'ERR_GRPO_DTYPE', /for weight/, 'weight dtype')
  E(() => modelOps.embeddingBagForwardSync(Tensor.from([1], [1]), ids), 'ERR_GRPO_SHAPE', /non-empty \[H, V\] table for weight/, 'weight rank')
  E(() => modelOps.embeddingBagForwardSync(w, Tensor.from(new Int32Array([0]), [1])), 'ERR_GRPO_SHAPE', /rank >= 2/, 'ids rank')
  E(() => modelOps.embeddingBagForwardSync(w, ids, { bias: Tensor.from([1], [1]) }), 'ERR_GRPO_SHAPE', /shape \[4\] for bias/, 'bias shape')
  E(() => modelOps.embeddingBagForwardSync(w, ids, { bias: f16 }), 'ERR_GRPO_DTYPE', /for bias/, 'bias dtype')
  E(() => modelOps.embeddingBagForwardSync(w, ids, 'x' as never), 'ERR_GRPO_INVALID_ARG', /options object/, 'options')
  E(() => modelOps.embeddingBagForwardSync('w' as never, ids), 'ERR_GRPO_INVALID_ARG', /Expected a Tensor for weight but received "w"/, 'not a tensor')
  E(() => modelOps.embeddingBagBackwardSync(Tensor.from(new Float32Array(3), [1, 3]), ids, w), 'ERR_GRPO_SHAPE', /shape \[2, 4\] for gradLogits/, 'grad shape')
  E(() => modelOps.embeddingBagBackwardSync(g, ids, w, { gradBias: Tensor.from([1], [1]) }), 'ERR_GRPO_SHAPE', /for gradBias/, 'gradBias shape')
  E(() => modelOps.embeddingBagBackwardSync(g, ids, w, { gradBias: f16 }), 'ERR_GRPO_DTYPE', /for gradBias/, 'gradBias dtype')
  E(() => modelOps.embeddingBagBackwardSync(g, ids, w, { mask: Tensor.from(new Uint8Array(3), [3]) }), 'ERR_GRPO_SHAPE', /for mask/, 'mask shape')
  E(() => modelOps.embeddingBagBackwardSync(g, ids, w, { mask: Tensor.from([1, 1], [2]) }), 'ERR_GRPO_DTYPE', /for mask/, 'mask dtype')
  E(() => modelOps.embeddingBagBackwardSync(g, ids, w, { mask: Tensor.from(new Uint8Array([1, 2]), [2]) }), 'ERR_GRPO_INVALID_ARG', /Expected 0 or 1 for mask\[1\] but received 2/, 'mask value')

  using logits = Tensor.from([1, 2, 3], [1, 3])
  E(() => modelOps.sampleTokensSync(logits, { temperature: 0 }), 'ERR_GRPO_INVALID_ARG', /number in \[1e-6, 1e6\] for temperature but received 0/, 'temperature')
  E(() => modelOps.sampleTokensSync(logits, { topP: 0 }), 'ERR_GRPO_INVALID_ARG', /\(0, 1\] for topP/, 'topP')
  E(() => modelOps.sampleTokensSync(logits, { seed: -1 }), 'ERR_GRPO_INVALID_ARG', /integer in \[0, 2\^53\) for seed but received -1/, 'seed')
  E(() => modelOps.sampleTokensSync(logits, { step: 1.5 }), 'ERR_GRPO_INVALID_ARG', /for step/, 'step')
  E(() => modelOps.sampleTokensSync(logits, { greedy: 1 as never }), 'ERR_GRPO_INVALID_ARG', /a boolean for greedy/, 'greedy')
  E(() => modelOps.sampleTokensSync(logits, { streams: Tensor.from(new Int32Array(2), [2]) }), 'ERR_GRPO_SHAPE', /for streams/, 'streams shape')
  E(() => modelOps.sampleTokensSync(logits, { streams: Tensor.from([1], [1]) }), 'ERR_GRPO_DTYPE', /for streams/, 'streams dtype')
  E(() => modelOps.sampleTokensSync(ids), 'ERR_GRPO_DTYPE', /for logits/, 'logits dtype')
  E(() => modelOps.sampleTokensSync(Tensor.from(new Float32Array(0), [2, 0])), 'ERR_GRPO_SHAPE', /V >= 1/, 'empty vocabulary')
  E(() => modelOps.sampleTokensSync(Tensor.from([1, NaN], [1, 2])), 'ERR_GRPO_NONFINITE', /Expected finite logits \(or -Infinity\) for logits row\[0\] but received NaN/, 'NaN logit')
  E(() => modelOps.sampleTokensSync(Tensor.from([1, Infinity], [1, 2])), 'ERR_GRPO_NONFINITE', /NaN or \+Infinity/, '+Infinity logit')
  E(() => modelOps.sampleTokensSync(Tensor.from([-Infinity, -Infinity], [1, 2])), 'ERR_GRPO_NONFINITE', /at least one finite logit/, 'all banned')

  using one = Tensor.from([1, 2], [2])
  using two = Tensor.from([1, 2, 3], [3])
  E(() => modelOps.gradNormSync([one], { maxNorm: 0 }), 'ERR_GRPO_INVALID_ARG', /finite number > 0 for maxNorm but received 0/, 'maxNorm')
  E(() => modelOps.gradNormSync([ids]), 'ERR_GRPO_DTYPE', /for grads\[0\]/, 'grad dtype')
  E(() => modelOps.gradNormSync('x' as never), 'ERR_GRPO_INVALID_ARG', /array of Tensors for grads/, 'grads list')
  E(() => modelOps.gradNormSync([one], { scale: 'yes' as never }), 'ERR_GRPO_INVALID_ARG', /boolean for scale/, 'scale')
  const state = { params: [one], grads: [one], m: [one], v: [one] }
  E(() => modelOps.adamwSync({ ...state, grads: [two] }), 'ERR_GRPO_SHAPE', /shape \[2\] for grads\[0\]/, 'grad shape')
  E(() => modelOps.adamwSync({ ...state, m: [] }), 'ERR_GRPO_SHAPE', /1 tensors \(one per parameter\) for m but received .*0 tensors/, 'm count')
  E(() => modelOps.adamwSync({ ...state, v: [ids] }), 'ERR_GRPO_DTYPE', /for v\[0\]/, 'v dtype')
  E(() => modelOps.adamwSync({ ...state, params: [ids] }), 'ERR_GRPO_DTYPE', /for params\[0\]/, 'param dtype')
  E(() => modelOps.adamwSync(state, { lr: -1 }), 'ERR_GRPO_INVALID_ARG', /for lr/, 'lr')
  E(() => modelOps.adamwSync(state, { beta1: 1 }), 'ERR_GRPO_INVALID_ARG', /\[0, 1\) for beta1/, 'beta1')
  E(() => modelOps.adamwSync(state, { beta2: -0.1 }), 'ERR_GRPO_INVALID_ARG', /for beta2/, 'beta2')
  E(() => modelOps.adamwSync(state, { eps: 0 }), 'ERR_GRPO_INVALID_ARG', /for eps/, 'eps')
  E(() => modelOps.adamwSync(state, { weightDecay: NaN }), 'ERR_GRPO_INVALID_ARG', /for weightDecay but received NaN/, 'weightDecay')
  E(() => modelOps.adamwSync(state, { gradScale: -1 }), 'ERR_GRPO_INVALID_ARG', /for gradScale/, 'gradScale')
  E(() => modelOps.adamwSync(state, { step: 0 }), 'ERR_GRPO_INVALID_ARG', /integer >= 1 for step but received 0/, 'step')
  E(() => modelOps.adamwSync(state, { zeroGrad: 1 as never }), 'ERR_GRPO_INVALID_ARG', /boolean for zeroGrad/, 'zeroGrad')
  E(() => modelOps.zeroTensorsSync([1 as never]), 'ERR_GRPO_INVALID_ARG', /Tensor for tensors\[0\]/, 'zero list')

  const disposed = Tensor.from([1], [1])
  disposed.dispose()
  E(() => modelOps.zeroTensorsSync([disposed]), 'ERR_GRPO_DISPOSED', /disposed/, 'disposed tensor')
  await t.rejects(modelOps.sampleTokens(Tensor.from([NaN], [1, 1])), { code: 'ERR_GRPO_NONFINITE' }, 'async errors reject')
  await t.rejects(modelOps.embeddingBagForward(w, bad), { code: 'ERR_GRPO_INVALID_ARG' }, 'async kernel errors reject')
})

t.test('cuda tensors without a CUDA device: ERR_GRPO_NO_CUDA', async (t) => {
  let cuda: Tensor
  try {
    cuda = Tensor.from([1, 2], [1, 2], { device: 'cuda' })
  } catch (e) {
    t.equal((e as GrpoError).code, 'ERR_GRPO_NO_CUDA', 'cannot even allocate')
    return
  }
  t.comment('a CUDA device is present: the op runs')
  const s = modelOps.sampleTokensSync(cuda, { greedy: true })
  t.same(Array.from(s.tokens.toArraySync()), [1])
  for (const x of [cuda, s.tokens, s.logp]) x.dispose()
})

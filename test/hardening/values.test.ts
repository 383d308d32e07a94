/**
 * Silent wrong answers that are now errors (issue 18 item 5) and the chunked Tensor.from / Tensor.fromAsync
 * (issue 18 "What to build"): temperatures outside [1e-6, 1e6] (NaN on the CPU, a finite value on SIMT before),
 * values that overflow the dtype (1e39 stored as Infinity), array holes (stored as NaN); large inputs converted
 * chunk by chunk without a full JavaScript copy; fromAsync keeping the event loop free.
 */
import t from 'tap'
import { Tensor, memoryInfo, modelOps, ops } from '../../lib/index.js'
import { native } from '../../lib/native.js'

const INVALID = { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG' }

t.test('temperatures below 1e-6 or above 1e6 are refused by every op; the binding reached directly does not crash', async (t) => {
  using logits = Tensor.from([1, 2, 3, 4, 5, 6], [1, 2, 3])
  using targets = Tensor.from(Int32Array.of(0, 2), [1, 2])
  using advantages = Tensor.from([1], [1])
  for (const temperature of [1e-40, 1e-38, 1e-7, 2e6, 3e38, 1e39, 3e-323]) {
    t.throws(() => ops.tokenLogprobsSync(logits, targets, { temperature }), { ...INVALID, message: /number in \[1e-6, 1e6\] for temperature/ }, `tokenLogprobs T=${temperature}`)
    t.throws(() => ops.grpoLossSync({ logits, targets, advantages }, { temperature }), INVALID, `grpoLoss T=${temperature}`)
    t.throws(() => modelOps.sampleTokensSync(logits, { temperature }), INVALID, `sampleTokens T=${temperature}`)
    // The rule lives in TypeScript (lib/options.ts); the binding reached directly takes the value as it is, and
    // must still never crash: at T = 3e-323 (0 in f32) every probability is NaN, and the sampler used to read
    // before its (empty) nucleus. Now it returns the argmax.
    for (const call of [
      () => native().tokenLogprobs(logits.native, targets.native, { temperature }, false),
      () => native().sampleTokens(logits.native, { temperature, topP: 1e-40 }, false),
    ]) {
      try {
        const r = call() as unknown as Record<string, { dispose(): void }>
        for (const v of Object.values(r)) v.dispose()
      } catch (error) {
        t.equal((error as { name?: string }).name, 'GrpoError', `T=${temperature}: a GrpoError if anything`)
      }
    }
  }
  // The ends of the range give the float64 answer.
  for (const temperature of [1e-6, 1e6]) {
    const r = ops.tokenLogprobsSync(logits, targets, { temperature })
    const logp = r.logp.toArraySync()
    const want = [0, 1].map((row) => {
      const x = [1, 2, 3].map((v) => (v + 3 * row) / temperature)
      const max = Math.max(...x)
      const lse = max + Math.log(x.reduce((a, v) => a + Math.exp(v - max), 0))
      return x[row === 0 ? 0 : 2]! - lse
    })
    for (let i = 0; i < 2; i++) t.ok(Math.abs(logp[i]! - want[i]!) <= 1e-5 * Math.max(1, Math.abs(want[i]!)), `T=${temperature}: logp ${logp[i]} vs ${want[i]}`)
    r.logp.dispose()
    r.lse.dispose()
  }
})

t.test('a value that overflows the dtype is an error, not a silent Infinity', async (t) => {
  t.throws(() => Tensor.from([1, 1e39], [2]), { ...INVALID, message: /number within the f32 range .* for data\[1\] of a f32 tensor but received 1e\+39/ })
  t.throws(() => Tensor.from([-1e39], [1]), INVALID)
  t.throws(() => Tensor.from(Float64Array.of(4e38), [1], { dtype: 'f32' }), INVALID)
  t.throws(() => Tensor.from([3.4e38], [1], { dtype: 'bf16' }), { ...INVALID, message: /bf16 range/ })
  t.throws(() => Tensor.from([70000], [1], { dtype: 'f16' }), { ...INVALID, message: /f16 range/ })
  t.throws(() => Tensor.from(Float32Array.of(1e5), [1], { dtype: 'f16' }), INVALID)
  // Values at the edge, and infinities or NaN given as such, are kept.
  using ok = Tensor.from([3.4028234e38, -Infinity, NaN, Infinity], [4])
  const v = ok.toArraySync()
  t.same([v[0] > 3e38, v[1], Number.isNaN(v[2]), v[3]], [true, -Infinity, true, Infinity])
  using half = Tensor.from([65504, -Infinity], [2], { dtype: 'f16' })
  t.same(Array.from(half.toFloat32ArraySync()), [65504, -Infinity])
})

t.test('array holes and non-numbers are errors, not NaN', async (t) => {
  // eslint-disable-next-line no-sparse-arrays
  t.throws(() => Tensor.from([1, , 3], [3]), { ...INVALID, message: /a number for data\[1\] but received undefined/ })
  t.throws(() => Tensor.from(new Array(4), [4]), INVALID)
  t.throws(() => Tensor.from([1, 2.5], [2], { dtype: 'i32' }), { ...INVALID, message: /32-bit integer for data\[1\]/ })
  const sparse: number[] = []
  sparse[5] = 1
  t.throws(() => Tensor.from(sparse, [6], { dtype: 'bf16' }), INVALID)
})

t.test('Tensor.from converts large arrays chunk by chunk; a bad value far in leaves nothing behind', async (t) => {
  const n = 300_000
  const values = Array.from({ length: n }, (_, i) => (i % 1000) / 7)
  using x = Tensor.from(values, [n])
  const back = x.toArraySync()
  t.equal(back.length, n)
  t.ok(values.every((v, i) => back[i] === Math.fround(v)), 'every value, in order')
  using b = Tensor.from(values, [n], { dtype: 'bf16' })
  t.equal(b.toFloat32ArraySync()[299_999], Math.fround(Number(b.toFloat32ArraySync()[299_999])))
  using ints = Tensor.from(Array.from({ length: n }, (_, i) => i), [n], { dtype: 'i32' })
  t.equal(ints.toArraySync()[n - 1], n - 1)
  const before = memoryInfo().cpu.tensors
  const bad = values.slice()
  ;(bad as unknown[])[250_000] = 'x'
  t.throws(() => Tensor.from(bad, [n]), { ...INVALID, message: /data\[250000\]/ })
  t.equal(memoryInfo().cpu.tensors, before, 'the half-filled tensor was freed')
  t.throws(() => Tensor.zeros([2 ** 45]), { code: 'ERR_GRPO_OOM', message: /at most \d+ bytes \(this machine's memory\)/ })
})

t.test('Tensor.fromAsync: the same tensor as Tensor.from, without holding the event loop', async (t) => {
  const n = 2_000_000
  const values = Array.from({ length: n }, (_, i) => Math.sin(i))
  // Count the event loop's turns (an immediate that queues itself runs once per turn), not 1 ms timer ticks: a
  // fast machine converts the 31 chunks of 2^16 values in well under 10 ms, too few ticks to tell from a
  // conversion that holds the loop, whereas the turns do not depend on the speed or the load: a conversion that
  // holds the loop lets none run, one that yields between its chunks lets at least one run per chunk.
  let turns = 0
  let counting = true
  const turn = () => {
    turns++
    if (counting) setImmediate(turn)
  }
  setImmediate(turn)
  const start = performance.now()
  using x = await Tensor.fromAsync(values, [1000, 2000])
  const ms = performance.now() - start
  counting = false
  t.same(x.shape, [1000, 2000])
  const back = x.toArraySync()
  t.ok(values.every((v, i) => back[i] === Math.fround(v)), 'every value')
  t.ok(turns >= 16, `the event loop turned ${turns} times during ${ms.toFixed(0)} ms of conversion (31 chunks)`)
  using direct = await Tensor.fromAsync(Float32Array.from(values), [n])
  t.equal(direct.toArraySync()[n - 1], Math.fround(values[n - 1]!))
  const before = memoryInfo().cpu.tensors
  await t.rejects(Tensor.fromAsync([1, 2, 'x' as never], [3]), INVALID)
  await t.rejects(Tensor.fromAsync([1, 2], [3]), { code: 'ERR_GRPO_SHAPE' })
  t.equal(memoryInfo().cpu.tensors, before)
})

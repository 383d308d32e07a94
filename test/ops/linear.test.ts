/**
 * modelOps.linear / linearBackward against the float64 reference (test/reference/linear-reference.ts): f32 and
 * bf16, with and without bias, f32 or bf16 outputs, gradients accumulated into f32 and bf16 tensors; the GEMM's
 * edge shapes (1, 7, 17, 4097; K not a multiple of any tile); finite differences of the backward; bad inputs.
 *
 * Tolerance per element: a float32 sum of `depth` terms in any order is within (depth + 1)·2⁻²⁴·Σ|terms| of the
 * exact sum, so |got − want| ≤ (depth + 4)·2⁻²⁴·mass (+ 2⁻⁸·|want| when the result is rounded to bf16). Inputs are
 * the values the tensors hold, so that bound is all a correct kernel may differ by.
 *
 * GRPO_TEST_SCALE < 1 (the simt run) trims the shape list; GRPO_TEST_HUGE=1 (`npm run test:full`) adds a
 * bigger shape and N·K past 2³¹ on the CPU (about 8 GiB of memory).
 */
import t, { type Test } from 'tap'
import { GrpoError, Tensor, backend, modelOps } from '../../lib/index.js'
import { linearForward, linearGradBias, linearGradInput, linearGradWeight, type Product } from '../reference/linear-reference.js'
import { TEST_SCALE, rngFor, storageOf, widen, type Rng } from '../helpers/random.js'
import { DEVICE, Scope, begin, checkNoLeaks } from '../helpers/setup.js'

type DT = 'f32' | 'bf16'
const start = begin(t)
const simt = backend.info().active === 'simt'
t.comment(`gemm: ${JSON.stringify(backend.info().cpu.gemm)}; cuda gemm: ${JSON.stringify(backend.info().cuda.gemm)}`)

function values(rng: Rng, n: number, dtype: DT, scale = 1): { stored: Float32Array | Uint16Array; exact: Float64Array } {
  const stored = storageOf(dtype, Array.from({ length: n }, () => rng.range(-1, 1) * scale))
  return { stored, exact: widen(dtype, stored) }
}

async function read(tensor: Tensor): Promise<Float64Array> {
  const data = await tensor.toArray()
  return tensor.dtype === 'f32' ? Float64Array.from(data as Float32Array) : widen('bf16', data as Uint16Array)
}

// Every element within the bound; reports the worst one.
function within(t: Test, got: Float64Array, want: Product, depth: number, bf16Out: boolean, what: string, base?: Float64Array): boolean {
  let worst = -1
  let worstRatio = 0
  for (let i = 0; i < want.value.length; i++) {
    const w = want.value[i]! + (base ? base[i]! : 0)
    const mass = want.mass[i]! + (base ? Math.abs(base[i]!) : 0)
    const bound = (depth + 4) * 2 ** -24 * mass + (bf16Out ? 2 ** -8 * Math.abs(w) : 0) + 1e-30
    const err = Math.abs(got[i]! - w)
    const ratio = Number.isNaN(got[i]!) ? Infinity : err / bound
    if (ratio > worstRatio) {
      worstRatio = ratio
      worst = i
    }
  }
  const ok = got.length === want.value.length && worstRatio <= 1
  t.ok(ok, `${what}: ${got.length} values within the f32 summation bound` + (ok ? '' : ` (worst [${worst}]: got ${got[worst]}, want ${want.value[worst]! + (base ? base[worst]! : 0)}, ${worstRatio.toFixed(2)}x the bound)`))
  return ok
}

interface Case {
  N: number
  K: number
  M: number
  lead?: number[] // x's leading shape (product N)
}

async function checkCase(t: Test, c: Case, dtype: DT, opts: { bias?: DT; outDtype?: DT; gradDtype?: DT; async: boolean }): Promise<void> {
  const { N, K, M } = c
  const rng = rngFor(`linear ${N}x${K}x${M} ${dtype} ${JSON.stringify(opts)}`)
  using s = new Scope()
  const x = values(rng, N * K, dtype)
  const w = values(rng, M * K, dtype)
  const dy = values(rng, N * M, dtype)
  const b = opts.bias ? values(rng, M, opts.bias) : undefined
  const lead = c.lead ?? [N]
  const xT = s.from(x.stored, [...lead, K], dtype)
  const wT = s.from(w.stored, [M, K], dtype)
  const bT = b ? s.from(b.stored, [M], opts.bias) : undefined
  const fwdOpts = { bias: bT, outDtype: opts.outDtype }
  const y = s.add(opts.async ? await modelOps.linear(xT, wT, fwdOpts) : modelOps.linearSync(xT, wT, fwdOpts))
  const outDtype = opts.outDtype ?? dtype
  t.equal(y.dtype, outDtype, 'output dtype')
  t.same(y.shape, [...lead, M], 'output shape')
  within(t, await read(y), linearForward(x.exact, w.exact, b?.exact, N, K, M), K, outDtype === 'bf16', 'y = x·Wᵀ + b')

  const gd = opts.gradDtype ?? 'f32'
  const gw0 = values(rng, M * K, gd, 0.5)
  const gb0 = values(rng, M, gd, 0.5)
  const gW = s.from(gw0.stored, [M, K], gd)
  const gB = s.from(gb0.stored, [M], gd)
  const dyT = s.from(dy.stored, [...lead, M], dtype)
  const bwdOpts = { gradWeight: gW, gradBias: gB }
  const dx = s.add(opts.async ? await modelOps.linearBackward(dyT, xT, wT, bwdOpts) : modelOps.linearBackwardSync(dyT, xT, wT, bwdOpts))!
  t.equal(dx.dtype, dtype, 'dx dtype')
  t.same(dx.shape, [...lead, K], 'dx shape')
  within(t, await read(dx), linearGradInput(dy.exact, w.exact, N, K, M), M, dtype === 'bf16', 'dx = dy·W')
  within(t, await read(gW), linearGradWeight(dy.exact, x.exact, N, K, M), N, gd === 'bf16', 'gradWeight += dyᵀ·x', gw0.exact)
  const db = linearGradBias(dy.exact, N, M)
  // The bias sum is accumulated in double: tighter than the f32 bound.
  within(t, await read(gB), db, 1, gd === 'bf16', 'gradBias += Σ dy', gb0.exact)
}

// ---- shapes -------------------------------------------------------------------------------------------------
const shapes: Case[] = [
  { N: 1, K: 1, M: 1 },
  { N: 7, K: 17, M: 1 },
  { N: 1, K: 7, M: 17 },
  { N: 17, K: 1, M: 7 },
  { N: 33, K: 100, M: 45, lead: [3, 11] },
  { N: 64, K: 64, M: 64 },
  { N: 130, K: 257, M: 70 }, // past one tile in every direction, K not a multiple of 8, 16, 32 or 256
  { N: 5, K: 4097, M: 9 },
  { N: 4097, K: 9, M: 5 },
  { N: 6, K: 11, M: 4097 },
  { N: 200, K: 520, M: 300 },
  // AMX reads whole 32-row panels of a row-major A in place (gemm.cc's directA): 97 = 3 whole panels + 1 packed
  // row; K = 544 = one 512-deep block + one 32-deep block that starts at column 512 of each row
  { N: 97, K: 544, M: 40 },
  { N: 32, K: 32, M: 32 },
]
const bigShapes: Case[] = [{ N: 300, K: 1030, M: 513 }]
const heavy = process.env.GRPO_TEST_HUGE === '1' || TEST_SCALE > 1
const active = TEST_SCALE < 1 ? shapes.filter((c) => c.N * c.K * c.M <= 2_000_000 || c.K === 4097) : heavy ? [...shapes, ...bigShapes] : shapes

t.test('forward and backward against the float64 reference', async (t) => {
  for (const c of active) {
    for (const dtype of ['f32', 'bf16'] as const) {
      await t.test(`${c.N}x${c.K}x${c.M} ${dtype}`, async (t) => {
        await checkCase(t, c, dtype, { async: true })
        await checkCase(t, c, dtype, { bias: 'f32', outDtype: 'f32', gradDtype: dtype, async: false })
        if (dtype === 'bf16') await checkCase(t, c, dtype, { bias: 'bf16', async: true })
      })
    }
  }
})

t.test('gradInput: false returns null; leaving a gradient out skips it', async (t) => {
  using s = new Scope()
  const x = s.f32([1, 2, 3, 4, 5, 6], [2, 3])
  const w = s.f32([1, 0, -1, 2, 1, 0], [2, 3])
  const dy = s.f32([1, -1, 0.5, 2], [2, 2])
  const gW = s.f32(new Float32Array(6), [2, 3])
  t.equal(await modelOps.linearBackward(dy, x, w, { gradWeight: gW, gradInput: false }), null)
  // dW = dyᵀ x = [[1*1 + .5*4, 1*2 + .5*5, 1*3 + .5*6], [-1*1 + 2*4, -1*2 + 2*5, -1*3 + 2*6]]
  t.same(Array.from((await gW.toArray()) as Float32Array), [3, 4.5, 6, 7, 8, 9])
  t.equal(modelOps.linearBackwardSync(dy, x, w, { gradInput: false }), null, 'nothing asked: nothing done')
  const dx = s.add(modelOps.linearBackwardSync(dy, x, w))!
  t.same(Array.from((await dx.toArray()) as Float32Array), [1 - 2, -1, -1, 0.5 + 4, 2, -0.5])
})

t.test('finite differences of L = Σ G ⊙ linear(x, W, b) match the backward', async (t) => {
  for (const dtype of ['f32', 'bf16'] as const) {
    const rng = rngFor(`fd ${dtype}`)
    const N = 5, K = 19, M = 7
    // Multiples of 1/16 in [-2, 2] with h = 1/16: x ± h is exact in bf16 too, and L is linear in each input,
    // so the central difference is exact up to the forward's own f32 rounding.
    const grid = (n: number) => Array.from({ length: n }, () => rng.intIn(-32, 32) / 16)
    const h = 1 / 16
    const xv = grid(N * K), wv = grid(M * K), bv = grid(M), G = grid(N * M)
    using s = new Scope()
    const loss = (xa: number[], wa: number[], ba: number[]): number => {
      using inner = new Scope()
      const y = inner.add(modelOps.linearSync(inner.from(storageOf(dtype, xa), [N, K], dtype), inner.from(storageOf(dtype, wa), [M, K], dtype), { bias: inner.f32(ba, [M]), outDtype: 'f32' }))
      const yv = y.toArraySync() as Float32Array
      let l = 0
      for (let i = 0; i < yv.length; i++) l += G[i]! * yv[i]!
      return l
    }
    const gW = s.f32(new Float32Array(M * K), [M, K])
    const gB = s.f32(new Float32Array(M), [M])
    const dx = s.add(modelOps.linearBackwardSync(s.from(storageOf(dtype, G), [N, M], dtype), s.from(storageOf(dtype, xv), [N, K], dtype), s.from(storageOf(dtype, wv), [M, K], dtype), { gradWeight: gW, gradBias: gB, }))!
    const analytic = { x: await read(dx), w: await read(gW), b: await read(gB) }
    let worst = 0
    for (const [name, arr] of [['x', xv], ['w', wv], ['b', bv]] as const) {
      for (let trial = 0; trial < 6; trial++) {
        const i = rng.int(arr.length)
        const plus = [...arr], minus = [...arr]
        plus[i]! += h
        minus[i]! -= h
        const args = (v: number[]) => (name === 'x' ? [v, wv, bv] : name === 'w' ? [xv, v, bv] : [xv, wv, v]) as [number[], number[], number[]]
        const fd = (loss(...args(plus)) - loss(...args(minus))) / (2 * h)
        const got = analytic[name][i]!
        // dx comes back in the input dtype: half a bf16 ulp of rounding; the f32 gradients are exact here.
        const tol = name === 'x' && dtype === 'bf16' ? 2 ** -8 : 1e-4
        worst = Math.max(worst, Math.abs(fd - got) / Math.max(1, Math.abs(fd)) / tol)
      }
    }
    t.ok(worst <= 1, `${dtype}: worst difference ${worst.toFixed(3)} of the tolerance (1e-4; 2^-8 for a bf16 dx) over 18 coordinates of x, W and b`)
  }
})

t.test('bad inputs are GrpoErrors with stable codes', async (t) => {
  using s = new Scope()
  const x = s.f32(new Float32Array(6), [2, 3])
  const w = s.f32(new Float32Array(12), [4, 3])
  const xb = s.from(new Uint16Array(6), [2, 3], 'bf16')
  const expect = (fn: () => unknown, code: string, pattern: RegExp, label: string) => {
    try {
      fn()
      t.fail(`${label}: no error`)
    } catch (e) {
      t.ok(e instanceof GrpoError, `${label}: GrpoError`)
      t.equal((e as GrpoError).code, code, `${label}: ${code}`)
      t.match((e as Error).message, pattern, `${label}: message`)
    }
  }
  expect(() => modelOps.linearSync(x, s.f32(new Float32Array(8), [4, 2])), 'ERR_GRPO_SHAPE', /Expected shape \[M, 3\]/, 'K mismatch')
  expect(() => modelOps.linearSync(x, s.f32(new Float32Array(12), [12])), 'ERR_GRPO_SHAPE', /weight/, 'weight rank')
  expect(() => modelOps.linearSync(xb, w), 'ERR_GRPO_DTYPE', /Expected a bf16 tensor for weight but received .*f32/, 'mixed dtypes')
  expect(() => modelOps.linearSync(s.i32([1, 2], [1, 2]), w), 'ERR_GRPO_DTYPE', /for x/, 'integer input')
  expect(() => modelOps.linearSync(s.f32([1], []), w), 'ERR_GRPO_SHAPE', /rank >= 1/, 'scalar input')
  expect(() => modelOps.linearSync(x, w, { bias: s.f32([1, 2, 3], [3]) }), 'ERR_GRPO_SHAPE', /bias/, 'bias shape')
  expect(() => modelOps.linearSync(x, w, { outDtype: 'f16' as 'f32' }), 'ERR_GRPO_INVALID_ARG', /outDtype/, 'outDtype')
  expect(() => modelOps.linearSync(x, w, 7 as unknown as object), 'ERR_GRPO_INVALID_ARG', /options/, 'options type')
  expect(() => modelOps.linearSync(x, {} as Tensor), 'ERR_GRPO_INVALID_ARG', /Expected a Tensor for weight/, 'not a tensor')
  const dy = s.f32(new Float32Array(8), [2, 4])
  expect(() => modelOps.linearBackwardSync(s.f32(new Float32Array(6), [2, 3]), x, w), 'ERR_GRPO_SHAPE', /gradOutput/, 'dy shape')
  expect(() => modelOps.linearBackwardSync(s.from(new Uint16Array(8), [2, 4], 'bf16'), x, w), 'ERR_GRPO_DTYPE', /gradOutput/, 'dy dtype')
  expect(() => modelOps.linearBackwardSync(dy, x, w, { gradWeight: s.f32(new Float32Array(12), [3, 4]) }), 'ERR_GRPO_SHAPE', /gradWeight/, 'gradWeight shape')
  expect(() => modelOps.linearBackwardSync(dy, x, w, { gradBias: s.from(new Uint16Array(4), [4], 'f16') }), 'ERR_GRPO_DTYPE', /gradBias/, 'gradBias dtype')
  expect(() => modelOps.linearBackwardSync(dy, x, w, { gradWeight: w }), 'ERR_GRPO_INVALID_ARG', /distinct from the inputs/, 'gradWeight aliasing the weight')
  expect(() => modelOps.linearBackwardSync(dy, x, w, { gradInput: 1 as unknown as boolean }), 'ERR_GRPO_INVALID_ARG', /gradInput/, 'gradInput type')
  const disposed = Tensor.from(new Float32Array(6), [2, 3], { device: DEVICE })
  disposed.dispose()
  expect(() => modelOps.linearSync(disposed, w), 'ERR_GRPO_DISPOSED', /disposed/, 'disposed input')
  await t.rejects(modelOps.linear(x, s.f32(new Float32Array(2), [1, 2])), { code: 'ERR_GRPO_SHAPE' }, 'the async form rejects')
})

t.test('a depth past the packed-B budget: the product in several depth blocks with partial sums (f32, cpu)', { skip: simt || DEVICE !== 'cpu' ? 'a cpu GEMM path' : TEST_SCALE < 1 ? 'GRPO_TEST_SCALE < 1 (the per-ISA reruns: their f32 panels are 16 wide, under the budget)' : false }, async (t) => {
  // gemm.cc holds at most 32 MiB of packed B: K · 32 columns · 4 bytes past it (K > 262,144) splits the depth
  // into blocks whose partial sums live in one f32 array; M = 33 is two 32-column strips, B panels packed on demand.
  await checkCase(t, { N: 3, K: 263_000, M: 33 }, 'f32', { async: false })
})

t.test('concurrent async calls of several shapes give the sync results bit for bit', async (t) => {
  // Calls from the libuv threads at once (each thread's cached packed-B buffer, the pool serializing their
  // parallel parts): the same tiles are summed in the same order whichever thread runs them.
  using s = new Scope()
  const rng = rngFor('linear concurrent')
  const dims: [number, number, number][] = [[1, 7, 17], [130, 257, 70], [64, 512, 300], [17, 33, 4097], [300, 96, 40]]
  for (const dtype of ['f32', 'bf16'] as const) {
    const inputs = dims.map(([N, K, M]) => ({
      x: s.from(values(rng, N * K, dtype).stored, [N, K], dtype),
      w: s.from(values(rng, M * K, dtype).stored, [M, K], dtype),
      dy: s.from(values(rng, N * M, dtype).stored, [N, M], dtype),
    }))
    const sync = inputs.map(({ x, w, dy }) => [s.add(modelOps.linearSync(x, w)), s.add(modelOps.linearBackwardSync(dy, x, w)!)])
    const all = await Promise.all(inputs.flatMap(({ x, w, dy }) => [modelOps.linear(x, w), modelOps.linearBackward(dy, x, w).then((r) => r!)]))
    for (let i = 0; i < all.length; i++) {
      const got = s.add(all[i]!)
      const want = sync[i >> 1]![i & 1]!
      const [a, b] = [await got.toArray(), await want.toArray()]
      let differ = a.length === b.length ? 0 : 1
      for (let j = 0; j < a.length; j++) if (!Object.is(a[j], b[j])) differ++
      t.equal(differ, 0, `${dtype} ${dims[i >> 1]!.join('x')} ${i & 1 ? 'dx' : 'y'}: ${a.length} values equal`)
    }
  }
})

t.test('N·K past 2^31 elements (GRPO_TEST_HUGE=1, cpu)', { skip: process.env.GRPO_TEST_HUGE !== '1' || simt || DEVICE !== 'cpu' ? 'set GRPO_TEST_HUGE=1 (about 8 GiB)' : false }, async (t) => {
  // x [N, 16] bf16 with N·16 = 2^31 + 48 elements: past what a JavaScript typed array holds, so it is built by
  // the op itself (a rank-one product, x[n, k] = a[n]·(k + 1) with a = ±1), which also writes an output of more
  // than 2^31 elements. Every value is a small integer, so every sum below is exact.
  const K = 16, M = 4, N = 2 ** 27 + 3
  using s = new Scope()
  // bf16 bits of ±1, written directly: a JavaScript array of 2^27 numbers is past V8's array length limit.
  const aBits = new Uint16Array(N)
  for (let n = 0; n < N; n++) aBits[n] = n % 2 ? 0xbf80 : 0x3f80
  const a = s.from(aBits, [N, 1], 'bf16')
  const ramp = s.from(storageOf('bf16', Array.from({ length: K }, (_, k) => k + 1)), [K, 1], 'bf16')
  const x = s.add(await modelOps.linear(a, ramp))
  t.same(x.shape, [N, K])
  const wv = Array.from({ length: M * K }, (_, i) => (i % 7) - 3)
  const w = s.from(storageOf('bf16', wv), [M, K], 'bf16')
  const y = s.add(await modelOps.linear(x, w, { outDtype: 'f32' }))
  const yv = (await y.toArray()) as Float32Array
  const S = Array.from({ length: M }, (_, m) => wv.slice(m * K, m * K + K).reduce((acc, v, k) => acc + v * (k + 1), 0))
  let bad = 0
  for (const n of [0, 1, 2, 12345, N - 3, N - 2, N - 1]) {
    for (let m = 0; m < M; m++) if (yv[n * M + m] !== (n % 2 ? -1 : 1) * S[m]!) bad++
  }
  t.equal(bad, 0, 'rows at the start and past element 2^31 are exact')
  y.dispose()
  // dW = dyᵀ·x with dy = 1: dW[m, k] = (k + 1)·Σ_n a[n] = k + 1 (N is odd); db[m] = N, summed in double.
  const dy = s.from(new Uint16Array(N * M).fill(0x3f80), [N, M], 'bf16')
  const gW = s.f32(new Float32Array(M * K), [M, K])
  const gB = s.f32(new Float32Array(M), [M])
  t.equal(await modelOps.linearBackward(dy, x, w, { gradWeight: gW, gradBias: gB, gradInput: false }), null)
  const gw = (await gW.toArray()) as Float32Array
  t.same(Array.from(gw), Array.from({ length: M * K }, (_, i) => (i % K) + 1), 'dW sums 2^27 rows exactly')
  t.same(Array.from((await gB.toArray()) as Float32Array), Array(M).fill(Math.fround(N)), 'db over 2^27 rows')
})

checkNoLeaks(t, start)

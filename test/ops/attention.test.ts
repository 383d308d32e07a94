/**
 * Causal grouped-query attention (forward, backward, decode, KV-cache write) against the float64 reference:
 * lengths 1, 2, 65 and 1000 (reduced on simt by GRPO_TEST_SCALE), mixed lengths packed in one batch with padding
 * between them, GQA ratios 1, 2, 7, head dims 64, 128, 80, 16 and 256, f32 and bf16; the backward against finite
 * differences; decode against the last row of the full forward; bad inputs as GrpoErrors.
 */
import t, { type Test } from 'tap'
import { Tensor, modelOps } from '../../lib/index.js'
import { checkRelative, relativeError } from '../helpers/compare.js'
import { rngFor, storageOf, TEST_SCALE, widen, type Rng } from '../helpers/random.js'
import { DEVICE, Scope, begin, checkNoLeaks, expectBoth, valuesOf } from '../helpers/setup.js'
import * as ref from '../reference/transformer-reference.js'

const start = begin(t)
type Dt = 'f32' | 'bf16'
const TOL: Record<Dt, number> = { f32: 1e-5, bf16: 1.2e-2 }
const GRAD_TOL: Record<Dt, number> = { f32: 1e-4, bf16: 3e-2 }

function normals(rng: Rng, n: number, scale = 1): number[] {
  return Array.from({ length: n }, () => rng.normal() * scale)
}

function stored(scope: Scope, data: number[], shape: number[], dtype: Dt) {
  const bits = storageOf(dtype, data)
  return { tensor: scope.from(bits, shape, dtype), values: widen(dtype, bits) }
}

interface Case {
  lens: number[]
  Hq: number
  Hkv: number
  D: number
  dtype: Dt
  gaps?: boolean // padding tokens between and after the sequences
  backward?: boolean
}

function layout(c: Case, rng: Rng): { T: number; seqs: ref.Sequence[] } {
  const seqs: ref.Sequence[] = []
  let T = c.gaps ? rng.int(3) : 0
  for (const len of c.lens) {
    seqs.push({ start: T, len })
    T += len + (c.gaps ? rng.int(4) : 0)
  }
  // Listed in a shuffled order: the op must not assume sorted starts.
  for (let i = seqs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[seqs[i], seqs[j]] = [seqs[j]!, seqs[i]!]
  }
  return { T, seqs }
}

/**
 * Per (token, head) row: the largest scale·Σ_d |q_d·k_jd| over the row's keys. A score computed in f32 is off by
 * at most D·2^-24 times that (the dot product's rounding bound), and so is lse = max + log Σ exp(s_j − max), whose
 * derivatives with respect to the scores sum to 1. A row whose lse is near 0 (one key with a small score, or a
 * max that cancels against the log) has an error of that size, not of 5e-6·|lse|.
 */
function lseMass(q: ArrayLike<number>, k: ArrayLike<number>, s: ref.AttentionShape): Float64Array {
  const { T, Hq, Hkv, D, seqs, scale } = s
  const mass = new Float64Array(T * Hq)
  for (const { start, len } of seqs) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / (Hq / Hkv))
      for (let i = 0; i < len; i++) {
        let worst = 0
        for (let j = 0; j <= i; j++) {
          let m = 0
          for (let d = 0; d < D; d++) m += Math.abs(q[((start + i) * Hq + h) * D + d]! * k[((start + j) * Hkv + kh) * D + d]!)
          worst = Math.max(worst, m)
        }
        mass[(start + i) * Hq + h] = Math.abs(scale) * worst
      }
    }
  }
  return mass
}

/** ‖lse − ref‖ ≤ 5e-6·‖ref‖ + D·2^-24·‖mass‖ (non-finite entries must match exactly, as in checkRelative). */
function checkLse(t: Test, got: ArrayLike<number>, want: Float64Array, mass: Float64Array, D: number, what: string): void {
  const e = relativeError(got, want)
  if (!Number.isFinite(e.error)) {
    t.fail(`${what}: non-finite mismatch at ${e.worst} (got ${e.got}, want ${e.want})`)
    return
  }
  let diff = 0, refSq = 0, massSq = 0
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(want[i]!)) continue
    diff += (got[i]! - want[i]!) ** 2
    refSq += want[i]! ** 2
    massSq += mass[i]! ** 2
  }
  const bound = 5e-6 * Math.sqrt(refSq) + D * 2 ** -24 * Math.sqrt(massSq)
  t.ok(Math.sqrt(diff) <= bound, `${what}: ‖lse − ref‖ ${Math.sqrt(diff).toExponential(2)} ≤ ${bound.toExponential(2)} (5e-6·‖ref‖ + D·2^-24·‖scale·Σ|q·k|‖)`, {
    worstIndex: e.worst, got: e.got, want: e.want, relativeError: e.error,
  })
}

async function runCase(t: Test, c: Case): Promise<void> {
  const label = `${c.dtype} lens=[${c.lens.join(',')}] heads ${c.Hq}/${c.Hkv} D=${c.D}${c.gaps ? ' with padding' : ''}`
  const rng = rngFor(label)
  using s = new Scope()
  const { T, seqs } = layout(c, rng)
  const shape = { T, Hq: c.Hq, Hkv: c.Hkv, D: c.D, seqs, scale: 1 / Math.sqrt(c.D) }
  const q = stored(s, normals(rng, T * c.Hq * c.D), [T, c.Hq, c.D], c.dtype)
  const k = stored(s, normals(rng, T * c.Hkv * c.D), [T, c.Hkv, c.D], c.dtype)
  const v = stored(s, normals(rng, T * c.Hkv * c.D), [T, c.Hkv, c.D], c.dtype)
  const opts = { seqStarts: s.i32(seqs.map((x) => x.start), [seqs.length]), seqLens: s.i32(seqs.map((x) => x.len), [seqs.length]) }
  const r = s.adopt(await modelOps.attention(q.tensor, k.tensor, v.tensor, opts))
  const want = ref.attention(q.values, k.values, v.values, shape)
  checkRelative(t, await valuesOf(r.out), want.out, TOL[c.dtype], `${label}: out`)
  checkLse(t, await valuesOf(r.lse), want.lse, lseMass(q.values, k.values, shape), c.D, `${label}: lse`)
  if (!c.backward) return
  const dO = stored(s, normals(rng, T * c.Hq * c.D), [T, c.Hq, c.D], c.dtype)
  const g = s.adopt(modelOps.attentionBackwardSync(dO.tensor, q.tensor, k.tensor, v.tensor, r.out, r.lse, opts))
  const back = ref.attentionBackward(dO.values, q.values, k.values, v.values, shape)
  checkRelative(t, await valuesOf(g.gradQ), back.dq, GRAD_TOL[c.dtype], `${label}: gradQ`)
  checkRelative(t, await valuesOf(g.gradK), back.dk, GRAD_TOL[c.dtype], `${label}: gradK`)
  checkRelative(t, await valuesOf(g.gradV), back.dv, GRAD_TOL[c.dtype], `${label}: gradV`)
}

const big = Math.max(65, Math.round(1000 * TEST_SCALE))

t.test('forward and backward match the float64 reference', async (t) => {
  const cases: Case[] = [
    { lens: [1], Hq: 1, Hkv: 1, D: 64, dtype: 'f32', backward: true },
    { lens: [2], Hq: 2, Hkv: 1, D: 64, dtype: 'f32', backward: true },
    { lens: [65], Hq: 7, Hkv: 1, D: 64, dtype: 'f32', backward: true },
    { lens: [65], Hq: 4, Hkv: 2, D: 128, dtype: 'f32', backward: true },
    { lens: [3, 65, 1, 30, 2], Hq: 2, Hkv: 2, D: 80, dtype: 'f32', gaps: true, backward: true },
    { lens: [17, 64, 66], Hq: 14, Hkv: 2, D: 64, dtype: 'bf16', gaps: true, backward: true },
    { lens: [big], Hq: 2, Hkv: 1, D: 64, dtype: 'f32', backward: true },
    { lens: [big, 5], Hq: 2, Hkv: 2, D: 128, dtype: 'bf16' },
    { lens: [40], Hq: 2, Hkv: 2, D: 16, dtype: 'bf16', backward: true },
    { lens: [33, 70], Hq: 2, Hkv: 1, D: 256, dtype: 'f32', backward: true },
  ]
  for (const c of cases) await runCase(t, c)
})

t.test('rank-4 [B, L, H, D] input: right-padded sequences with seqLens, the padding rows are zero', async (t) => {
  using s = new Scope()
  const rng = rngFor('rank4')
  const [B, L, Hq, Hkv, D] = [3, 9, 4, 2, 16]
  const lens = [9, 4, 0]
  const q = normals(rng, B * L * Hq * D)
  const k = normals(rng, B * L * Hkv * D)
  const v = normals(rng, B * L * Hkv * D)
  const qt = s.f32(q, [B, L, Hq, D])
  const kt = s.f32(k, [B, L, Hkv, D])
  const vt = s.f32(v, [B, L, Hkv, D])
  const seqLens = s.i32(lens, [B])
  const r = s.adopt(modelOps.attentionSync(qt, kt, vt, { seqLens, scale: 0.3 }))
  t.same(r.lse.shape, [B, L, Hq], 'lse [B, L, Hq]')
  const seqs = lens.map((len, b) => ({ start: b * L, len }))
  const shape = { T: B * L, Hq, Hkv, D, seqs, scale: 0.3 }
  const want = ref.attention(q, k, v, shape)
  checkRelative(t, await valuesOf(r.out), want.out, 1e-5, 'out (padding rows 0)')
  checkRelative(t, await valuesOf(r.lse), want.lse, 2e-6, 'lse (-Infinity on padding)')
  const dO = normals(rng, B * L * Hq * D)
  const g = s.adopt(await modelOps.attentionBackward(s.f32(dO, [B, L, Hq, D]), qt, kt, vt, r.out, r.lse, { seqLens, scale: 0.3 }))
  const back = ref.attentionBackward(dO, q, k, v, shape)
  checkRelative(t, await valuesOf(g.gradQ), back.dq, 1e-4, 'gradQ')
  checkRelative(t, await valuesOf(g.gradK), back.dk, 1e-4, 'gradK')
  checkRelative(t, await valuesOf(g.gradV), back.dv, 1e-4, 'gradV')
  // Default sequences: B equal slots.
  const full = s.adopt(modelOps.attentionSync(qt, kt, vt))
  const wantFull = ref.attention(q, k, v, { ...shape, seqs: lens.map((_, b) => ({ start: b * L, len: L })), scale: 1 / Math.sqrt(D) })
  checkRelative(t, await valuesOf(full.out), wantFull.out, 1e-5, 'rank 4 without seqLens: B sequences of L')
})

t.test('the backward agrees with finite differences of the forward (f32)', async (t) => {
  using s = new Scope()
  const rng = rngFor('attention fd')
  const [T, Hq, Hkv, D] = [11, 4, 2, 16]
  const x = { q: normals(rng, T * Hq * D), k: normals(rng, T * Hkv * D), v: normals(rng, T * Hkv * D) }
  const dims = { q: [T, Hq, D], k: [T, Hkv, D], v: [T, Hkv, D] }
  const w = normals(rng, T * Hq * D)
  const opts = { seqStarts: s.i32([0, 6], [2]), seqLens: s.i32([6, 5], [2]) }
  const loss = (inputs: typeof x) => {
    using q = Tensor.from(Float32Array.from(inputs.q), dims.q, { device: DEVICE })
    using k = Tensor.from(Float32Array.from(inputs.k), dims.k, { device: DEVICE })
    using v = Tensor.from(Float32Array.from(inputs.v), dims.v, { device: DEVICE })
    const r = modelOps.attentionSync(q, k, v, opts)
    const out = r.out.toFloat32ArraySync()
    r.out.dispose()
    r.lse.dispose()
    let sum = 0
    for (let i = 0; i < out.length; i++) sum += out[i]! * w[i]!
    return sum
  }
  const qt = s.f32(x.q, dims.q), kt = s.f32(x.k, dims.k), vt = s.f32(x.v, dims.v)
  const r = s.adopt(modelOps.attentionSync(qt, kt, vt, opts))
  const g = s.adopt(modelOps.attentionBackwardSync(s.f32(w, dims.q), qt, kt, vt, r.out, r.lse, opts))
  const grads = { q: await valuesOf(g.gradQ), k: await valuesOf(g.gradK), v: await valuesOf(g.gradV) }
  for (const name of ['q', 'k', 'v'] as const) {
    const u = normals(rng, x[name].length)
    const eps = 1e-2
    const shifted = (sign: number) => ({ ...x, [name]: x[name].map((val, i) => val + sign * eps * u[i]!) })
    const fd = (loss(shifted(1)) - loss(shifted(-1))) / (2 * eps)
    let an = 0
    for (let i = 0; i < u.length; i++) an += grads[name][i]! * u[i]!
    t.ok(Math.abs(fd - an) <= 2e-3 * Math.max(1, Math.abs(an)), `grad${name.toUpperCase()}: finite difference ${fd.toPrecision(6)} vs backward ${an.toPrecision(6)}`)
  }
})

t.test('decode against a KV cache equals the last row of the full forward', async (t) => {
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const [Hq, Hkv, D] of [[14, 2, 64], [4, 4, 128], [7, 1, 80]] as const) {
      using s = new Scope()
      const rng = rngFor(`decode ${dtype} ${Hq} ${Hkv} ${D}`)
      const lens = [1, 2, Math.max(3, Math.round(70 * TEST_SCALE)), 33]
      const B = lens.length
      const S = Math.max(...lens) + 5
      const T = lens.reduce((a, b) => a + b, 0)
      const starts = lens.map((_, b) => lens.slice(0, b).reduce((a, x) => a + x, 0))
      const q = stored(s, normals(rng, T * Hq * D), [T, Hq, D], dtype)
      const k = stored(s, normals(rng, T * Hkv * D), [T, Hkv, D], dtype)
      const v = stored(s, normals(rng, T * Hkv * D), [T, Hkv, D], dtype)
      const seqStarts = s.i32(starts, [B])
      const seqLens = s.i32(lens, [B])
      const full = s.adopt(await modelOps.attention(q.tensor, k.tensor, v.tensor, { seqStarts, seqLens }))
      const fullOut = await valuesOf(full.out)
      // Prefill all but the last token of each sequence, then write the last one as a decode step would.
      const kCache = s.from(storageOf(dtype, new Array(B * Hkv * S * D).fill(0)), [B, Hkv, S, D], dtype)
      const vCache = s.from(storageOf(dtype, new Array(B * Hkv * S * D).fill(0)), [B, Hkv, S, D], dtype)
      const prefix = lens.map((l) => l - 1)
      await modelOps.kvCacheWrite(k.tensor, v.tensor, kCache, vCache, { seqStarts, seqLens: s.i32(prefix, [B]), cacheStarts: s.i32(new Array(B).fill(0), [B]) })
      const lastRows = (x: Float64Array, H: number) => starts.flatMap((st, b) => Array.from(x.subarray((st + lens[b]! - 1) * H * D, (st + lens[b]!) * H * D)))
      const kLast = stored(s, lastRows(k.values, Hkv), [B, Hkv, D], dtype)
      const vLast = stored(s, lastRows(v.values, Hkv), [B, Hkv, D], dtype)
      modelOps.kvCacheWriteSync(kLast.tensor, vLast.tensor, kCache, vCache, { cacheStarts: s.i32(prefix, [B]) })
      const qLast = stored(s, lastRows(q.values, Hq), [B, Hq, D], dtype)
      const cacheLens = s.i32(lens, [B])
      const out = s.add(await modelOps.attentionDecode(qLast.tensor, kCache, vCache, cacheLens))
      const want = ref.attentionDecode(qLast.values, await valuesOf(kCache), await valuesOf(vCache), lens, B, Hq, Hkv, S, D, 1 / Math.sqrt(D))
      checkRelative(t, await valuesOf(out), want, TOL[dtype], `${dtype} heads ${Hq}/${Hkv} D=${D}: decode vs float64`)
      checkRelative(t, await valuesOf(out), lastRows(fullOut, Hq), dtype === 'f32' ? 1e-5 : 1e-2, `${dtype} heads ${Hq}/${Hkv} D=${D}: decode = last row of the full forward`)
      const sync = s.add(modelOps.attentionDecodeSync(qLast.tensor, kCache, vCache, cacheLens, { scale: 0.1 }))
      const want2 = ref.attentionDecode(qLast.values, await valuesOf(kCache), await valuesOf(vCache), lens, B, Hq, Hkv, S, D, 0.1)
      checkRelative(t, await valuesOf(sync), want2, TOL[dtype], `${dtype}: decode with scale 0.1 (sync)`)
    }
  }
})

t.test('bad inputs are GrpoErrors', async (t) => {
  using s = new Scope()
  const q = s.f32(new Float32Array(4 * 4 * 16), [4, 4, 16])
  const k = s.f32(new Float32Array(4 * 2 * 16), [4, 2, 16])
  const k3 = s.f32(new Float32Array(4 * 3 * 16), [4, 3, 16])
  const call = (a: boolean, o: Parameters<typeof modelOps.attentionSync>[3], kk = k) => (a ? modelOps.attention(q, kk, kk, o) : modelOps.attentionSync(q, kk, kk, o))
  await expectBoth(t, (a) => call(a, {}, k3), 'ERR_GRPO_SHAPE', 'kv heads that do not divide the q heads')
  await expectBoth(t, (a) => call(a, { seqStarts: s.i32([0, 2], [2]), seqLens: s.i32([3, 2], [2]) }), 'ERR_GRPO_INVALID_ARG', 'overlapping sequences')
  await expectBoth(t, (a) => call(a, { seqStarts: s.i32([0, 2], [2]), seqLens: s.i32([2, 3], [2]) }), 'ERR_GRPO_INVALID_ARG', 'a sequence past the tokens')
  await expectBoth(t, (a) => call(a, { seqStarts: s.i32([0], [1]), seqLens: s.i32([-1], [1]) }), 'ERR_GRPO_INVALID_ARG', 'a negative length')
  await expectBoth(t, (a) => call(a, { seqStarts: s.i32([0], [1]) }), 'ERR_GRPO_INVALID_ARG', 'seqStarts without seqLens')
  await expectBoth(t, (a) => call(a, { seqStarts: s.i32([0, 1], [2]), seqLens: s.i32([1], [1]) }), 'ERR_GRPO_SHAPE', 'seqStarts and seqLens of different lengths')
  await expectBoth(t, (a) => call(a, { scale: 0 }), 'ERR_GRPO_INVALID_ARG', 'scale 0')
  await expectBoth(t, (a) => call(a, { scal: 0.1 } as never), 'ERR_GRPO_INVALID_ARG', 'an unknown option')
  t.throws(() => modelOps.attentionSync(q, k, k, { scal: 0.1 } as never), /did you mean scale\?/, 'the unknown option names the nearest one')
  const q12 = s.f32(new Float32Array(4 * 12), [4, 1, 12])
  await expectBoth(t, (a) => (a ? modelOps.attention(q12, q12, q12) : modelOps.attentionSync(q12, q12, q12)), 'ERR_GRPO_SHAPE', 'a head dimension that is not a multiple of 16')
  const kb = s.from(new Uint16Array(4 * 2 * 16), [4, 2, 16], 'bf16')
  await expectBoth(t, (a) => (a ? modelOps.attention(q, kb, kb) : modelOps.attentionSync(q, kb, kb)), 'ERR_GRPO_DTYPE', 'k of another dtype')
  await expectBoth(t, (a) => (a ? modelOps.attention(s.f32([1], [1]), k, k) : modelOps.attentionSync(s.f32([1], [1]), k, k)), 'ERR_GRPO_SHAPE', 'rank-1 q')
  const r = s.adopt(modelOps.attentionSync(q, k, k))
  await expectBoth(t, (a) => (a ? modelOps.attentionBackward(q, q, k, k, r.out, q) : modelOps.attentionBackwardSync(q, q, k, k, r.out, q)), 'ERR_GRPO_SHAPE', 'lse of another shape')
  await expectBoth(t, (a) => (a ? modelOps.attentionBackward(k, q, k, k, r.out, r.lse) : modelOps.attentionBackwardSync(k, q, k, k, r.out, r.lse)), 'ERR_GRPO_SHAPE', 'gradOut of the wrong shape')
  const cache = s.f32(new Float32Array(2 * 2 * 5 * 16), [2, 2, 5, 16])
  const qd = s.f32(new Float32Array(2 * 4 * 16), [2, 4, 16])
  await expectBoth(t, (a) => (a ? modelOps.attentionDecode(qd, cache, cache, s.i32([0, 3], [2])) : modelOps.attentionDecodeSync(qd, cache, cache, s.i32([0, 3], [2]))), 'ERR_GRPO_INVALID_ARG', 'an empty cache')
  await expectBoth(t, (a) => (a ? modelOps.attentionDecode(qd, cache, cache, s.i32([6, 3], [2])) : modelOps.attentionDecodeSync(qd, cache, cache, s.i32([6, 3], [2]))), 'ERR_GRPO_INVALID_ARG', 'a length past the capacity')
  await expectBoth(t, (a) => (a ? modelOps.attentionDecode(q, cache, cache, s.i32([1, 1], [2])) : modelOps.attentionDecodeSync(q, cache, cache, s.i32([1, 1], [2]))), 'ERR_GRPO_SHAPE', 'q with another batch')
  const q3 = s.f32(new Float32Array(2 * 3 * 16), [2, 3, 16])
  await expectBoth(t, (a) => (a ? modelOps.attentionDecode(q3, cache, cache, s.i32([1, 1], [2])) : modelOps.attentionDecodeSync(q3, cache, cache, s.i32([1, 1], [2]))), 'ERR_GRPO_SHAPE', 'q heads not divisible by kv heads')
  await expectBoth(t, (a) => (a ? modelOps.attentionDecode(qd, s.f32([1], [1]), cache, s.i32([1, 1], [2])) : modelOps.attentionDecodeSync(qd, s.f32([1], [1]), cache, s.i32([1, 1], [2]))), 'ERR_GRPO_SHAPE', 'a cache of rank 1')
  const kw = s.f32(new Float32Array(2 * 2 * 16), [2, 2, 16])
  const write = (a: boolean, o: Parameters<typeof modelOps.kvCacheWriteSync>[4], kk = kw) => (a ? modelOps.kvCacheWrite(kk, kk, cache, cache, o) : modelOps.kvCacheWriteSync(kk, kk, cache, cache, o))
  await expectBoth(t, (a) => write(a, { cacheStarts: s.i32([5, 0], [2]) }), 'ERR_GRPO_INVALID_ARG', 'a write past the capacity')
  await expectBoth(t, (a) => write(a, { cacheStarts: s.i32([-1, 0], [2]) }), 'ERR_GRPO_INVALID_ARG', 'a negative cache position')
  await expectBoth(t, (a) => write(a, {} as { cacheStarts: Tensor }), 'ERR_GRPO_INVALID_ARG', 'no cacheStarts')
  await expectBoth(t, (a) => write(a, { cacheStarts: s.i32([0, 0], [2]), seqStarts: s.i32([0, 1], [2]) }), 'ERR_GRPO_INVALID_ARG', 'seqStarts without seqLens')
  await expectBoth(t, (a) => write(a, { cacheStarts: s.i32([0, 0], [2]) }, s.f32(new Float32Array(3 * 2 * 16), [3, 2, 16])), 'ERR_GRPO_SHAPE', 'tokens not divisible by the batch')
  await expectBoth(t, (a) => write(a, { cacheStarts: s.i32([0, 0], [2]) }, s.f32(new Float32Array(2 * 16), [2, 1, 16])), 'ERR_GRPO_SHAPE', 'k with the wrong kv heads')
})

checkNoLeaks(t, start)

/**
 * The row-wise transformer ops (rmsNorm, rope, swiglu, embedding, add, cast) against their float64 references,
 * their backwards against the references and against finite differences of the forward, in f32 and bf16; and
 * their argument errors. Runs on cpu here and on the simt executor through test/simt/ops-on-simt.test.ts.
 */
import t, { type Test } from 'tap'
import { Tensor, modelOps } from '../../lib/index.js'
import { checkRelative } from '../helpers/compare.js'
import { rngFor, storageOf, TEST_SCALE, widen, type Rng } from '../helpers/random.js'
import { DEVICE, Scope, begin, checkNoLeaks, expectBoth, valuesOf } from '../helpers/setup.js'
import * as ref from '../reference/transformer-reference.js'

const start = begin(t)
type Dt = 'f32' | 'bf16'
const DTYPES: readonly Dt[] = ['f32', 'bf16']
// Relative error of an op whose output is rounded once to the dtype (bf16 keeps 8 bits).
const TOL: Record<Dt, number> = { f32: 2e-6, bf16: 6e-3 }

function values(rng: Rng, n: number, scale = 1): number[] {
  return Array.from({ length: n }, () => rng.normal() * scale)
}

/** A tensor of `dtype` holding `data`, and the values it actually stores (rounded) in float64. */
function stored(scope: Scope, data: number[], shape: number[], dtype: Dt): { tensor: Tensor; values: Float64Array } {
  const bits = storageOf(dtype, data)
  return { tensor: scope.from(bits, shape, dtype), values: widen(dtype, bits) }
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!
  return s
}

/**
 * Finite-difference check of a backward: for a random direction u, (L(x + εu) − L(x − εu)) / 2ε against ⟨∇L, u⟩,
 * with L(x) = ⟨r, f(x)⟩ evaluated by the op itself in f32.
 */
async function finiteDifference(t: Test, what: string, x: number[], grad: ArrayLike<number>, loss: (x: number[]) => Promise<number>, eps = 1e-2): Promise<void> {
  const rng = rngFor(`fd ${what}`)
  const u = values(rng, x.length)
  const plus = await loss(x.map((v, i) => v + eps * u[i]!))
  const minus = await loss(x.map((v, i) => v - eps * u[i]!))
  const fd = (plus - minus) / (2 * eps)
  const an = dot(grad, u)
  t.ok(Math.abs(fd - an) <= 2e-3 * Math.max(1, Math.abs(an)), `${what}: finite difference ${fd.toPrecision(6)} vs backward ${an.toPrecision(6)}`)
}

t.test('rmsNorm forward and backward match the float64 reference', async (t) => {
  for (const dtype of DTYPES) {
    for (const [rows, n] of [[1, 16], [5, 33], [Math.max(2, Math.round(64 * TEST_SCALE)), 896]] as const) {
      using s = new Scope()
      const rng = rngFor(`rmsNorm ${dtype} ${rows} ${n}`)
      const x = stored(s, values(rng, rows * n, 2), [rows, n], dtype)
      const w = stored(s, values(rng, n).map((v) => 1 + 0.1 * v), [n], dtype)
      const eps = 1e-5
      const r = s.adopt(await modelOps.rmsNorm(x.tensor, w.tensor, { eps }))
      const want = ref.rmsNorm(x.values, w.values, rows, n, eps)
      checkRelative(t, await valuesOf(r.out), want.out, TOL[dtype], `${dtype} [${rows}, ${n}] out`)
      checkRelative(t, await valuesOf(r.rstd), want.rstd, 2e-6, `${dtype} [${rows}, ${n}] rstd`)
      const g = stored(s, values(rng, rows * n), [rows, n], dtype)
      const gw0 = values(rng, n)
      const gw = s.f32(gw0, [n])
      const dx = s.add(modelOps.rmsNormBackwardSync(g.tensor, x.tensor, w.tensor, r.rstd, { gradWeight: gw }))
      const back = ref.rmsNormBackward(g.values, x.values, w.values, rows, n, eps)
      checkRelative(t, await valuesOf(dx), back.dx, dtype === 'f32' ? 1e-5 : 1e-2, `${dtype} [${rows}, ${n}] gradX`)
      checkRelative(t, await valuesOf(gw), back.dw.map((v, i) => v + gw0[i]!), 1e-5, `${dtype} [${rows}, ${n}] gradWeight accumulated`)
      using noWeight = modelOps.rmsNormBackwardSync(g.tensor, x.tensor, w.tensor, r.rstd)
      checkRelative(t, await valuesOf(noWeight), back.dx, dtype === 'f32' ? 1e-5 : 1e-2, `${dtype} gradX without gradWeight`)
    }
  }
  t.test('finite differences (f32)', async (t) => {
    using s = new Scope()
    const rng = rngFor('rmsNorm fd')
    const [rows, n] = [3, 24]
    const x0 = values(rng, rows * n)
    const w0 = values(rng, n)
    const r = values(rng, rows * n)
    const w = s.f32(w0, [n])
    const loss = async (x: number[]) => {
      using xt = Tensor.from(Float32Array.from(x), [rows, n], { device: DEVICE })
      const o = await modelOps.rmsNorm(xt, w)
      const y = await valuesOf(o.out)
      o.out.dispose()
      o.rstd.dispose()
      return dot(y, r)
    }
    const x = s.f32(x0, [rows, n])
    const fwd = s.adopt(modelOps.rmsNormSync(x, w))
    const dx = s.add(await modelOps.rmsNormBackward(s.f32(r, [rows, n]), x, w, fwd.rstd))
    await finiteDifference(t, 'rmsNorm gradX', x0, await valuesOf(dx), loss)
    const gw = s.f32(new Float32Array(n), [n])
    s.add(modelOps.rmsNormBackwardSync(s.f32(r, [rows, n]), x, w, fwd.rstd, { gradWeight: gw }))
    const lossW = async (wv: number[]) => {
      using wt = Tensor.from(Float32Array.from(wv), [n], { device: DEVICE })
      const o = modelOps.rmsNormSync(x, wt)
      const y = await valuesOf(o.out)
      o.out.dispose()
      o.rstd.dispose()
      return dot(y, r)
    }
    await finiteDifference(t, 'rmsNorm gradWeight', w0, await valuesOf(gw), lossW)
  })
})

t.test('rope matches the float64 reference, its backward is the inverse rotation', async (t) => {
  for (const dtype of DTYPES) {
    for (const [T, H, D, theta] of [[1, 1, 2, 10000], [7, 3, 64, 10000], [Math.max(3, Math.round(40 * TEST_SCALE)), 2, 128, 1000000]] as const) {
      using s = new Scope()
      const rng = rngFor(`rope ${dtype} ${T} ${H} ${D}`)
      const x = stored(s, values(rng, T * H * D), [T, H, D], dtype)
      // Positions as a left-padded or packed batch would give them: arbitrary, repeated, large.
      const positions = Array.from({ length: T }, (_, i) => (i === 0 ? 0 : rng.bool(0.2) ? 100000 + rng.int(1000) : rng.int(4096)))
      const pos = s.i32(positions, [T])
      const out = s.add(await modelOps.rope(x.tensor, pos, { theta }))
      checkRelative(t, await valuesOf(out), ref.rope(x.values, positions, T, H, D, theta), TOL[dtype] * 2, `${dtype} T=${T} H=${H} D=${D} theta=${theta}`)
      const back = s.add(modelOps.ropeBackwardSync(x.tensor, pos, { theta }))
      checkRelative(t, await valuesOf(back), ref.rope(x.values, positions, T, H, D, theta, -1), TOL[dtype] * 2, `${dtype} backward (inverse rotation)`)
    }
  }
  t.test('rank 4 [B, L, H, D] with positions [B, L]; the backward undoes the forward (f32)', async (t) => {
    using s = new Scope()
    const rng = rngFor('rope rank4')
    const [B, L, H, D] = [2, 5, 2, 16]
    const x0 = values(rng, B * L * H * D)
    const x = s.f32(x0, [B, L, H, D])
    const pos = s.i32(Array.from({ length: B * L }, (_, i) => (i % L) + (i >= L ? 3 : 0)), [B, L])
    const y = s.add(modelOps.ropeSync(x, pos))
    const back = s.add(await modelOps.ropeBackward(y, pos))
    checkRelative(t, await valuesOf(back), x0, 1e-6, 'ropeBackward(rope(x)) = x')
    const r = values(rng, B * L * H * D)
    const gx = s.add(modelOps.ropeBackwardSync(s.f32(r, [B, L, H, D]), pos, { theta: 500 }))
    const loss = async (xv: number[]) => {
      using xt = Tensor.from(Float32Array.from(xv), [B, L, H, D], { device: DEVICE })
      using y = await modelOps.rope(xt, pos, { theta: 500 })
      return dot(await valuesOf(y), r)
    }
    await finiteDifference(t, 'rope gradX', x0, await valuesOf(gx), loss)
  })
  t.test('inverseFrequencies replaces theta^(-2i/D) (scaled rope, e.g. Llama 3)', async (t) => {
    using s = new Scope()
    const rng = rngFor('rope invfreq')
    const [T, H, D] = [9, 2, 32]
    const x0 = values(rng, T * H * D)
    const positions = Array.from({ length: T }, (_, i) => i * 37)
    // Llama 3's scaling keeps high frequencies and divides low ones by the factor: here the last half by 8.
    const inv = Array.from({ length: D / 2 }, (_, i) => 500000 ** ((-2 * i) / D) / (i >= D / 4 ? 8 : 1))
    const x = s.f32(x0, [T, H, D])
    const pos = s.i32(positions, [T])
    const y = s.add(await modelOps.rope(x, pos, { inverseFrequencies: Float64Array.from(inv) }))
    const want = new Float64Array(T * H * D)
    for (let tk = 0; tk < T; tk++) {
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < D / 2; i++) {
          const a = positions[tk]! * inv[i]!
          const b = (tk * H + h) * D
          want[b + i] = x0[b + i]! * Math.cos(a) - x0[b + i + D / 2]! * Math.sin(a)
          want[b + i + D / 2] = x0[b + i + D / 2]! * Math.cos(a) + x0[b + i]! * Math.sin(a)
        }
      }
    }
    checkRelative(t, await valuesOf(y), want, 2e-6, 'rope with given inverse frequencies')
    const back = s.add(modelOps.ropeBackwardSync(y, pos, { inverseFrequencies: inv }))
    checkRelative(t, await valuesOf(back), x0, 1e-6, 'its backward undoes it')
    await expectBoth(t, (a) => (a ? modelOps.rope(x, pos, { inverseFrequencies: [1, 2] }) : modelOps.ropeSync(x, pos, { inverseFrequencies: [1, 2] })), 'ERR_GRPO_SHAPE', 'the wrong number of frequencies')
    await expectBoth(t, (a) => (a ? modelOps.rope(x, pos, { inverseFrequencies: [NaN] }) : modelOps.ropeSync(x, pos, { inverseFrequencies: [NaN] })), 'ERR_GRPO_INVALID_ARG', 'a NaN frequency')
  })
})

t.test('swiglu forward and backward (separate and fused gate|up) match the float64 reference', async (t) => {
  for (const dtype of DTYPES) {
    for (const [rows, F] of [[1, 1], [3, 37], [Math.max(2, Math.round(32 * TEST_SCALE)), 4864 / 8]] as const) {
      using s = new Scope()
      const rng = rngFor(`swiglu ${dtype} ${rows} ${F}`)
      // Gates kept 0.05 from the root of silu' (see ref.SILU_GRAD_ROOT): a single element within 0.01 of it has a
      // float32 relative error above the bound for any kernel (seed 1168343040 drew −1.27866 for the f32 [1, 1] case: relative error 1.1e-4).
      const gateValues = values(rng, rows * F, 3).map((v) => {
        while (Math.abs(v - ref.SILU_GRAD_ROOT) < 0.05) v = rng.normal() * 3
        return v
      })
      const gate = stored(s, gateValues, [rows, F], dtype)
      const up = stored(s, values(rng, rows * F), [rows, F], dtype)
      const g = stored(s, values(rng, rows * F), [rows, F], dtype)
      const y = s.add(await modelOps.swiglu(gate.tensor, up.tensor))
      checkRelative(t, await valuesOf(y), ref.swiglu(gate.values, up.values), TOL[dtype], `${dtype} [${rows}, ${F}] out`)
      const grads = s.adopt(modelOps.swigluBackwardSync(g.tensor, gate.tensor, up.tensor))
      const want = ref.swigluBackward(g.values, gate.values, up.values)
      checkRelative(t, await valuesOf(grads.gradGate), want.dGate, TOL[dtype] * 2, `${dtype} gradGate`)
      checkRelative(t, await valuesOf(grads.gradUp!), want.dUp, TOL[dtype] * 2, `${dtype} gradUp`)
      // Fused: each row is [gate | up].
      const fusedValues: number[] = []
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < F; i++) fusedValues.push(gate.values[r * F + i]!)
        for (let i = 0; i < F; i++) fusedValues.push(up.values[r * F + i]!)
      }
      const fused = stored(s, fusedValues, [rows, 2 * F], dtype)
      const yf = s.add(modelOps.swigluSync(fused.tensor))
      checkRelative(t, await valuesOf(yf), await valuesOf(y), 0, `${dtype} fused forward = separate forward`)
      const gf = s.adopt(await modelOps.swigluBackward(g.tensor, fused.tensor))
      t.equal(gf.gradUp, undefined, 'fused: one gradient')
      const gv = await valuesOf(gf.gradGate)
      const gGate = await valuesOf(grads.gradGate), gUp = await valuesOf(grads.gradUp!)
      const joined: number[] = []
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < F; i++) joined.push(gGate[r * F + i]!)
        for (let i = 0; i < F; i++) joined.push(gUp[r * F + i]!)
      }
      checkRelative(t, gv, joined, 0, `${dtype} fused backward = separate backward`)
    }
  }
  t.test('gates at the root of silu\' (gradGate ≈ 0): within float32 rounding of the size of its terms', async (t) => {
    // Relative to the gradient itself no float32 kernel can be accurate here (the terms 1 and z(1 − σ) cancel);
    // relative to their size (ref.swigluGradMass) a correct one is, and a wrong formula or branch is not.
    const r0 = ref.SILU_GRAD_ROOT
    const f32 = Math.fround(r0)
    const next = (x: number, dir: number) => {
      const b = new Float32Array([x])
      const u = new Uint32Array(b.buffer)
      u[0]! += x < 0 === dir < 0 ? 1 : -1 // away from zero when dir has the sign of x
      return b[0]!
    }
    const gates = [f32, next(f32, 1), next(f32, -1), r0 - 1e-3, r0 + 1e-3, r0 - 0.01, r0 + 0.01]
    for (const dtype of DTYPES) {
      using s = new Scope()
      const n = gates.length
      const gate = stored(s, gates, [1, n], dtype)
      const up = stored(s, gates.map((_, i) => 0.5 + 0.25 * i), [1, n], dtype)
      const g = stored(s, gates.map((_, i) => (i % 2 ? -1.5 : 1.25)), [1, n], dtype)
      const got = await valuesOf(s.adopt(await modelOps.swigluBackward(g.tensor, gate.tensor, up.tensor)).gradGate)
      const want = ref.swigluBackward(g.values, gate.values, up.values).dGate
      const tol = dtype === 'f32' ? 1e-6 : 8e-3
      let worst = 0
      for (let i = 0; i < n; i++) {
        const mass = ref.swigluGradMass(g.values[i]!, gate.values[i]!, up.values[i]!)
        worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / mass)
      }
      t.ok(worst <= tol, `${dtype}: |gradGate − ref| / size of its terms ${worst.toExponential(2)} ≤ ${tol}`)
    }
  })
  t.test('finite differences (f32)', async (t) => {
    using s = new Scope()
    const rng = rngFor('swiglu fd')
    const n = 40
    const x0 = values(rng, 2 * n, 2)
    const r = values(rng, n)
    const loss = async (x: number[]) => {
      using xt = Tensor.from(Float32Array.from(x), [1, 2 * n], { device: DEVICE })
      using y = await modelOps.swiglu(xt)
      return dot(await valuesOf(y), r)
    }
    const grads = s.adopt(modelOps.swigluBackwardSync(s.f32(r, [1, n]), s.f32(x0, [1, 2 * n])))
    await finiteDifference(t, 'swiglu fused gradient', x0, await valuesOf(grads.gradGate), loss)
    const gate0 = x0.slice(0, n), up0 = x0.slice(n)
    const sep = s.adopt(await modelOps.swigluBackward(s.f32(r, [1, n]), s.f32(gate0, [1, n]), s.f32(up0, [1, n])))
    const upT = s.f32(up0, [1, n])
    const lossGate = async (gv: number[]) => {
      using gt = Tensor.from(Float32Array.from(gv), [1, n], { device: DEVICE })
      using y = modelOps.swigluSync(gt, upT)
      return dot(await valuesOf(y), r)
    }
    await finiteDifference(t, 'swiglu gradGate', gate0, await valuesOf(sep.gradGate), lossGate)
    const gateT = s.f32(gate0, [1, n])
    const lossUp = async (uv: number[]) => {
      using ut = Tensor.from(Float32Array.from(uv), [1, n], { device: DEVICE })
      using y = modelOps.swigluSync(gateT, ut)
      return dot(await valuesOf(y), r)
    }
    await finiteDifference(t, 'swiglu gradUp', up0, await valuesOf(sep.gradUp!), lossUp)
  })
})

t.test('embedding gathers rows; its backward scatter-adds them (deterministically)', async (t) => {
  for (const dtype of DTYPES) {
    using s = new Scope()
    const rng = rngFor(`embedding ${dtype}`)
    const [V, C, T] = [50, 24, 30]
    const w = stored(s, values(rng, V * C), [V, C], dtype)
    const ids = Array.from({ length: T }, () => (rng.bool(0.3) ? 7 : rng.int(V))) // repeated ids
    const idt = s.i32(ids, [3, 10])
    const out = s.add(await modelOps.embedding(w.tensor, idt))
    t.same(out.shape, [3, 10, C], 'shape: ids shape + C')
    t.equal(out.dtype, dtype, 'weight dtype')
    const want = new Float64Array(T * C)
    for (let i = 0; i < T; i++) for (let c = 0; c < C; c++) want[i * C + c] = w.values[ids[i]! * C + c]!
    checkRelative(t, await valuesOf(out), want, 0, `${dtype} gather is exact`)
    const g = stored(s, values(rng, T * C), [3, 10, C], dtype)
    const gw0 = values(rng, V * C)
    const gw = s.f32(gw0, [V, C])
    modelOps.embeddingBackwardSync(g.tensor, idt, gw)
    const wantGw = Float64Array.from(gw0)
    for (let i = 0; i < T; i++) for (let c = 0; c < C; c++) wantGw[ids[i]! * C + c]! += g.values[i * C + c]!
    checkRelative(t, await valuesOf(gw), wantGw, 1e-6, `${dtype} scatter-add accumulates`)
    const gw2 = s.f32(gw0, [V, C])
    await modelOps.embeddingBackward(g.tensor, idt, gw2)
    t.same(Array.from(gw2.toArraySync()), Array.from(gw.toArraySync()), 'the same bits on a second run')
    if (dtype === 'f32') {
      const r = values(rng, T * C)
      const gwFd = s.f32(new Float32Array(V * C), [V, C])
      modelOps.embeddingBackwardSync(s.f32(r, [3, 10, C]), idt, gwFd)
      const loss = async (wv: number[]) => {
        using wt = Tensor.from(Float32Array.from(wv), [V, C], { device: DEVICE })
        using y = await modelOps.embedding(wt, idt)
        return dot(await valuesOf(y), r)
      }
      await finiteDifference(t, 'embedding gradWeight', Array.from(w.values), await valuesOf(gwFd), loss)
    }
    const single = s.add(modelOps.embeddingSync(w.tensor, s.i32([V - 1], [1])))
    t.same(single.shape, [1, C], 'one id')
  }
})

t.test('add, addInPlace, cast and castInto', async (t) => {
  const rng = rngFor('add cast')
  const n = 1000 + 7
  for (const [da, db] of [['f32', 'f32'], ['f32', 'bf16'], ['bf16', 'f32'], ['bf16', 'bf16']] as const) {
    using s = new Scope()
    const a = stored(s, values(rng, n), [n], da)
    const b = stored(s, values(rng, n), [n], db)
    const sum = a.values.map((v, i) => v + b.values[i]!)
    const y = s.add(await modelOps.add(a.tensor, b.tensor))
    t.equal(y.dtype, da, 'the result has a\'s dtype')
    checkRelative(t, await valuesOf(y), sum, TOL[da], `${da} + ${db}`)
    modelOps.addInPlaceSync(a.tensor, b.tensor)
    checkRelative(t, await valuesOf(a.tensor), await valuesOf(y), 0, `${da} += ${db} equals add`)
    const y2 = s.add(modelOps.addSync(y, b.tensor))
    await modelOps.addInPlace(y, b.tensor)
    checkRelative(t, await valuesOf(y), await valuesOf(y2), 0, 'async addInPlace')
  }
  using s = new Scope()
  const x = values(rng, n, 10)
  x.push(0, -0, 1e-40, 3.4e38, Infinity, -Infinity, NaN)
  const f = s.f32(x, [x.length])
  const bf = s.add(await modelOps.cast(f, 'bf16'))
  t.equal(bf.dtype, 'bf16')
  const bits = storageOf('bf16', Array.from(Float32Array.from(x)))
  // A NaN may come back with another payload (CUDA's conversion keeps 0x7fff): compare NaN-ness there.
  const sameBits = (got: ArrayLike<number>) => Array.from(got).map((b, i) => (Number.isNaN(x[i]!) ? ((b & 0x7fff) > 0x7f80 ? 'NaN' : b) : b))
  const wantBits = Array.from(bits).map((b, i) => (Number.isNaN(x[i]!) ? 'NaN' : b))
  t.same(sameBits(bf.toArraySync()), wantBits, 'f32 → bf16 rounds to nearest even, bit for bit (NaN, ±inf, subnormals)')
  const back = s.add(modelOps.castSync(bf, 'f32'))
  t.same(Array.from(back.toArraySync()), Array.from(widen('bf16', bf.toArraySync() as Uint16Array)), 'bf16 → f32 is exact')
  const into = s.from(new Uint16Array(x.length), [x.length], 'bf16')
  modelOps.castIntoSync(f, into)
  t.same(sameBits(into.toArraySync()), wantBits, 'castInto writes the same bits')
  const into32 = s.f32(new Float32Array(x.length), [x.length])
  await modelOps.castInto(bf, into32)
  t.same(Array.from(into32.toArraySync()), Array.from(back.toArraySync()), 'castInto bf16 → f32')
})

t.test('bad inputs are GrpoErrors', async (t) => {
  using s = new Scope()
  const x = s.f32(new Float32Array(12), [3, 4])
  const w = s.f32(new Float32Array(4), [4])
  const ids = s.i32([0, 1], [2])
  const i8 = s.u8([1, 2], [2])
  await expectBoth(t, (a) => (a ? modelOps.rmsNorm(x, s.f32([1, 2], [2])) : modelOps.rmsNormSync(x, s.f32([1, 2], [2]))), 'ERR_GRPO_SHAPE', 'rmsNorm weight of the wrong size')
  await expectBoth(t, (a) => (a ? modelOps.rmsNorm(x, w, { eps: -1 }) : modelOps.rmsNormSync(x, w, { eps: -1 })), 'ERR_GRPO_INVALID_ARG', 'negative eps')
  await expectBoth(t, (a) => (a ? modelOps.rmsNorm(i8, w) : modelOps.rmsNormSync(i8, w)), 'ERR_GRPO_DTYPE', 'u8 x')
  const r = s.adopt(modelOps.rmsNormSync(x, w))
  await expectBoth(t, (a) => (a ? modelOps.rmsNormBackward(x, x, w, r.rstd, { gradWeight: s.f32([1], [1]) }) : modelOps.rmsNormBackwardSync(x, x, w, r.rstd, { gradWeight: s.f32([1], [1]) })), 'ERR_GRPO_SHAPE', 'gradWeight of the wrong size')
  await expectBoth(t, (a) => (a ? modelOps.rmsNormBackward(x, x, w, x) : modelOps.rmsNormBackwardSync(x, x, w, x)), 'ERR_GRPO_SHAPE', 'rstd of the wrong shape')
  const q = s.f32(new Float32Array(3 * 2 * 6), [3, 2, 6])
  const pos3 = s.i32([0, 1, 2], [3])
  await expectBoth(t, (a) => (a ? modelOps.rope(q, pos3, { thetta: 10 } as never) : modelOps.ropeSync(q, pos3, { thetta: 10 } as never)), 'ERR_GRPO_INVALID_ARG', 'a misspelled option')
  await expectBoth(t, (a) => (a ? modelOps.rope(q, s.i32([0, 1], [2])) : modelOps.ropeSync(q, s.i32([0, 1], [2]))), 'ERR_GRPO_SHAPE', 'positions of the wrong length')
  await expectBoth(t, (a) => (a ? modelOps.rope(q, s.i32([0, 1, 2], [3]), { theta: 0 }) : modelOps.ropeSync(q, s.i32([0, 1, 2], [3]), { theta: 0 })), 'ERR_GRPO_INVALID_ARG', 'theta 0')
  await expectBoth(t, (a) => (a ? modelOps.rope(x, ids) : modelOps.ropeSync(x, ids)), 'ERR_GRPO_SHAPE', 'rope of a rank-2 tensor')
  const odd = s.f32(new Float32Array(5), [1, 1, 5])
  await expectBoth(t, (a) => (a ? modelOps.rope(odd, s.i32([0], [1])) : modelOps.ropeSync(odd, s.i32([0], [1]))), 'ERR_GRPO_SHAPE', 'odd head dimension')
  await expectBoth(t, (a) => (a ? modelOps.swiglu(x, w) : modelOps.swigluSync(x, w)), 'ERR_GRPO_SHAPE', 'up of another shape')
  await expectBoth(t, (a) => (a ? modelOps.swiglu(s.f32([1, 2, 3], [3])) : modelOps.swigluSync(s.f32([1, 2, 3], [3]))), 'ERR_GRPO_SHAPE', 'fused input of odd width')
  await expectBoth(t, (a) => (a ? modelOps.swigluBackward(x, x) : modelOps.swigluBackwardSync(x, x)), 'ERR_GRPO_SHAPE', 'fused backward gradOut of the wrong width')
  await expectBoth(t, (a) => (a ? modelOps.embedding(x, s.i32([0, 3], [2])) : modelOps.embeddingSync(x, s.i32([0, 3], [2]))), 'ERR_GRPO_INVALID_ARG', 'an id past the table')
  await expectBoth(t, (a) => (a ? modelOps.embedding(x, s.i32([-1], [1])) : modelOps.embeddingSync(x, s.i32([-1], [1]))), 'ERR_GRPO_INVALID_ARG', 'a negative id')
  await expectBoth(t, (a) => (a ? modelOps.embedding(x, s.f32([0], [1])) : modelOps.embeddingSync(x, s.f32([0], [1]))), 'ERR_GRPO_DTYPE', 'f32 ids')
  await expectBoth(t, (a) => (a ? modelOps.embedding(w, ids) : modelOps.embeddingSync(w, ids)), 'ERR_GRPO_SHAPE', 'a rank-1 table')
  const g2 = s.f32(new Float32Array(8), [2, 4])
  await expectBoth(t, (a) => (a ? modelOps.embeddingBackward(g2, s.i32([0, 9], [2]), x) : modelOps.embeddingBackwardSync(g2, s.i32([0, 9], [2]), x)), 'ERR_GRPO_INVALID_ARG', 'backward id past the table')
  await expectBoth(t, (a) => (a ? modelOps.embeddingBackward(x, ids, x) : modelOps.embeddingBackwardSync(x, ids, x)), 'ERR_GRPO_SHAPE', 'gradOut of the wrong shape')
  const xb = s.from(new Uint16Array(12), [3, 4], 'bf16')
  await expectBoth(t, (a) => (a ? modelOps.embeddingBackward(g2, ids, xb) : modelOps.embeddingBackwardSync(g2, ids, xb)), 'ERR_GRPO_DTYPE', 'a bf16 gradWeight')
  await expectBoth(t, (a) => (a ? modelOps.add(x, w) : modelOps.addSync(x, w)), 'ERR_GRPO_SHAPE', 'add of different shapes')
  await expectBoth(t, (a) => (a ? modelOps.cast(x, 'f16' as 'bf16') : modelOps.castSync(x, 'f16' as 'bf16')), 'ERR_GRPO_INVALID_ARG', 'cast to f16')
  await expectBoth(t, (a) => (a ? modelOps.castInto(x, w) : modelOps.castIntoSync(x, w)), 'ERR_GRPO_SHAPE', 'castInto of another shape')
})

checkNoLeaks(t, start)

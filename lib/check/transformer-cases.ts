/**
 * The GPU check's correctness cases for the transformer ops (lib/transformer-ops.ts, exported through modelOps):
 * rmsNorm, rope, swiglu, embedding, add, cast, attention forward/backward/decode and the KV-cache write, each with
 * its backward and in-place forms, in f32 and bf16, at shapes with remainders (rows not a multiple of a block,
 * widths not a multiple of a vector), the widths of real models (Qwen2.5-0.5B and 7B), and edge shapes: rows past
 * the 65535 grid limit, positions past 100000, head dimensions 16 and 256, packed sequences with padding between.
 *
 * Like cases.ts, each case builds its inputs once on the host and runs on the CPU backend and on the backend under
 * test; the tolerances are the suite's bounds against float64 (compare.ts ACCURACY) times PAIR. Data movement
 * (embedding, add, cast, the cache write) must agree bit for bit: the contract rounds once, to nearest even.
 */
import * as modelOps from '../model-ops.js'
import type { Tensor } from '../tensor.js'
import { type CaseContext, type CheckCase, EXACT, type Outputs, type Scope, norm, onDevice, values } from './case-kit.js'
import { ACCURACY, PAIR, type Tolerance } from './compare.js'
import { type Rng, storage } from './inputs.js'

type Dt = 'f32' | 'bf16'
const DTS: readonly Dt[] = ['f32', 'bf16']

const outTol = (dt: Dt, factor = 1): Tolerance => norm(PAIR * factor * ACCURACY.transformerOut[dt])
const gradTol = (dt: Dt): Tolerance => norm(PAIR * ACCURACY.transformerGrad[dt])
const STAT = norm(PAIR * ACCURACY.rowStatistic)
const ACCUMULATED = norm(PAIR * ACCURACY.accumulatedF32)

/** n values scale·N(0, 1) stored in `dt` (what Tensor.from takes). */
function normals(rng: Rng, n: number, dt: Dt, scale = 1, offset = 0): Float32Array | Uint16Array {
  return storage(dt, Float32Array.from({ length: n }, () => offset + scale * rng.normal()))
}

/**
 * The raw bits of a float tensor: data-movement ops are compared bit for bit (signed zeros, subnormals, infinities
 * included). Every NaN reads as the canonical quiet NaN: the contract does not fix NaN payloads.
 */
async function bits(t: Tensor): Promise<ArrayLike<number>> {
  const a = (await t.toArray()) as Float32Array | Uint16Array
  if (a instanceof Float32Array) return Uint32Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length), (u) => ((u & 0x7fffffff) > 0x7f800000 ? 0x7fc00000 : u))
  return Uint16Array.from(a, (b) => ((b & 0x7fff) > 0x7f80 ? 0x7fc0 : b))
}

const size = (ctx: CaseContext, full: number, dry: number) => (ctx.dry ? dry : full)

// ---------------------------------------------------------------------------------------------------------
// rmsNorm

function rmsNormCases(dt: Dt, name: string, rowsFull: number, rowsDry: number, C: number, edge = false): CheckCase[] {
  const setup = (ctx: CaseContext) => {
    const rows = size(ctx, rowsFull, rowsDry)
    return { rows, x: normals(ctx.rng, rows * C, dt, 2), w: normals(ctx.rng, C, dt, 0.1, 1), g: normals(ctx.rng, rows * C, dt), gw: normals(ctx.rng, C, 'f32') as Float32Array }
  }
  return [
    {
      op: 'modelOps.rmsNorm',
      name: `rmsNorm ${dt} ${name}`,
      edge,
      async prepare(ctx) {
        const x = setup(ctx)
        return {
          shape: `[${x.rows}, ${C}] ${dt}`,
          tolerances: { out: outTol(dt), rstd: STAT },
          run: (device) =>
            onDevice(device, async (s) => {
              const r = s.keep(await modelOps.rmsNorm(s.from(x.x, [x.rows, C], dt), s.from(x.w, [C], dt), { eps: 1e-6 }))
              return { out: await values(r.out), rstd: await values(r.rstd) }
            }),
        }
      },
    },
    {
      op: 'modelOps.rmsNormBackward',
      name: `rmsNormBackward ${dt} ${name}, gradWeight accumulated`,
      edge,
      async prepare(ctx) {
        const x = setup(ctx)
        return {
          shape: `[${x.rows}, ${C}] ${dt}`,
          tolerances: { gradX: gradTol(dt), gradWeight: ACCUMULATED },
          run: (device) =>
            onDevice(device, async (s) => {
              const xt = s.from(x.x, [x.rows, C], dt), wt = s.from(x.w, [C], dt)
              const r = s.keep(await modelOps.rmsNorm(xt, wt, { eps: 1e-6 }))
              const gw = s.from(x.gw, [C], 'f32')
              const dx = s.keep(await modelOps.rmsNormBackward(s.from(x.g, [x.rows, C], dt), xt, wt, r.rstd, { gradWeight: gw }))
              return { gradX: await values(dx), gradWeight: await values(gw) }
            }),
        }
      },
    },
  ]
}

// ---------------------------------------------------------------------------------------------------------
// rope

function ropeCases(dt: Dt): CheckCase[] {
  const [H, D] = [5, 128]
  const setup = (ctx: CaseContext) => {
    const T = 37
    // Positions of long contexts too: the angle's range reduction is where two sin/cos implementations part.
    const positions = Int32Array.from({ length: T }, (_, i) => (i === 0 ? 0 : ctx.rng.bool(0.25) ? 100000 + ctx.rng.int(31072) : ctx.rng.int(32768)))
    const inv = Array.from({ length: D / 2 }, (_, i) => 1e6 ** (-(2 * i) / D) / (i < D / 4 ? 8 : 1)) // a scaled rope (Llama 3 style)
    return { T, positions, x: normals(ctx.rng, T * H * D, dt), inv }
  }
  const rope = (backward: boolean, scaled: boolean): CheckCase => ({
    op: backward ? 'modelOps.ropeBackward' : 'modelOps.rope',
    name: `${backward ? 'ropeBackward' : 'rope'} ${dt} ${scaled ? 'inverseFrequencies (scaled)' : 'theta 1e6'}, positions to 131071`,
    async prepare(ctx) {
      const x = setup(ctx)
      return {
        shape: `[${x.T}, ${H}, ${D}] ${dt}`,
        tolerances: { out: outTol(dt, 2) },
        run: (device) =>
          onDevice(device, async (s) => {
            const fn = backward ? modelOps.ropeBackward : modelOps.rope
            const out = s.keep(await fn(s.from(x.x, [x.T, H, D], dt), s.from(x.positions, [x.T], 'i32'), scaled ? { inverseFrequencies: x.inv } : { theta: 1e6 }))
            return { out: await values(out) }
          }),
      }
    },
  })
  return [rope(false, false), rope(true, false), ...(dt === 'bf16' ? [rope(false, true)] : [])]
}

// ---------------------------------------------------------------------------------------------------------
// swiglu

function swigluCases(dt: Dt): CheckCase[] {
  const [rows, F] = [67, 1000]
  const setup = (ctx: CaseContext) => ({ gate: normals(ctx.rng, rows * F, dt, 3), up: normals(ctx.rng, rows * F, dt), g: normals(ctx.rng, rows * F, dt) })
  const fused = (gate: Float32Array | Uint16Array, up: Float32Array | Uint16Array) => {
    // [rows, 2F]: each row's gate then its up projection.
    const out = new (gate.constructor as Float32ArrayConstructor)(2 * rows * F)
    for (let r = 0; r < rows; r++) {
      out.set(gate.subarray(r * F, (r + 1) * F), 2 * r * F)
      out.set(up.subarray(r * F, (r + 1) * F), (2 * r + 1) * F)
    }
    return out
  }
  return [
    {
      op: 'modelOps.swiglu',
      name: `swiglu ${dt} separate and fused [rows, 2F]`,
      async prepare(ctx) {
        const x = setup(ctx)
        const joined = fused(x.gate, x.up)
        return {
          shape: `[${rows}, ${F}] ${dt}`,
          tolerances: { out: outTol(dt), fused: outTol(dt) },
          run: (device) =>
            onDevice(device, async (s) => {
              const out = s.keep(await modelOps.swiglu(s.from(x.gate, [rows, F], dt), s.from(x.up, [rows, F], dt)))
              const f = s.keep(await modelOps.swiglu(s.from(joined, [rows, 2 * F], dt)))
              return { out: await values(out), fused: await values(f) }
            }),
        }
      },
    },
    {
      op: 'modelOps.swigluBackward',
      name: `swigluBackward ${dt} separate and fused`,
      async prepare(ctx) {
        const x = setup(ctx)
        const joined = fused(x.gate, x.up)
        return {
          shape: `[${rows}, ${F}] ${dt}`,
          tolerances: { gradGate: outTol(dt, 2), gradUp: outTol(dt, 2), gradFused: outTol(dt, 2) },
          run: (device) =>
            onDevice(device, async (s) => {
              const g = s.from(x.g, [rows, F], dt)
              const r = s.keep(await modelOps.swigluBackward(g, s.from(x.gate, [rows, F], dt), s.from(x.up, [rows, F], dt)))
              const f = s.keep(await modelOps.swigluBackward(g, s.from(joined, [rows, 2 * F], dt)))
              return { gradGate: await values(r.gradGate), gradUp: await values(r.gradUp!), gradFused: await values(f.gradGate) }
            }),
        }
      },
    },
  ]
}

// ---------------------------------------------------------------------------------------------------------
// embedding, add, cast

function embeddingCases(dt: Dt): CheckCase[] {
  const [V, C] = [5003, 200]
  const ids = (rng: Rng, n: number, V: number) => Int32Array.from({ length: n }, () => (rng.bool(0.3) ? rng.int(7) : rng.int(V))) // repeats: the scatter-add's order
  return [
    {
      op: 'modelOps.embedding',
      name: `embedding ${dt} [3, 41] ids from ${V} rows`,
      async prepare(ctx) {
        const table = normals(ctx.rng, V * C, dt), id = ids(ctx.rng, 3 * 41, V)
        return {
          shape: `[${V}, ${C}] ${dt}`,
          tolerances: { out: EXACT },
          run: (device) =>
            onDevice(device, async (s) => {
              const out = s.keep(await modelOps.embedding(s.from(table, [V, C], dt), s.from(id, [3, 41], 'i32')))
              return { out: await bits(out) }
            }),
        }
      },
    },
    {
      op: 'modelOps.embeddingBackward',
      name: `embeddingBackward ${dt} gradients into f32 [${V}, ${C}], repeated ids`,
      async prepare(ctx) {
        const T = 300
        const g = normals(ctx.rng, T * C, dt), id = ids(ctx.rng, T, V), gw0 = normals(ctx.rng, V * C, 'f32', 0.1) as Float32Array
        return {
          shape: `[${T}, ${C}] ${dt} -> [${V}, ${C}] f32`,
          tolerances: { gradWeight: ACCUMULATED },
          run: (device) =>
            onDevice(device, async (s) => {
              const gw = s.from(gw0, [V, C], 'f32')
              await modelOps.embeddingBackward(s.from(g, [T, C], dt), s.from(id, [T], 'i32'), gw)
              return { gradWeight: await values(gw) }
            }),
        }
      },
    },
  ]
}

function addCases(): CheckCase[] {
  const [rows, C] = [33, 1001]
  return (
    [
      ['f32', 'f32'],
      ['f32', 'bf16'],
      ['bf16', 'f32'],
      ['bf16', 'bf16'],
    ] as const
  ).flatMap(([da, db]) => {
    const setup = (ctx: CaseContext) => ({ a: normals(ctx.rng, rows * C, da, 4), b: normals(ctx.rng, rows * C, db) })
    const run = (x: ReturnType<typeof setup>, inPlace: boolean) => (device: Parameters<typeof onDevice>[0]) =>
      onDevice(device, async (s: Scope): Promise<Outputs> => {
        const a = s.from(x.a, [rows, C], da), b = s.from(x.b, [rows, C], db)
        if (!inPlace) return { out: await bits(s.keep(await modelOps.add(a, b))) }
        await modelOps.addInPlace(a, b)
        return { out: await bits(a) }
      })
    return [
      { op: 'modelOps.add', name: `add ${da} + ${db}`, async prepare(ctx: CaseContext) { return { shape: `[${rows}, ${C}]`, tolerances: { out: EXACT }, run: run(setup(ctx), false) } } },
      { op: 'modelOps.addInPlace', name: `addInPlace ${da} += ${db}`, async prepare(ctx: CaseContext) { return { shape: `[${rows}, ${C}]`, tolerances: { out: EXACT }, run: run(setup(ctx), true) } } },
    ]
  })
}

/** f32 values that exercise bf16 rounding: ties, values just off ties, subnormals, ±0, ±inf, the largest finite, NaN. */
function castInput(rng: Rng, n: number): Float32Array {
  const u = new Uint32Array(n)
  const special = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7f7fffff, 0x00000001, 0x807fffff, 0x7fc00001, 0x3f808000, 0x3f818000, 0x3f808001, 0x7f7f8000]
  for (let i = 0; i < n; i++) {
    const k = rng.int(8)
    if (i < special.length) u[i] = special[i]!
    else if (k === 0) u[i] = ((rng.uint32() & 0xffff0000) | 0x8000) >>> 0 // an exact tie
    else if (k === 1) u[i] = rng.uint32() & 0x807fffff // subnormal
    else u[i] = (rng.uint32() & 0xbfffffff) >>> 0 // any finite f32 of magnitude < 2
  }
  return new Float32Array(u.buffer)
}

function castCases(): CheckCase[] {
  const n = 10007
  return [
    {
      op: 'modelOps.cast',
      name: 'cast f32 -> bf16 -> f32 (ties, subnormals, inf, NaN)',
      async prepare(ctx) {
        const x = castInput(ctx.rng, n)
        return {
          shape: `[${n}]`,
          tolerances: { bf16: EXACT, f32: EXACT },
          run: (device) =>
            onDevice(device, async (s) => {
              const b = s.keep(await modelOps.cast(s.from(x, [n], 'f32'), 'bf16'))
              const f = s.keep(await modelOps.cast(b, 'f32'))
              return { bf16: await bits(b), f32: await bits(f) }
            }),
        }
      },
    },
    {
      op: 'modelOps.castInto',
      name: 'castInto f32 -> bf16 and bf16 -> f32',
      async prepare(ctx) {
        const x = castInput(ctx.rng, n)
        return {
          shape: `[${n}]`,
          tolerances: { bf16: EXACT, f32: EXACT },
          run: (device) =>
            onDevice(device, async (s) => {
              const b = s.from(new Uint16Array(n), [n], 'bf16'), f = s.from(new Float32Array(n), [n], 'f32')
              await modelOps.castInto(s.from(x, [n], 'f32'), b)
              await modelOps.castInto(b, f)
              return { bf16: await bits(b), f32: await bits(f) }
            }),
        }
      },
    },
  ]
}

// ---------------------------------------------------------------------------------------------------------
// attention

interface AttnShape {
  lens: number[]
  Hq: number
  Hkv: number
  D: number
  /** the dry run's lengths (default: the same) */
  dryLens?: number[]
}

/** Sequences packed with padding between them, listed in shuffled order (the op must not assume sorted starts). */
function packed(rng: Rng, lens: number[]): { T: number; starts: Int32Array; lens: Int32Array } {
  const starts: number[] = []
  let T = rng.int(3)
  for (const len of lens) {
    starts.push(T)
    T += len + rng.int(4)
  }
  const order = lens.map((_, i) => i)
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return { T, starts: Int32Array.from(order, (i) => starts[i]!), lens: Int32Array.from(order, (i) => lens[i]!) }
}

function attentionCases(dt: Dt, name: string, a: AttnShape, edge = false): CheckCase[] {
  const setup = (ctx: CaseContext) => {
    const p = packed(ctx.rng, ctx.dry && a.dryLens ? a.dryLens : a.lens)
    const n = (H: number) => p.T * H * a.D
    return { ...p, q: normals(ctx.rng, n(a.Hq), dt), k: normals(ctx.rng, n(a.Hkv), dt), v: normals(ctx.rng, n(a.Hkv), dt), dO: normals(ctx.rng, n(a.Hq), dt) }
  }
  const shape = (x: { T: number; lens: Int32Array }) => `T ${x.T} (lengths ${Array.from(x.lens).join(', ')}), heads ${a.Hq}/${a.Hkv}, D ${a.D} ${dt}`
  const inputs = (s: Scope, x: ReturnType<typeof setup>) => ({
    q: s.from(x.q, [x.T, a.Hq, a.D], dt),
    k: s.from(x.k, [x.T, a.Hkv, a.D], dt),
    v: s.from(x.v, [x.T, a.Hkv, a.D], dt),
    opts: { seqStarts: s.from(x.starts, [x.starts.length], 'i32'), seqLens: s.from(x.lens, [x.lens.length], 'i32') },
  })
  return [
    {
      op: 'modelOps.attention',
      name: `attention ${dt} ${name}`,
      edge,
      async prepare(ctx) {
        const x = setup(ctx)
        return {
          shape: shape(x),
          tolerances: { out: norm(PAIR * ACCURACY.attentionOut[dt]), lse: STAT },
          run: (device) =>
            onDevice(device, async (s) => {
              const i = inputs(s, x)
              const r = s.keep(await modelOps.attention(i.q, i.k, i.v, i.opts))
              return { out: await values(r.out), lse: await values(r.lse) }
            }),
        }
      },
    },
    {
      op: 'modelOps.attentionBackward',
      name: `attentionBackward ${dt} ${name}`,
      edge,
      async prepare(ctx) {
        const x = setup(ctx)
        const g = norm(PAIR * ACCURACY.attentionGrad[dt])
        return {
          shape: shape(x),
          tolerances: { gradQ: g, gradK: g, gradV: g },
          run: (device) =>
            onDevice(device, async (s) => {
              const i = inputs(s, x)
              const r = s.keep(await modelOps.attention(i.q, i.k, i.v, i.opts))
              const d = s.keep(await modelOps.attentionBackward(s.from(x.dO, [x.T, a.Hq, a.D], dt), i.q, i.k, i.v, r.out, r.lse, i.opts))
              return { gradQ: await values(d.gradQ), gradK: await values(d.gradK), gradV: await values(d.gradV) }
            }),
        }
      },
    },
  ]
}

/**
 * The KV cache: a prefill of packed prompts with kvCacheWrite, one decode step written after it, and
 * attentionDecode of one query per sequence against the first cacheLens rows.
 */
function decodeCases(dt: Dt, Hq: number, Hkv: number, D: number): CheckCase[] {
  const [B, S] = [3, 300]
  const setup = (ctx: CaseContext) => {
    const prefix = Int32Array.from({ length: B }, (_, b) => [1, 257, 1 + ctx.rng.int(S - 2)][b]!)
    const p = packed(ctx.rng, Array.from(prefix))
    // packed() lists sequences in shuffled order; sequence b is the one at slot b of the cache.
    return {
      ...p,
      k: normals(ctx.rng, p.T * Hkv * D, dt),
      v: normals(ctx.rng, p.T * Hkv * D, dt),
      kNew: normals(ctx.rng, B * Hkv * D, dt),
      vNew: normals(ctx.rng, B * Hkv * D, dt),
      q: normals(ctx.rng, B * Hq * D, dt),
      // The cache's other rows hold stale values: they must be neither read (decode) nor written (the cache write).
      stale: normals(ctx.rng, B * Hkv * S * D, dt, 100),
    }
  }
  const fill = async (s: Scope, x: ReturnType<typeof setup>) => {
    const kCache = s.from(x.stale, [B, Hkv, S, D], dt), vCache = s.from(x.stale, [B, Hkv, S, D], dt)
    await modelOps.kvCacheWrite(s.from(x.k, [x.T, Hkv, D], dt), s.from(x.v, [x.T, Hkv, D], dt), kCache, vCache, {
      cacheStarts: s.from(new Int32Array(B), [B], 'i32'),
      seqStarts: s.from(x.starts, [B], 'i32'),
      seqLens: s.from(x.lens, [B], 'i32'),
    })
    await modelOps.kvCacheWrite(s.from(x.kNew, [B, Hkv, D], dt), s.from(x.vNew, [B, Hkv, D], dt), kCache, vCache, { cacheStarts: s.from(x.lens, [B], 'i32') })
    return { kCache, vCache, cacheLens: s.from(x.lens.map((n) => n + 1), [B], 'i32') }
  }
  const shape = `cache [${B}, ${Hkv}, ${S}, ${D}] ${dt}, ${Hq} query heads`
  return [
    {
      op: 'modelOps.kvCacheWrite',
      name: `kvCacheWrite ${dt} prefill of packed prompts then a decode step, heads ${Hkv} D ${D}`,
      async prepare(ctx) {
        const x = setup(ctx)
        return {
          shape,
          tolerances: { kCache: EXACT, vCache: EXACT },
          run: (device) =>
            onDevice(device, async (s) => {
              const c = await fill(s, x)
              return { kCache: await bits(c.kCache), vCache: await bits(c.vCache) }
            }),
        }
      },
    },
    {
      op: 'modelOps.attentionDecode',
      name: `attentionDecode ${dt} heads ${Hq}/${Hkv} D ${D}, cache lengths 2, 258 and random`,
      async prepare(ctx) {
        const x = setup(ctx)
        return {
          shape,
          tolerances: { out: norm(PAIR * ACCURACY.attentionOut[dt]) },
          run: (device) =>
            onDevice(device, async (s) => {
              const c = await fill(s, x)
              const out = s.keep(await modelOps.attentionDecode(s.from(x.q, [B, Hq, D], dt), c.kCache, c.vCache, c.cacheLens))
              return { out: await values(out) }
            }),
        }
      },
    },
  ]
}

// ---------------------------------------------------------------------------------------------------------
// the table

export function transformerCases(): CheckCase[] {
  return [
    ...DTS.flatMap((dt) => [
      ...rmsNormCases(dt, 'rows 67, C 896 (Qwen2.5-0.5B)', 67, 67, 896),
      ...rmsNormCases(dt, 'rows 5, C 3584 (Qwen2.5-7B)', 5, 5, 3584),
      ...ropeCases(dt),
      ...swigluCases(dt),
      ...embeddingCases(dt),
      ...attentionCases(dt, 'packed lengths 1, 65, 130, 7 with padding, GQA 14/2, D 64', { lens: [1, 65, 130, 7], Hq: 14, Hkv: 2, D: 64 }),
      ...decodeCases(dt, 14, 2, 64),
    ]),
    ...attentionCases('f32', 'lengths 33, 70, heads 2/1, D 256', { lens: [33, 70], Hq: 2, Hkv: 1, D: 256 }),
    ...attentionCases('bf16', 'length 40, heads 2/2, D 16', { lens: [40], Hq: 2, Hkv: 2, D: 16 }),
    ...decodeCases('bf16', 28, 4, 128),
    ...addCases(),
    ...castCases(),
    // edge shapes
    ...DTS.flatMap((dt) => rmsNormCases(dt, 'rows 70000 (grid y/z limit), C 64', 70000, 150, 64, true)),
    ...attentionCases('bf16', 'one sequence of 2048 and one of 300, GQA 28/4, D 128 (Qwen2.5-7B)', { lens: [2048, 300], Hq: 28, Hkv: 4, D: 128, dryLens: [130, 20] }, true),
  ]
}

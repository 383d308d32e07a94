/**
 * How the GPU check compares an output of the backend under test (cuda, or simt in the dry run) with the same
 * output of the CPU backend on the same inputs.
 *
 * The accuracy table (docs/ops.md, the math contract §7) bounds each backend's distance to the float64
 * reference; two backends that each meet it are within twice the table of each other (triangle inequality),
 * so the pairwise limits below are the table's values times PAIR. NaN never passes; where one side holds an
 * infinity the other must hold the same one.
 */

/** Each backend is within the table of the reference, so the two are within twice the table of each other. */
export const PAIR = 2

/** The accuracy table, against the float64 reference. */
export const ACCURACY = {
  /** logp, lse, entropy: ‖out − ref‖/‖ref‖ */
  rowOutputs: 1e-5,
  /** logp elementwise, f32 logits */
  logpElementwise: 1e-4,
  /** the loss and the statistics, relative to max(|ref|, mass of the terms) */
  loss: 1e-5,
  /** gradients written in f32 */
  gradF32: 1e-5,
  /** gradients written in bf16 / f16: one rounding */
  gradBf16: 8e-3,
  gradF16: 1e-3,
  /** group advantages */
  advantages: 1e-6,
  /**
   * The transformer ops (docs/ops.md "Transformer ops"), as the suite bounds them against float64
   * (test/ops/transformer-ops.test.ts, test/ops/attention.test.ts), ‖out − ref‖/‖ref‖: an output rounded once
   * to its dtype (rmsNorm, swiglu, rope at twice it: sin/cos), gradients through a few f32 sums.
   */
  transformerOut: { f32: 2e-6, bf16: 6e-3 },
  transformerGrad: { f32: 1e-5, bf16: 1.2e-2 },
  /** rmsNorm's rstd, attention's lse (f32 whatever the dtype) */
  rowStatistic: 5e-6,
  /** f32 sums of a few terms into an accumulated weight gradient (rmsNorm's weight, embedding's table) */
  accumulatedF32: 1e-5,
  attentionOut: { f32: 1e-5, bf16: 1.2e-2 },
  attentionGrad: { f32: 1e-4, bf16: 3e-2 },
} as const

export type Tolerance =
  /** ‖got − want‖₂ / ‖want‖₂ ≤ tol (‖got‖ ≤ tol when want is all zeros); optionally max |got − want| ≤ elementwise. */
  | { kind: 'norm'; tol: number; elementwise?: number }
  /** the same values, element by element (integers, masks, counts) */
  | { kind: 'exact' }
  /** |got − want| ≤ rtol · max(|want|, mass) for a scalar (mass: Σ|terms| of a sum that can cancel), or ≤ atol when that scale is 0 */
  | { kind: 'scalar'; rtol: number; atol?: number; mass?: number }
  /** at most `max` differing elements (sampled tokens where two correct backends may part at a near tie) */
  | { kind: 'mismatches'; max: number }
  /** |got_i − want_i| ≤ bound_i for every i (a GEMM's f32 summation bound, element by element) */
  | { kind: 'bound'; bound: ArrayLike<number> }

export interface OutputCheck {
  output: string
  ok: boolean
  /** what was measured: 'relative-norm', 'max-abs', 'mismatches', 'abs-diff' */
  metric: string
  value: number
  limit: number
  /** the worst element: index, value under test, CPU value */
  worst?: { index: number; got: number; want: number }
  note?: string
}

type Values = number | ArrayLike<number>

function isArray(v: Values): v is ArrayLike<number> {
  return typeof v !== 'number'
}

function relativeNorm(got: ArrayLike<number>, want: ArrayLike<number>): { value: number; maxAbs: number; worst: number } {
  let diff = 0, wantSq = 0, gotSq = 0, maxAbs = 0, worst = -1
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!, w = want[i]!
    if (Number.isNaN(g) || Number.isNaN(w)) return { value: Infinity, maxAbs: Infinity, worst: i }
    if (!Number.isFinite(g) || !Number.isFinite(w)) {
      if (g === w) continue
      return { value: Infinity, maxAbs: Infinity, worst: i }
    }
    const d = g - w
    diff += d * d
    wantSq += w * w
    gotSq += g * g
    if (Math.abs(d) > maxAbs) {
      maxAbs = Math.abs(d)
      worst = i
    }
  }
  return { value: wantSq > 0 ? Math.sqrt(diff / wantSq) : Math.sqrt(gotSq), maxAbs, worst }
}

/** Compares one output; `got` is the backend under test's, `want` the CPU backend's. */
export function compareOutput(output: string, got: Values | undefined, want: Values | undefined, tol: Tolerance): OutputCheck {
  if (got === undefined || want === undefined) {
    return { output, ok: false, metric: 'present', value: 0, limit: 1, note: `missing on the ${got === undefined ? 'backend under test' : 'cpu'} side` }
  }
  if (isArray(got) !== isArray(want) || (isArray(got) && isArray(want) && got.length !== want.length)) {
    const len = (v: Values) => (isArray(v) ? `${v.length} values` : 'a number')
    return { output, ok: false, metric: 'shape', value: 0, limit: 0, note: `${len(got)} under test, ${len(want)} on cpu` }
  }
  const g: ArrayLike<number> = isArray(got) ? got : [got]
  const w: ArrayLike<number> = isArray(want) ? want : [want]
  const at = (i: number) => (i >= 0 ? { index: i, got: g[i]!, want: w[i]! } : undefined)
  switch (tol.kind) {
    case 'norm': {
      const r = relativeNorm(g, w)
      if (tol.elementwise !== undefined && r.value <= tol.tol && !(r.maxAbs <= tol.elementwise)) {
        return { output, ok: false, metric: 'max-abs', value: r.maxAbs, limit: tol.elementwise, worst: at(r.worst) }
      }
      return { output, ok: r.value <= tol.tol, metric: 'relative-norm', value: r.value, limit: tol.tol, worst: at(r.worst) }
    }
    case 'exact':
    case 'mismatches': {
      let count = 0, first = -1
      for (let i = 0; i < g.length; i++) {
        if (!Object.is(g[i], w[i]) && !(g[i] === 0 && w[i] === 0)) {
          count++
          if (first < 0) first = i
        }
      }
      const limit = tol.kind === 'exact' ? 0 : tol.max
      return { output, ok: count <= limit, metric: 'mismatches', value: count, limit, worst: at(first) }
    }
    case 'bound': {
      // The value reported is the worst |got − want| / bound; the limit is 1.
      let worstRatio = -1, worst = -1
      for (let i = 0; i < g.length; i++) {
        const ratio = g[i] === w[i] ? 0 : Number.isNaN(g[i]! - w[i]!) ? Infinity : Math.abs(g[i]! - w[i]!) / tol.bound[i]!
        if (ratio > worstRatio) {
          worstRatio = ratio
          worst = i
        }
      }
      worstRatio = Math.max(0, worstRatio)
      return { output, ok: g.length === tol.bound.length && worstRatio <= 1, metric: 'share-of-bound', value: worstRatio, limit: 1, worst: at(worst) }
    }
    case 'scalar': {
      const a = g[0]!, b = w[0]!
      const scale = Math.max(Math.abs(b), tol.mass ?? 0)
      const limit = scale > 0 ? tol.rtol * scale : (tol.atol ?? 0)
      const d = Math.abs(a - b)
      const ok = !Number.isNaN(a) && !Number.isNaN(b) && (a === b || d <= limit)
      return { output, ok, metric: 'abs-diff', value: a === b ? 0 : d, limit, worst: { index: 0, got: a, want: b } }
    }
  }
}

/**
 * Comparisons against the float64 reference (docs/math.md §7).
 *
 * - Arrays: ‖out − ref‖₂ / ‖ref‖₂ over the whole output. When ‖ref‖ = 0 the ratio is undefined; then ‖out‖ itself
 *   is the error, so "error ≤ tol" means the output is (near) zero too.
 * - NaN never passes: a NaN anywhere in the output, or an infinity where the reference is finite, is error ∞.
 *   Where the reference itself is ±∞ (logp of a banned target), the output must hold the same infinity.
 * - Scalars that are sums of signed terms (the loss, pgLoss, klMean with k1, approxKl) are compared relative to
 *   max(|ref|, mass), mass = Σ|term| from the reference: a float32 sum is accurate relative to the mass of its
 *   terms, and the value of a cancelling sum can be far below it. For sums of non-negative terms mass = |ref|
 *   and this is the plain relative error.
 */
import type { Test } from 'tap'
import type { LossStats, LossStatsMass } from '../reference/grpo-reference.js'

type Num = ArrayLike<number>

export function norm(a: Num): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i] * a[i]
  return Math.sqrt(s)
}

export interface ArrayError {
  error: number
  /** index of the largest absolute difference (or of the first non-finite mismatch) */
  worst: number
  got: number
  want: number
}

export function relativeError(out: Num, ref: Num): ArrayError {
  if (out.length !== ref.length) return { error: Infinity, worst: -1, got: out.length, want: ref.length }
  let diff = 0
  let refSq = 0
  let outSq = 0
  let worst = -1
  let worstAbs = -1
  for (let i = 0; i < out.length; i++) {
    const o = out[i]
    const r = ref[i]
    if (Number.isNaN(o) || Number.isNaN(r)) return { error: Infinity, worst: i, got: o, want: r }
    if (!Number.isFinite(r) || !Number.isFinite(o)) {
      if (o === r) continue
      return { error: Infinity, worst: i, got: o, want: r }
    }
    const d = o - r
    diff += d * d
    refSq += r * r
    outSq += o * o
    if (Math.abs(d) > worstAbs) {
      worstAbs = Math.abs(d)
      worst = i
    }
  }
  const error = refSq > 0 ? Math.sqrt(diff) / Math.sqrt(refSq) : Math.sqrt(outSq)
  return { error, worst, got: worst >= 0 ? out[worst] : NaN, want: worst >= 0 ? ref[worst] : NaN }
}

/** Asserts ‖out − ref‖/‖ref‖ ≤ tol. */
export function checkRelative(t: Test, out: Num, ref: Num, tol: number, what: string, floor = 0): boolean {
  const e = relativeError(out, ref)
  // floor (per element, e.g. certainRowFloor): ‖out − ref‖ ≤ tol·‖ref‖ + floor·√n passes too
  const ok = e.error <= tol || (floor > 0 && Number.isFinite(e.error) && norm(Array.from(out, (o, i) => (o === ref[i] ? 0 : o - ref[i]))) <= tol * norm(Array.from(ref, (r) => (Number.isFinite(r) ? r : 0))) + floor * Math.sqrt(out.length))
  return t.ok(ok, `${what}: relative error ${e.error.toExponential(2)} ≤ ${tol}${floor > 0 ? ` (+ ${floor.toExponential(1)} per element)` : ''}`, {
    length: out.length,
    worstIndex: e.worst,
    got: e.got,
    want: e.want,
  })
}

/** Asserts |out_i − ref_i| ≤ atol for every i (NaN fails; equal infinities pass). */
export function checkElementwise(t: Test, out: Num, ref: Num, atol: number, what: string): boolean {
  let worst = -1
  let worstAbs = 0
  let bad = out.length !== ref.length
  for (let i = 0; i < out.length && !bad; i++) {
    const o = out[i]
    const r = ref[i]
    if (Number.isNaN(o) || Number.isNaN(r) || (!Number.isFinite(o) || !Number.isFinite(r) ? o !== r : Math.abs(o - r) > atol)) {
      bad = true
      worst = i
      break
    }
    if (Number.isFinite(r) && Math.abs(o - r) > worstAbs) {
      worstAbs = Math.abs(o - r)
      worst = i
    }
  }
  return t.ok(!bad, `${what}: every |out − ref| ≤ ${atol} (max ${worstAbs.toExponential(2)})`, {
    worstIndex: worst,
    got: worst >= 0 ? out[worst] : undefined,
    want: worst >= 0 ? ref[worst] : undefined,
  })
}

/** Asserts every listed element is exactly zero (±0). */
export function checkZeroAt(t: Test, out: Num, indices: Iterable<number>, what: string): boolean {
  for (const i of indices) {
    if (out[i] !== 0) return t.fail(`${what}: expected 0 at ${i}, got ${out[i]}`)
  }
  return t.pass(`${what}: zero where expected`)
}

/**
 * The resolution of a near-certain row. docs/math.md §7: the CPU exponential is 0 below 2^-125 of the row's largest
 * term, so a row's rest r = Σ_{j≠max} p_j below (V − 1)·2^-125 is dropped: logp = −log1p(r) is off by up to that,
 * and the entropy (≈ r·(1 + |ln r|), |ln r| ≤ 87 there) by 88 times it; and float32 itself holds such values only in
 * steps of 2^-149 (logp −9e-44 is 64 of them). A batch whose every row is that certain (GRPO_TEST_SEED=3636877598 on
 * simt, f16 grid, nll: logp −9e-44, loss −2.2e-45) has outputs no kernel can give to 1e-5 of themselves, so logp,
 * the loss and the statistics are held to the relative bound plus this floor per row or token.
 */
export function certainRowFloor(V: number): number {
  return Math.max(0, V - 1) * 88 * 2 ** -125 + 2 ** -149
}

/** The absolute floor of a loss or statistic summed over `tokens` per-token terms of rows of V logits (weights ≤ 2). */
export function lossFloor(tokens: number, V: number): number {
  return 2 * tokens * certainRowFloor(V)
}

/** |got − want| ≤ rtol·max(|want|, mass) + floor, or |got| ≤ atol when want and mass are 0. NaN fails. */
export function scalarOk(got: number, want: number, rtol: number, atol: number, mass = Math.abs(want), floor = 0): boolean {
  if (typeof got !== 'number' || Number.isNaN(got) || Number.isNaN(want)) return false
  const scale = Math.max(Math.abs(want), mass)
  if (scale === 0) return Math.abs(got) <= atol
  return Math.abs(got - want) <= rtol * scale + floor
}

export function checkScalar(t: Test, got: number, want: number, what: string, rtol = 1e-5, atol = 1e-6, mass?: number, floor = 0): boolean {
  return t.ok(scalarOk(got, want, rtol, atol, mass, floor), `${what}: ${got} vs reference ${want}`, { got, want, mass, rtol, floor })
}

const STAT_KEYS: ReadonlyArray<keyof LossStats> = [
  'loss',
  'pgLoss',
  'klMean',
  'entropyMean',
  'clipFrac',
  'clipFracLower',
  'ratioMean',
  'ratioMax',
  'approxKl',
  'tokens',
  'rolloutWeightMean',
  'rolloutWeightMax',
  'rolloutCorrectedFrac',
  'rolloutGapMean',
  'rolloutGapMax',
  'rolloutKl',
  'entropySelectedFrac',
  'entropyThreshold',
]
/** Shares of counted tokens: decided by branches the generators keep away from, so they must match exactly. */
const COUNT_KEYS: ReadonlyArray<keyof LossStats> = ['clipFrac', 'clipFracLower', 'rolloutCorrectedFrac', 'entropySelectedFrac']

/**
 * Every statistic of §6. tokens must match exactly; clipFrac and clipFracLower are counts over tokens and must
 * match exactly too (the generators keep every token away from the clip and cap boundaries, so a kernel and
 * the reference cannot disagree on a branch); the others within rtol of max(|ref|, mass) plus floor (lossFloor).
 */
export function checkStats(t: Test, got: LossStats, want: LossStats, mass: LossStatsMass, what: string, rtol = 1e-5, floor = 0): boolean {
  const failures: string[] = []
  if (got === null || typeof got !== 'object') return t.fail(`${what}: stats is not an object`)
  for (const key of STAT_KEYS) {
    const g = got[key]
    const w = want[key]
    if (typeof g !== 'number') {
      failures.push(`${key}: missing (${String(g)})`)
      continue
    }
    if (key === 'tokens') {
      if (g !== w) failures.push(`tokens: ${g} vs ${w}`)
    } else if (COUNT_KEYS.includes(key)) {
      const n = want.tokens
      if (Number.isNaN(g) || Math.abs(g * n - w * n) > 0.5 || (n === 0 && g !== w)) failures.push(`${key}: ${g} vs ${w} (of ${n} tokens)`)
    } else if (!scalarOk(g, w, rtol, 1e-6, mass[key], floor)) {
      failures.push(`${key}: ${g} vs ${w} (mass ${mass[key]})`)
    }
  }
  return t.ok(failures.length === 0, `${what}: stats match the reference`, { failures, got, want })
}

/** Asserts two typed arrays hold the same bytes (t.same is too slow on large arrays). */
export function checkSameBits(t: Test, got: ArrayBufferView, want: ArrayBufferView, what: string): boolean {
  const a = new Uint8Array(got.buffer, got.byteOffset, got.byteLength)
  const b = new Uint8Array(want.buffer, want.byteOffset, want.byteLength)
  let first = a.length === b.length ? -1 : Math.min(a.length, b.length)
  for (let i = 0; i < a.length && first < 0; i++) if (a[i] !== b[i]) first = i
  return t.ok(first < 0, `${what}: identical bits`, { firstDifferentByte: first, lengths: [a.length, b.length] })
}

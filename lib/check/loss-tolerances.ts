/**
 * The GPU check's tolerances for a loss and its statistics, shared by the row ops' cases (cases.ts) and the fused
 * linear loss's (linear-loss-cases.ts): each scalar relative to the mass of the terms it sums, so that a cancelling
 * sum (a loss over advantages of both signs, approxKl = mean(old − logp)) is judged by what float sums can promise.
 */
import type { LossOptions } from '../ops.js'
import { EXACT } from './case-kit.js'
import { ACCURACY, PAIR, type Tolerance } from './compare.js'

export interface LossSetup {
  B: number
  L: number
  /** the largest entropy a token can have (ln V for logits), for the entropy bonus's share of the mass */
  maxEntropy: number
  logp: Float32Array // the CPU's, at counted positions
  old?: Float32Array
  ref?: Float32Array
  adv: Float32Array
  perToken: boolean
  mask?: Uint8Array
  options: LossOptions
}

/** Per-token weights of docs/ops.md ("Points the math leaves open"). */
function weights(s: LossSetup): Float64Array {
  const { B, L, options: o } = s
  const m = (i: number) => (s.mask ? s.mask[i]! : 1)
  const w = new Float64Array(B * L)
  const lengths = Array.from({ length: B }, (_, b) => {
    let n = 0
    for (let l = 0; l < L; l++) n += m(b * L + l)
    return n
  })
  const N = lengths.reduce((a, n) => a + n, 0)
  const Bn = lengths.filter((n) => n > 0).length
  const agg = o.lossAgg ?? 'token-mean'
  for (let b = 0; b < B; b++) {
    let sb: number
    if (agg === 'token-mean') sb = 1 / (o.normalizer ?? N)
    else if (agg === 'seq-mean-token-mean') sb = 1 / (lengths[b]! * (o.normalizer ?? Bn))
    else if (agg === 'seq-mean-token-sum') sb = 1 / (o.normalizer ?? Bn)
    else sb = 1 / (o.normalizer ?? B * (o.normLength ?? L))
    for (let l = 0; l < L; l++) w[b * L + l] = Number.isFinite(sb) ? m(b * L + l) * sb : 0
  }
  return w
}

/**
 * Tolerances of the loss and its statistics: each scalar relative to max(|value|, Σ|its terms|), at `rtol` (the
 * row ops' PAIR·ACCURACY.loss unless a looser op says otherwise: the fused linear loss's logits come from an f32 GEMM).
 */
export function lossTolerances(s: LossSetup, rtol = PAIR * ACCURACY.loss): Record<string, Tolerance> {
  const o = s.options
  const w = weights(s)
  const C = o.logRatioClamp === null ? Infinity : (o.logRatioClamp ?? 20)
  const beta = o.beta ?? 0
  const entropyBound = Math.abs(o.entropyCoef ?? 0) * s.maxEntropy
  let loss = 0, pg = 0, kl = 0, gap = 0, tokens = 0
  for (let i = 0; i < w.length; i++) {
    if (s.mask && !s.mask[i]) continue
    tokens++
    const a = Math.abs(s.adv[s.perToken ? i : Math.floor(i / s.L)]!)
    const d = s.old ? Math.max(-C, Math.min(C, s.logp[i]! - s.old[i]!)) : 0
    const pgTerm = o.loss === 'nll' ? Math.abs(s.logp[i]!) : a * Math.max(1, Math.exp(d))
    const e = s.ref ? Math.max(-20, Math.min(20, s.ref[i]! - s.logp[i]!)) : 0
    const klTerm = s.ref ? Math.exp(e) + Math.abs(e) + 1 : 0
    loss += w[i]! * (pgTerm + beta * klTerm + entropyBound)
    pg += w[i]! * pgTerm
    kl += klTerm
    gap += s.old ? Math.abs(s.logp[i]! - s.old[i]!) : 0
  }
  const scalar = (mass = 0): Tolerance => ({ kind: 'scalar', rtol, atol: 1e-6, mass })
  // clipFrac and clipFracLower are counts over tokens: the inputs keep every token off the branch points, so
  // the counts must agree exactly (a difference below half a token).
  const count: Tolerance = { kind: 'scalar', rtol: 0, atol: tokens > 0 ? 0.5 / tokens : 0 }
  return {
    loss: scalar(loss),
    'stats.loss': scalar(loss),
    'stats.pgLoss': scalar(pg),
    'stats.klMean': scalar(tokens ? kl / tokens : 0),
    'stats.entropyMean': scalar(),
    'stats.clipFrac': count,
    'stats.clipFracLower': count,
    'stats.ratioMean': scalar(),
    'stats.ratioMax': scalar(),
    'stats.approxKl': scalar(tokens ? gap / tokens : 0),
    'stats.tokens': EXACT,
  }
}


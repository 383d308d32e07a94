/**
 * Seeded random inputs for the ops suite.
 *
 * One seed per process: GRPO_TEST_SEED when set, else a fresh one. Every subtest draws from its own stream,
 * derived from the seed and the subtest's label, so a failure replays with the same seed even when run alone
 * (tap --grep) or after other subtests changed.
 *
 * The generators shape the inputs so that the tolerances of docs/math.md §7 are meaningful for a correct float32 kernel:
 * no token sits within float rounding of a clip, clamp or sign boundary (a kernel whose logp differs from the
 * reference by 1e-6 would otherwise legitimately take the other branch), and loss-test targets are drawn from
 * the row's own softmax, as a sampling policy would, so |logp| stays in the range real models produce.
 */
import { randomInt } from 'node:crypto'
import {
  K3_VALUE_CLAMP_POINTS,
  bf16BitsToNumber,
  f16BitsToNumber,
  numberToBf16Bits,
  numberToF16Bits,
} from '../reference/grpo-reference.js'

function parseSeed(): number {
  const env = process.env.GRPO_TEST_SEED
  if (env !== undefined && env !== '') {
    const n = Number(env)
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`GRPO_TEST_SEED must be a uint32, got ${env}`)
    return n
  }
  return randomInt(0, 0xffffffff)
}

export const SEED: number = parseSeed()

/** Size factor of the option grid (GRPO_TEST_SCALE, default 1); slow backends run with < 1. */
export const TEST_SCALE: number = (() => {
  const s = Number(process.env.GRPO_TEST_SCALE ?? '1')
  return Number.isFinite(s) && s > 0 ? s : 1
})()

/** The big edge cases (V = 262144, L = 70000) run unless GRPO_TEST_SKIP_BIG=1. */
export const RUN_BIG: boolean = process.env.GRPO_TEST_SKIP_BIG !== '1'

export function seedComment(): string {
  return `seed ${SEED} (replay: GRPO_TEST_SEED=${SEED}), scale ${TEST_SCALE}`
}

/** FNV-1a over the label, so each subtest gets an independent stream. */
function hashLabel(label: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** mulberry32: small, fast, and good enough for test inputs (not for statistics). */
export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  uint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let z = this.state
    z = Math.imul(z ^ (z >>> 15), z | 1)
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61)
    return (z ^ (z >>> 14)) >>> 0
  }
  /** [0, 1) with 53 random bits */
  uniform(): number {
    return (this.uint32() * 2 ** 21 + (this.uint32() >>> 11)) / 2 ** 53
  }
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform()
  }
  /** integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.uniform() * n)
  }
  /** integer in [lo, hi] */
  intIn(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1)
  }
  bool(p = 0.5): boolean {
    return this.uniform() < p
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]
  }
  normal(): number {
    // Box-Muller; 1 − u keeps the log away from 0
    const u = 1 - this.uniform()
    const v = this.uniform()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }
  logUniform(lo: number, hi: number): number {
    return Math.exp(this.range(Math.log(lo), Math.log(hi)))
  }
  /** a fresh independent stream (for fast-check properties that need their own randomness) */
  fork(): Rng {
    return new Rng(this.uint32())
  }
}

export function rngFor(label: string): Rng {
  return new Rng((SEED ^ hashLabel(label)) >>> 0)
}

// ---------------------------------------------------------------------------------------------------------
// dtypes
// ---------------------------------------------------------------------------------------------------------

export type FloatDType = 'f32' | 'bf16' | 'f16'

/** The value a float64 takes once stored in `dtype` (round to nearest even). */
export function storeAs(dtype: FloatDType, x: number): number {
  if (dtype === 'f32') return Math.fround(x)
  return dtype === 'bf16' ? bf16BitsToNumber(numberToBf16Bits(x)) : f16BitsToNumber(numberToF16Bits(x))
}

/** Raw storage for Tensor.from: a Float32Array for f32, the half-precision bits otherwise. */
export function storageOf(dtype: FloatDType, values: ArrayLike<number>): Float32Array | Uint16Array {
  if (dtype === 'f32') return Float32Array.from(values)
  const bits = new Uint16Array(values.length)
  const encode = dtype === 'bf16' ? numberToBf16Bits : numberToF16Bits
  for (let i = 0; i < values.length; i++) bits[i] = encode(values[i])
  return bits
}

/** Widen stored values (Float32Array, or half-precision bits) exactly to float64. */
export function widen(dtype: FloatDType, stored: Float32Array | Uint16Array): Float64Array {
  if (dtype === 'f32') return Float64Array.from(stored as Float32Array)
  const decode = dtype === 'bf16' ? bf16BitsToNumber : f16BitsToNumber
  const out = new Float64Array(stored.length)
  for (let i = 0; i < stored.length; i++) out[i] = decode(stored[i])
  return out
}

// ---------------------------------------------------------------------------------------------------------
// logits, targets, masks
// ---------------------------------------------------------------------------------------------------------

export interface LogitsSpec {
  B: number
  L: number
  V: number
  dtype: FloatDType
  /** a fixed scale for every row, or [lo, hi]: each row draws its own scale log-uniformly */
  scale?: number | [number, number]
  /** share of rows that get some −∞ entries (banned tokens); never a whole row */
  negInfRows?: number
  /** false: no competitor cluster near the maximum (rows at large scale are then degenerate); default true */
  competitors?: boolean
}

export interface GeneratedLogits {
  /** the exact stored values, widened to float64 (what the reference is fed) */
  values: Float64Array
  /** the storage to hand to Tensor.from */
  storage: Float32Array | Uint16Array
  rowScale: Float64Array
  B: number
  L: number
  V: number
  dtype: FloatDType
}

/**
 * Each row is scale·N(0,1). Rows at scale ≥ 4 also get a cluster of 1..5 competitors within a few units of the
 * maximum: a real policy at high logit scale is peaked but rarely degenerate. In a degenerate row (runner-up 30+
 * below the max) a sampled target has logp ≈ −1e-13 and the entropy is ≈ 1e-12: the relative error of an output
 * made of such rows measures digits no training step uses, so the relative-norm checks run on non-degenerate
 * rows and degenerate ones get their own test (competitors: false). Banned tokens (−∞) are placed before the
 * targets are drawn, so a target never lands on one.
 */
export function genLogits(rng: Rng, spec: LogitsSpec): GeneratedLogits {
  const { B, L, V, dtype } = spec
  const scaleSpec = spec.scale ?? [0.01, 100]
  const negInfRows = spec.negInfRows ?? 0.25
  const rows = B * L
  const raw = new Float64Array(rows * V)
  const rowScale = new Float64Array(rows)
  for (let t = 0; t < rows; t++) {
    const s = typeof scaleSpec === 'number' ? scaleSpec : rng.logUniform(scaleSpec[0], scaleSpec[1])
    rowScale[t] = s
    const o = t * V
    let max = -Infinity
    for (let j = 0; j < V; j++) {
      raw[o + j] = s * rng.normal()
      max = Math.max(max, raw[o + j])
    }
    if (s >= 4 && V > 1 && spec.competitors !== false) {
      const k = 1 + rng.int(Math.min(5, V - 1))
      for (let i = 0; i < k; i++) raw[o + rng.int(V)] = max - Math.abs(rng.normal()) * 2
    }
    if (V > 1 && rng.bool(negInfRows)) {
      const banned = 1 + rng.int(Math.max(1, Math.floor(V / 4)))
      for (let i = 0; i < banned; i++) raw[o + rng.int(V)] = -Infinity
      // keep at least one finite entry (the row's first finite one, or entry 0 restored)
      let finite = 0
      for (let j = 0; j < V; j++) if (raw[o + j] !== -Infinity) finite++
      if (finite === 0) raw[o] = s * rng.normal()
    }
  }
  const storage = storageOf(dtype, raw)
  const values = widen(dtype, storage)
  // rounding to f16 can overflow a huge logit to +∞; the scales used here stay far below 65504
  for (let i = 0; i < values.length; i++) {
    if (Number.isNaN(values[i]) || values[i] === Infinity) throw new Error('generator produced a non-finite logit')
  }
  return { values, storage, rowScale, B, L, V, dtype }
}

export interface TargetSpec {
  temperature?: number
  /** share of positions whose target is uniform over the row's allowed tokens instead of sampled */
  uniformShare?: number
  /** uniform targets only on rows whose scale is at most this (keeps |logp| moderate in loss tests) */
  uniformMaxScale?: number
}

/** Targets drawn from softmax(x / T) (as a sampler would), some uniform over the finite entries. */
export function genTargets(rng: Rng, logits: GeneratedLogits, spec: TargetSpec = {}): Int32Array {
  const { values, V, rowScale } = logits
  const T = spec.temperature ?? 1
  const rows = logits.B * logits.L
  const targets = new Int32Array(rows)
  for (let t = 0; t < rows; t++) {
    const o = t * V
    const uniform = rng.bool(spec.uniformShare ?? 0.3) && rowScale[t] <= (spec.uniformMaxScale ?? Infinity)
    if (uniform) {
      const allowed: number[] = []
      for (let j = 0; j < V; j++) if (values[o + j] !== -Infinity) allowed.push(j)
      targets[t] = rng.pick(allowed)
      continue
    }
    let max = -Infinity
    for (let j = 0; j < V; j++) max = Math.max(max, values[o + j] / T)
    let sum = 0
    for (let j = 0; j < V; j++) sum += Math.exp(values[o + j] / T - max)
    let u = rng.uniform() * sum
    let chosen = -1
    for (let j = 0; j < V; j++) {
      const p = Math.exp(values[o + j] / T - max)
      if (p === 0) continue
      chosen = j
      u -= p
      if (u <= 0) break
    }
    targets[t] = chosen
  }
  return targets
}

export type MaskKind = 'none' | 'ones' | 'padded' | 'random'

/**
 * 'none': no mask tensor; 'ones': an explicit all-ones mask; 'padded': right padding with random lengths,
 * some sequences entirely masked; 'random': scattered zeros.
 */
export function genMask(rng: Rng, B: number, L: number, kind: MaskKind, emptySequenceShare = 0.2): Uint8Array | undefined {
  if (kind === 'none') return undefined
  const mask = new Uint8Array(B * L)
  for (let b = 0; b < B; b++) {
    const length = kind === 'padded' ? (rng.bool(emptySequenceShare) ? 0 : rng.intIn(1, L)) : L
    for (let l = 0; l < L; l++) {
      mask[b * L + l] = kind === 'random' ? (rng.bool(0.7) ? 1 : 0) : l < length ? 1 : 0
    }
  }
  return mask
}

/** Padding ids at masked positions, as tokenizers produce: an implementation must not read them. */
export function padTargets(targets: Int32Array, mask: Uint8Array | undefined, padId = -100): Int32Array {
  const out = Int32Array.from(targets)
  if (mask) for (let i = 0; i < out.length; i++) if (mask[i] === 0) out[i] = padId
  return out
}

// ---------------------------------------------------------------------------------------------------------
// per-token inputs of the loss
// ---------------------------------------------------------------------------------------------------------

/** f32-exact advantages, N(0, 1) with some exact zeros. */
export function genAdvantages(rng: Rng, n: number, zeroShare = 0.1): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = rng.bool(zeroShare) ? 0 : rng.normal()
  return a
}

/** Draws x from `draw` until it is at least `margin` away from every point in `avoid`. */
function drawAvoiding(rng: Rng, draw: () => number, avoid: readonly number[], margin: number): number {
  for (;;) {
    const x = draw()
    if (avoid.every((p) => Math.abs(x - p) >= margin)) return x
  }
}

export interface RatioBoundaries {
  clipLow?: number
  clipHigh?: number
  dualClip?: number | null
  logRatioClamp?: number | null
  ratioCap?: number | null
}

/** The log-ratio values where a branch of §3 switches (clip edges, dual-clip cap, log-ratio clamp). */
export function logRatioBoundaries(o: RatioBoundaries): number[] {
  const points = [Math.log(1 - (o.clipLow ?? 0.2)), Math.log(1 + (o.clipHigh ?? 0.2))]
  if (o.dualClip != null) points.push(Math.log(o.dualClip))
  if (o.ratioCap != null) points.push(Math.log(o.ratioCap))
  const C = o.logRatioClamp === undefined ? 20 : o.logRatioClamp
  if (C !== null) points.push(C, -C)
  return points
}

/**
 * old = logp − logr with logr straddling the clip range (and, now and then, the dual-clip cap and the clamp),
 * kept `margin` away from every branch point; rounded to f32. Masked positions get `padValue`.
 */
export function genOldLogp(
  rng: Rng,
  logp: ArrayLike<number>,
  mask: Uint8Array | undefined,
  boundaries: RatioBoundaries,
  opts: { margin?: number; padValue?: number; wide?: number } = {},
): Float32Array {
  const avoid = logRatioBoundaries(boundaries)
  const margin = opts.margin ?? 2e-3
  const wide = opts.wide ?? 2.5
  const old = new Float32Array(logp.length)
  for (let i = 0; i < logp.length; i++) {
    if (mask && mask[i] === 0) {
      old[i] = opts.padValue ?? 0
      continue
    }
    const logr = drawAvoiding(rng, () => (rng.bool(0.65) ? rng.range(-0.45, 0.45) : rng.range(-wide, wide)), avoid, margin)
    old[i] = logp[i] - logr
  }
  return old
}

/**
 * The sampler's log-probs: rollout = old − d with d mostly small (a bf16 sampler's gap), some far (exp(±3)), kept
 * `margin` away from log(max) and log(min) of a token-level correction. Masked positions get `padValue`.
 */
export function genRolloutLogp(
  rng: Rng,
  old: ArrayLike<number>,
  mask: Uint8Array | undefined,
  bounds: { max?: number | null; min?: number | null } = {},
  opts: { margin?: number; padValue?: number } = {},
): Float32Array {
  const avoid: number[] = []
  if (bounds.max != null) avoid.push(Math.log(bounds.max))
  if (bounds.min != null) avoid.push(Math.log(bounds.min))
  const out = new Float32Array(old.length)
  for (let i = 0; i < old.length; i++) {
    if (mask && mask[i] === 0) {
      out[i] = opts.padValue ?? 0
      continue
    }
    const d = drawAvoiding(rng, () => (rng.bool(0.7) ? rng.range(-0.05, 0.05) : rng.range(-3, 3)), avoid, opts.margin ?? 2e-3)
    out[i] = old[i] - d
  }
  return out
}

/** The d = ref − logp values where a KL estimator switches branch: sign of abs, the k3 clamps. */
export const KL_BOUNDARIES: readonly number[] = [0, -20, 20, ...K3_VALUE_CLAMP_POINTS]

/** ref = logp + d, |d| mostly small, some past the k3 clamps; `margin` away from every branch point. */
export function genRefLogp(
  rng: Rng,
  logp: ArrayLike<number>,
  mask: Uint8Array | undefined,
  opts: { margin?: number; padValue?: number } = {},
): Float32Array {
  const margin = opts.margin ?? 2e-3
  const ref = new Float32Array(logp.length)
  for (let i = 0; i < logp.length; i++) {
    if (mask && mask[i] === 0) {
      ref[i] = opts.padValue ?? 0
      continue
    }
    const d = drawAvoiding(
      rng,
      () => {
        const sign = rng.bool() ? 1 : -1
        const u = rng.uniform()
        if (u < 0.75) return sign * rng.range(0.01, 1.5)
        if (u < 0.92) return sign * rng.range(1.5, 4)
        return sign * rng.range(9, 25)
      },
      KL_BOUNDARIES,
      margin,
    )
    ref[i] = logp[i] + d
  }
  return ref
}

// ---------------------------------------------------------------------------------------------------------
// rewards
// ---------------------------------------------------------------------------------------------------------

export type RewardKind = 'binary' | 'normal' | 'small-int' | 'constant'

/** f32-exact rewards for one group. */
export function genGroupRewards(rng: Rng, n: number, kind: RewardKind): number[] {
  const out: number[] = []
  const c = Math.fround(rng.range(-2, 2))
  for (let i = 0; i < n; i++) {
    switch (kind) {
      case 'binary':
        out.push(rng.bool() ? 1 : 0)
        break
      case 'normal':
        out.push(Math.fround(rng.normal() + 0.5))
        break
      case 'small-int':
        out.push(rng.intIn(-3, 5))
        break
      case 'constant':
        out.push(c)
        break
    }
  }
  return out
}

export interface GeneratedRewards {
  rewards: Float32Array
  /** present when the groups are ragged / shuffled ids; absent with a fixed groupSize */
  groupIds?: Int32Array
  groupSize?: number
}

/** Consecutive groups of `groupSize`, mixing reward kinds so that some groups have zero spread. */
export function genRewardsBySize(rng: Rng, groups: number, groupSize: number): GeneratedRewards {
  const rewards: number[] = []
  const kinds: RewardKind[] = ['binary', 'normal', 'small-int', 'constant']
  for (let g = 0; g < groups; g++) rewards.push(...genGroupRewards(rng, groupSize, rng.pick(kinds)))
  return { rewards: Float32Array.from(rewards), groupSize }
}

/**
 * Ragged groups (sizes 1..maxSize, singletons included) under arbitrary, possibly negative and non-contiguous ids,
 * listed in shuffled order.
 */
export function genRewardsByIds(rng: Rng, groups: number, maxSize: number): GeneratedRewards {
  const kinds: RewardKind[] = ['binary', 'normal', 'small-int', 'constant']
  const entries: Array<[number, number]> = []
  const usedIds = new Set<number>()
  for (let g = 0; g < groups; g++) {
    let id: number
    do id = rng.intIn(-50, 1000 + 20 * groups)
    while (usedIds.has(id))
    usedIds.add(id)
    const size = rng.bool(0.2) ? 1 : rng.intIn(1, maxSize)
    for (const r of genGroupRewards(rng, size, rng.pick(kinds))) entries.push([id, r])
  }
  for (let i = entries.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[entries[i], entries[j]] = [entries[j], entries[i]]
  }
  return {
    rewards: Float32Array.from(entries.map((e) => e[1])),
    groupIds: Int32Array.from(entries.map((e) => e[0])),
  }
}

/**
 * The float64 reference of the GRPO math contract (docs/math.md) with the points docs/ops.md fixes.
 *
 * Every backend is judged against this file, so it is written to be read, not to be fast: plain loops over
 * flat arrays of numbers, every quantity in float64, each block tagged with the docs/math.md section it implements.
 * It shares no code with lib/ or csrc/ on purpose: a misreading of the contract there must not be copied here.
 *
 * Layouts follow docs/math.md: logits are [B, L, V] flattened row-major, per-token arrays are [B, L].
 * The reference is only fed valid inputs (the content checks of docs/ops.md are the implementation's job);
 * the one exception is groupAdvantages with nonFinite 'error', which throws so that its own tests can see it.
 */

export type KlEstimator = 'k1' | 'abs' | 'k2' | 'k3' | 'k3+'
export type LossAgg = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum' | 'seq-mean-token-sum-norm'

export interface LossOptions {
  temperature?: number
  clipLow?: number
  clipHigh?: number
  dualClip?: number | null
  logRatioClamp?: number | null
  beta?: number
  kl?: KlEstimator
  entropyCoef?: number
  lossAgg?: LossAgg
  normalizer?: number
  normLength?: number
  loss?: 'grpo' | 'nll' | 'cispo'
  /** §3.2: 'sequence' is GSPO (the ratio of the sequence's mean log-ratio, GSPO-token gradient) */
  ratioLevel?: 'token' | 'sequence'
  /** §3.1: δ, the cap on the unclipped term's ratio (INTELLECT-2); null/undefined = off */
  ratioCap?: number | null
  /** §3.1: the KL term times the (differentiated) ratio */
  klBiasCorrection?: boolean
  /** §3.4: share of counted tokens, by entropy, that keep the policy term */
  topEntropyQuantile?: number
  /** §3.3 */
  rolloutCorrection?: RolloutCorrectionOptions | null
  /** §4: TRL's aggregation names */
  lossType?: 'grpo' | 'bnpo' | 'dapo' | 'dr_grpo' | null
}

export interface RolloutCorrectionOptions {
  level?: 'token' | 'sequence'
  mode?: 'truncate' | 'mask'
  /** default 3; null = none */
  max?: number | null
  /** default none */
  min?: number | null
}

export interface LossStats {
  loss: number
  pgLoss: number
  klMean: number
  entropyMean: number
  clipFrac: number
  clipFracLower: number
  ratioMean: number
  ratioMax: number
  approxKl: number
  tokens: number
  rolloutWeightMean: number
  rolloutWeightMax: number
  rolloutCorrectedFrac: number
  rolloutGapMean: number
  rolloutGapMax: number
  rolloutKl: number
  entropySelectedFrac: number
  entropyThreshold: number
}

/**
 * For each signed statistic, the sum of the magnitudes of the terms that make it up (Σ|w·ℓ_t| for the loss,
 * Σ m·|KL_t| / N for klMean, …). A finite-precision sum can only be asked to be accurate relative to this mass,
 * not to its own value when the terms cancel; compare.ts uses it for that purpose.
 */
export type LossStatsMass = Record<keyof LossStats, number>

type Num = ArrayLike<number>

// ---------------------------------------------------------------------------------------------------------
// Half-precision formats. Widening is exact; narrowing rounds a float64 to nearest, ties to even, directly
// (no detour through float32, which could round twice).
// ---------------------------------------------------------------------------------------------------------

const f32Scratch = new Float32Array(1)
const u32Scratch = new Uint32Array(f32Scratch.buffer)

/** bf16 bits → the exact value (bf16 is the top half of a float32). */
export function bf16BitsToNumber(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16
  return f32Scratch[0]
}

/** f16 bits → the exact value: 1 sign, 5 exponent bits (bias 15), 10 fraction bits. */
export function f16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exponent = (bits >> 10) & 0x1f
  const fraction = bits & 0x3ff
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN
  if (exponent === 0) return sign * fraction * 2 ** -24 // subnormal (and ±0)
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15)
}

/**
 * Rounds |x| (finite, > 0) to a binary format with `mantissaBits` stored fraction bits and smallest normal
 * exponent `minExponent`, to nearest, ties to even. Returns the rounded magnitude (possibly ≥ the overflow
 * threshold, which the caller turns into infinity).
 */
function roundMagnitude(a: number, mantissaBits: number, minExponent: number): number {
  let e = Math.floor(Math.log2(a))
  // log2 can be off by one next to powers of two; settle e so that 2^e <= a < 2^(e+1) exactly
  while (2 ** e > a) e--
  while (2 ** (e + 1) <= a) e++
  if (e < minExponent) e = minExponent // subnormal range: the quantum stops shrinking
  const quantum = 2 ** (e - mantissaBits)
  const scaled = a / quantum // exact: division by a power of two
  let n = Math.floor(scaled)
  const rest = scaled - n
  if (rest > 0.5 || (rest === 0.5 && n % 2 === 1)) n += 1
  return n * quantum
}

/** float64 → bf16 bits, round to nearest even. NaN → 0x7fc0 (with sign). */
export function numberToBf16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0
  const negative = x < 0 || Object.is(x, -0)
  const a = Math.abs(x)
  let magnitudeBits: number
  if (a === Infinity) magnitudeBits = 0x7f80
  else if (a === 0) magnitudeBits = 0
  else {
    const rounded = roundMagnitude(a, 7, -126)
    if (rounded >= 2 ** 128) magnitudeBits = 0x7f80
    else {
      f32Scratch[0] = rounded // exact: a bf16 value is a float32 value
      magnitudeBits = u32Scratch[0] >>> 16
    }
  }
  return (negative ? 0x8000 : 0) | magnitudeBits
}

/** float64 → f16 bits, round to nearest even. NaN → 0x7e00. */
export function numberToF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00
  const negative = x < 0 || Object.is(x, -0)
  const a = Math.abs(x)
  let magnitudeBits: number
  if (a === Infinity) magnitudeBits = 0x7c00
  else if (a === 0) magnitudeBits = 0
  else {
    const rounded = roundMagnitude(a, 10, -14)
    if (rounded >= 65536) magnitudeBits = 0x7c00 // 65504 is the largest finite f16
    else if (rounded < 2 ** -14) magnitudeBits = Math.round(rounded / 2 ** -24) // subnormal: count quanta
    else {
      const e = Math.floor(Math.log2(rounded))
      const fraction = Math.round((rounded / 2 ** e - 1) * 1024) // exact after rounding above
      magnitudeBits = ((e + 15) << 10) | fraction
    }
  }
  return (negative ? 0x8000 : 0) | magnitudeBits
}

export const roundToBf16 = (x: number): number => bf16BitsToNumber(numberToBf16Bits(x))
export const roundToF16 = (x: number): number => f16BitsToNumber(numberToF16Bits(x))

// ---------------------------------------------------------------------------------------------------------
// §1 Token log-probs and entropy
// ---------------------------------------------------------------------------------------------------------

export interface RowStats {
  lse: number
  logp: number
  entropy: number
  /**
   * What an f32 kernel may leave out of the entropy: its terms p_j·(−log p_j) with p_j below 2^-125 (f32 has no
   * normal number there; the CPU kernels flush them, docs/math-exp.md), at most V·2^-125·max(−log p_j). A row
   * whose target holds all but 1e-100 of the mass has an entropy of that size, which no f32 kernel returns.
   */
  entropyFloor: number
}

/**
 * The softmax of one row, in the form every §1 and §5 quantity is computed from without cancellation.
 * With m the largest z and k one index where it is reached:
 *   d_j  = z_j − m = (x_j − x_k) / T              (≤ 0; −∞ for a banned token)
 *   rest = Σ_{j≠k} exp(d_j)                        (so Σ_j exp(z_j) = e^m·(1 + rest))
 *   lse  = m + log1p(rest),  log p_j = d_j − log1p(rest)
 * Keeping the 1 of the max apart matters for confident rows: with rest = 1e-13, log(1 + rest) in float64 keeps
 * only three digits of rest, and logp, 1 − p_y and the entropy of that row would inherit the loss.
 */
export interface RowSoftmax {
  /** d_j = z_j − max z */
  shifted: Float64Array
  max: number
  /** log Σ_j exp(d_j) = log1p(rest) ≥ 0 */
  logSum: number
}

export function rowSoftmax(logits: Num, offset: number, V: number, temperature: number): RowSoftmax {
  let k = -1
  for (let j = 0; j < V; j++) if (k < 0 || logits[offset + j] > logits[offset + k]) k = j
  const top = logits[offset + k]
  const shifted = new Float64Array(V)
  // x_j − x_k is exact in float64 for float32 inputs; the division by T then rounds once
  for (let j = 0; j < V; j++) shifted[j] = (logits[offset + j] - top) / temperature
  let rest = 0
  for (let j = 0; j < V; j++) if (j !== k) rest += Math.exp(shifted[j])
  return { shifted, max: top / temperature, logSum: Math.log1p(rest) }
}

/**
 * One row: z = x / T, lse = log Σ exp(z_j), logp = z_y − lse, H = lse − Σ p_j z_j, in the form of rowSoftmax.
 * The entropy is accumulated as Σ p_j (lse − z_j) = Σ p_j (log1p(rest) − d_j), a sum of non-negative terms (no
 * cancellation), skipping p_j = 0 so that banned tokens (d_j = −∞) contribute 0 instead of 0·∞ = NaN.
 */
export function rowStats(logits: Num, offset: number, V: number, temperature: number, target: number): RowStats {
  const { shifted, max, logSum } = rowSoftmax(logits, offset, V, temperature)
  let entropy = 0
  let worst = 0
  for (let j = 0; j < V; j++) {
    const logProb = shifted[j] - logSum
    const p = Math.exp(logProb)
    if (p > 0) entropy += p * -logProb
    if (Number.isFinite(logProb)) worst = Math.max(worst, -logProb)
  }
  return { lse: max + logSum, logp: shifted[target] - logSum, entropy, entropyFloor: V * 2 ** -125 * worst }
}

export interface TokenLogprobsInput {
  logits: Num
  targets: Num
  mask?: Num
  B: number
  L: number
  V: number
}

export interface TokenLogprobsResult {
  logp: Float64Array
  lse: Float64Array
  entropy: Float64Array
  /** RowStats.entropyFloor per position */
  entropyFloor: Float64Array
}

/** §1 over a batch. Positions with m = 0 are not read and get 0 in every output (docs/ops.md). */
export function tokenLogprobs(input: TokenLogprobsInput, options: { temperature?: number } = {}): TokenLogprobsResult {
  const { logits, targets, mask, B, L, V } = input
  const T = options.temperature ?? 1
  const logp = new Float64Array(B * L)
  const lse = new Float64Array(B * L)
  const entropy = new Float64Array(B * L)
  const entropyFloor = new Float64Array(B * L)
  for (let t = 0; t < B * L; t++) {
    if (mask && mask[t] === 0) continue
    const row = rowStats(logits, t * V, V, T, targets[t])
    logp[t] = row.logp
    lse[t] = row.lse
    entropy[t] = row.entropy
    entropyFloor[t] = row.entropyFloor
  }
  return { logp, lse, entropy, entropyFloor }
}

// ---------------------------------------------------------------------------------------------------------
// §2 Group-relative advantages
// ---------------------------------------------------------------------------------------------------------

export interface GroupAdvantagesOptions {
  groupSize?: number
  groupIds?: Num
  baseline?: 'mean' | 'leave-one-out'
  scale?: 'group' | 'batch' | 'none'
  eps?: number
  nonFinite?: 'error' | 'exclude'
}

export interface GroupAdvantagesResult {
  advantages: Float64Array
  groupIds: number[]
  groupMean: Float64Array
  groupStd: Float64Array
  zeroStdFraction: number
}

/** Mean and unbiased standard deviation in two passes (never E[r²] − E[r]²). std is 0 below two values. */
function meanAndStd(values: number[]): { mean: number; std: number } {
  const n = values.length
  if (n === 0) return { mean: 0, std: 0 }
  let sum = 0
  for (const v of values) sum += v
  const mean = sum / n
  if (n < 2) return { mean, std: 0 }
  let squares = 0
  for (const v of values) squares += (v - mean) * (v - mean)
  return { mean, std: Math.sqrt(squares / (n - 1)) }
}

export function groupAdvantages(rewards: Num, options: GroupAdvantagesOptions): GroupAdvantagesResult {
  const K = rewards.length
  const baseline = options.baseline ?? 'mean'
  const scale = options.scale ?? 'group'
  const eps = options.eps ?? 1e-6
  const nonFinite = options.nonFinite ?? 'error'

  // group of each completion: consecutive runs of G, or the ids as given
  const idOf: number[] = []
  for (let k = 0; k < K; k++) idOf.push(options.groupIds ? options.groupIds[k] : Math.floor(k / options.groupSize!))

  for (let k = 0; k < K; k++) {
    if (!Number.isFinite(rewards[k]) && nonFinite === 'error') throw new Error(`non-finite reward at ${k}`)
  }
  // with 'exclude', a non-finite reward is left out of every statistic (docs/ops.md)
  const counted = (k: number): boolean => Number.isFinite(rewards[k])

  const ids = [...new Set(idOf)].sort((a, b) => a - b)
  const indexOf = new Map(ids.map((id, i) => [id, i]))
  const members = new Map<number, number[]>() // group id → its finite rewards
  for (const id of ids) members.set(id, [])
  for (let k = 0; k < K; k++) if (counted(k)) members.get(idOf[k])!.push(rewards[k])

  const groupMean = new Float64Array(ids.length)
  const groupStd = new Float64Array(ids.length)
  const flat = new Map<number, boolean>() // group id → its finite rewards are all equal
  let zeroSpread = 0
  ids.forEach((id, i) => {
    const values = members.get(id)!
    const { mean, std } = meanAndStd(values)
    groupMean[i] = mean
    groupStd[i] = std
    // a group of one (or none) has no spread; "all equal" is tested exactly, not as std < tolerance
    const allEqual = values.every((v) => v === values[0])
    flat.set(id, allEqual)
    if (allEqual) zeroSpread++
  })

  const finiteAll: number[] = []
  for (let k = 0; k < K; k++) if (counted(k)) finiteAll.push(rewards[k])
  const batchStd = meanAndStd(finiteAll).std

  const advantages = new Float64Array(K)
  for (let k = 0; k < K; k++) {
    if (!counted(k)) continue // A = 0
    const id = idOf[k]
    if (flat.get(id)) continue // singleton or zero spread: exactly 0, never NaN
    const values = members.get(id)!
    const n = values.length
    const i = indexOf.get(id)!
    let mu: number
    if (baseline === 'mean') mu = groupMean[i]
    else {
      let sum = 0
      for (const v of values) sum += v
      mu = (sum - rewards[k]) / (n - 1)
    }
    const centered = rewards[k] - mu
    if (scale === 'none') advantages[k] = centered
    else if (scale === 'group') advantages[k] = centered / (groupStd[i] + eps) // whole group's std, also for LOO
    else advantages[k] = centered / (batchStd + eps)
  }
  return {
    advantages,
    groupIds: ids,
    groupMean,
    groupStd,
    zeroStdFraction: ids.length === 0 ? 0 : zeroSpread / ids.length,
  }
}

// ---------------------------------------------------------------------------------------------------------
// §3 Per-token policy loss
// ---------------------------------------------------------------------------------------------------------

export interface TokenTerms {
  /** ℓpg (after clip and dual clip); in nll mode −logp */
  pg: number
  /** ∂ℓpg/∂logp; in nll mode −1 */
  pgGrad: number
  /** the KL value (0 without ref) and its gradient per the estimator table */
  kl: number
  klGrad: number
  ratio: number
  /** ∂ratio/∂logp: r (GSPO-token at sequence level), 0 where the log-ratio clamp holds */
  ratioGrad: number
  clipped: boolean
  /** the loss is held by a cap: dual clip or the ratio cap δ */
  dualCapped: boolean
}

/** The point where exp(d) − d − 1 crosses 10, on each side of 0 (bisection in float64, done once). */
function k3Crossing(lo: number, hi: number): number {
  const f = (d: number): number => Math.exp(d) - d - 1 - 10
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2
    if (Math.sign(f(mid)) === Math.sign(f(lo))) lo = mid
    else hi = mid
  }
  return (lo + hi) / 2
}
export const K3_VALUE_CLAMP_POINTS: readonly number[] = [k3Crossing(-12, -10), k3Crossing(2, 3)]

/** §3 KL table. d = ref − logp. */
export function klTerm(estimator: KlEstimator, logp: number, ref: number): { value: number; grad: number } {
  const diff = logp - ref
  switch (estimator) {
    case 'k1':
      return { value: diff, grad: 1 }
    case 'abs':
      return { value: Math.abs(diff), grad: Math.sign(diff) } // sign(0) = 0 (Math.sign(-0) is -0, also 0)
    case 'k2':
      return { value: 0.5 * diff * diff, grad: diff }
    case 'k3':
    case 'k3+': {
      const d = ref - logp
      const dc = Math.min(Math.max(d, -20), 20)
      const raw = Math.expm1(dc) - dc // exp(d') − d' − 1, without cancelling the 1 away
      const value = Math.min(Math.max(raw, -10), 10)
      if (estimator === 'k3+') return { value, grad: diff }
      const clampActive = Math.abs(d) > 20 || raw > 10 || raw < -10 // strictly, docs/ops.md
      return { value, grad: clampActive ? 0 : -Math.expm1(d) } // 1 − exp(d)
    }
  }
}

export function tokenTerms(
  logp: number,
  old: number | undefined,
  ref: number | undefined,
  advantage: number,
  options: LossOptions,
  sequenceLogRatio?: number,
): TokenTerms {
  const epsLow = options.clipLow ?? 0.2
  const epsHigh = options.clipHigh ?? 0.2
  const dual = options.dualClip ?? null
  const C = options.logRatioClamp === undefined ? 20 : options.logRatioClamp
  const estimator = options.kl ?? 'k3'
  const A = advantage

  // The ratio is computed in both modes: in nll mode it only feeds the monitoring statistics.
  // Without old, old = logp as a constant: logr = 0, r = 1.
  // GSPO (§3.2): the sequence's mean log-ratio replaces the token's; its derivative is taken GSPO-token's way.
  const rawLogRatio = old === undefined ? 0 : options.ratioLevel === 'sequence' ? sequenceLogRatio! : logp - old
  const clampActive = C !== null && Math.abs(rawLogRatio) > C // strictly
  const logRatio = clampActive ? Math.sign(rawLogRatio) * C! : rawLogRatio
  const ratio = Math.exp(logRatio)
  const ratioGrad = clampActive ? 0 : ratio

  // KL is evaluated whenever ref is given (klMean is a monitoring statistic even when β = 0)
  const kl = ref === undefined ? { value: 0, grad: 0 } : klTerm(estimator, logp, ref)

  if (options.loss === 'nll') {
    return { pg: -logp, pgGrad: -1, kl: kl.value, klGrad: kl.grad, ratio, ratioGrad, clipped: false, dualCapped: false }
  }

  if (options.loss === 'cispo') {
    // MiniMax-M1: ŵ = min(r, 1 + ε_high), held constant; ℓ = −ŵ·A·logp
    const ceiling = 1 + epsHigh
    const weight = Math.min(ratio, ceiling)
    return { pg: -weight * A * logp, pgGrad: -weight * A, kl: kl.value, klGrad: kl.grad, ratio, ratioGrad, clipped: ratio > ceiling, dualCapped: false }
  }

  // δ (INTELLECT-2) caps the ratio inside the unclipped term only
  const delta = options.ratioCap ?? null
  const overDelta = delta !== null && ratio > delta
  const pg1 = -A * (overDelta ? delta! : ratio)
  const clippedRatio = Math.min(Math.max(ratio, 1 - epsLow), 1 + epsHigh)
  const pg2 = -A * clippedRatio
  let pg = Math.max(pg1, pg2)
  const unclippedActive = pg1 >= pg2 // ties count as unclipped
  const clipped = pg2 > pg1
  let dualCapped = overDelta && unclippedActive
  if (dual !== null && A < 0 && -dual * A < pg) {
    pg = -dual * A
    dualCapped = true
  }
  const pgGrad = unclippedActive && !dualCapped && !clampActive ? -A * ratio : 0
  return { pg, pgGrad, kl: kl.value, klGrad: kl.grad, ratio, ratioGrad, clipped, dualCapped }
}

// ---------------------------------------------------------------------------------------------------------
// §3.3 Rollout correction and §3.4 top-entropy selection: per-token factors computed before the token terms
// ---------------------------------------------------------------------------------------------------------

export interface RolloutWeights {
  /** the weight of each token's policy term (0 at masked positions) */
  weights: Float64Array
  stats: Pick<LossStats, 'rolloutWeightMean' | 'rolloutWeightMax' | 'rolloutCorrectedFrac' | 'rolloutGapMean' | 'rolloutGapMax' | 'rolloutKl'>
}

/** d = old − rollout; w = exp(d) per token or exp(Σ_seq d) per sequence, then truncated to [min, max] or masked outside. */
export function rolloutWeights(old: Num, rollout: Num, mask: Num | undefined, B: number, L: number, rc: RolloutCorrectionOptions): RolloutWeights {
  const level = rc.level ?? 'token'
  const mode = rc.mode ?? 'truncate'
  const upper = rc.max === undefined ? 3 : rc.max === null ? Infinity : rc.max
  const lower = rc.min ?? 0
  const counted = (t: number): boolean => !mask || mask[t] !== 0
  const seqSum = new Float64Array(B)
  for (let t = 0; t < B * L; t++) if (counted(t)) seqSum[Math.floor(t / L)] += old[t] - rollout[t]
  const weights = new Float64Array(B * L)
  let n = 0, sum = 0, max = 0, outside = 0, gapSum = 0, gapMax = 0, k3 = 0
  for (let t = 0; t < B * L; t++) {
    if (!counted(t)) continue
    const d = old[t] - rollout[t]
    const raw = Math.exp(level === 'sequence' ? seqSum[Math.floor(t / L)] : d)
    const out = raw < lower || raw > upper
    const w = mode === 'mask' ? (out ? 0 : raw) : Math.min(Math.max(raw, lower), upper)
    weights[t] = w
    n++
    sum += w
    max = Math.max(max, w)
    if (out) outside++
    gapSum += Math.abs(d)
    gapMax = Math.max(gapMax, Math.abs(d))
    k3 += Math.expm1(d) - d
  }
  const mean = (x: number): number => (n > 0 ? x / n : 0)
  return {
    weights,
    stats: { rolloutWeightMean: mean(sum), rolloutWeightMax: max, rolloutCorrectedFrac: mean(outside), rolloutGapMean: mean(gapSum), rolloutGapMax: gapMax, rolloutKl: mean(k3) },
  }
}

/**
 * TRL's top_entropy_quantile: the threshold is the (1 − ρ)-quantile of the counted tokens' entropies with linear
 * interpolation between order statistics (torch.quantile's default); a counted token is kept when H ≥ threshold.
 */
export function entropySelection(entropy: Num, mask: Num | undefined, count: number, rho: number): { selected: Float64Array; threshold: number; fraction: number } {
  const values: number[] = []
  for (let t = 0; t < count; t++) if (!mask || mask[t] !== 0) values.push(entropy[t])
  const selected = new Float64Array(count)
  if (values.length === 0) return { selected, threshold: 0, fraction: 0 }
  values.sort((a, b) => a - b)
  const position = (values.length - 1) * (1 - rho)
  const below = Math.floor(position)
  const above = Math.min(below + 1, values.length - 1)
  const threshold = values[below] + (values[above] - values[below]) * (position - below)
  let kept = 0
  for (let t = 0; t < count; t++) {
    if ((mask && mask[t] === 0) || !(entropy[t] >= threshold)) continue
    selected[t] = 1
    kept++
  }
  return { selected, threshold, fraction: kept / values.length }
}

/** §4: TRL's loss_type names as aggregations (dr_grpo's constant is normLength). */
export function aggregationOf(options: LossOptions): LossAgg {
  switch (options.lossType) {
    case 'grpo':
      return 'seq-mean-token-mean'
    case 'bnpo':
    case 'dapo':
      return 'token-mean'
    case 'dr_grpo':
      return 'seq-mean-token-sum-norm'
    default:
      return options.lossAgg ?? 'token-mean'
  }
}

// ---------------------------------------------------------------------------------------------------------
// §4 Aggregation weights
// ---------------------------------------------------------------------------------------------------------

/** w[b,l] = m[b,l]·s_b; `normalizer` replaces N, Bn or B·Lnorm; a zero denominator gives w = 0. */
export function lossWeights(mask: Num | undefined, B: number, L: number, options: LossOptions): Float64Array {
  const agg = aggregationOf(options)
  const m = (b: number, l: number): number => (mask ? mask[b * L + l] : 1)
  const seqTokens = new Array<number>(B).fill(0) // |o_b|
  for (let b = 0; b < B; b++) for (let l = 0; l < L; l++) seqTokens[b] += m(b, l)
  const N = seqTokens.reduce((a, c) => a + c, 0)
  const Bn = seqTokens.filter((c) => c > 0).length
  const Lnorm = options.normLength ?? L
  const safeInverse = (x: number): number => (x > 0 ? 1 / x : 0)

  const w = new Float64Array(B * L)
  for (let b = 0; b < B; b++) {
    let s: number
    switch (agg) {
      case 'token-mean':
        s = safeInverse(options.normalizer ?? N)
        break
      case 'seq-mean-token-mean':
        s = seqTokens[b] > 0 ? safeInverse(seqTokens[b] * (options.normalizer ?? Bn)) : 0
        break
      case 'seq-mean-token-sum':
        s = safeInverse(options.normalizer ?? Bn)
        break
      case 'seq-mean-token-sum-norm':
        s = safeInverse(options.normalizer ?? B * Lnorm)
        break
    }
    for (let l = 0; l < L; l++) w[b * L + l] = m(b, l) * s
  }
  return w
}

// ---------------------------------------------------------------------------------------------------------
// §3, §4, §6 over a batch of per-token log-probs (ops.policyLoss)
// ---------------------------------------------------------------------------------------------------------

export interface PolicyLossInput {
  logp: Num
  oldLogp?: Num
  refLogp?: Num
  /** the sampler's log-probs (§3.3) */
  rolloutLogp?: Num
  /** [B] (per sequence) or [B·L] (per token) */
  advantages: Num
  mask?: Num
  entropy?: Num
  /**
   * The entropies §3.4 ranks tokens by (default: `entropy`). The selection is a step function of them: where two
   * tokens' entropies differ by less than the kernel's f32 rounding of them, the exact values and the kernel's may
   * order them differently, and either choice is right. A test that checks a kernel computing its own entropies
   * passes those here (checked against the exact ones apart), so that both sides select the same tokens and
   * everything downstream is compared exactly as without a tie.
   */
  selectionEntropy?: Num
  B: number
  L: number
}

export interface PolicyLossResult {
  loss: number
  stats: LossStats
  /** Σ|term| of each statistic, see LossStatsMass */
  mass: LossStatsMass
  /** g_t = w_t·(∂ℓpg/∂logp + β·∂KL/∂logp), −w_t in nll mode; 0 at masked positions */
  gradLogp: Float64Array
  weights: Float64Array
  /** the entropy selection of §3.4 (1 where the entropy bonus applies) */
  entropyWeights: Float64Array
}

export function policyLoss(input: PolicyLossInput, options: LossOptions): PolicyLossResult {
  const { logp, oldLogp, refLogp, rolloutLogp, advantages, mask, entropy, B, L } = input
  const beta = options.beta ?? 0
  const cH = options.entropyCoef ?? 0
  const nll = options.loss === 'nll'
  const biasCorrected = options.klBiasCorrection === true
  // [B] is per sequence; with L = 1 the two layouts coincide, so the length decides without ambiguity
  const perToken = advantages.length !== B
  const w = lossWeights(mask, B, L, options)
  const gradLogp = new Float64Array(B * L)
  const counted = (t: number): boolean => !mask || mask[t] !== 0

  // §3.2 GSPO: each sequence's mean log-ratio over its counted tokens
  const sequenceLogRatio = new Float64Array(B)
  if (options.ratioLevel === 'sequence' && oldLogp) {
    for (let b = 0; b < B; b++) {
      let sum = 0, n = 0
      for (let l = 0; l < L; l++) {
        if (!counted(b * L + l)) continue
        sum += logp[b * L + l] - oldLogp[b * L + l]
        n++
      }
      sequenceLogRatio[b] = n > 0 ? sum / n : 0
    }
  }
  // §3.3 rollout correction, §3.4 entropy selection
  const rollout = options.rolloutCorrection && rolloutLogp && oldLogp ? rolloutWeights(oldLogp, rolloutLogp, mask, B, L, options.rolloutCorrection) : undefined
  const rho = options.topEntropyQuantile ?? 1
  const selection = rho < 1 ? entropySelection(input.selectionEntropy ?? entropy!, mask, B * L, rho) : undefined
  const entropyWeights = selection ? selection.selected : new Float64Array(B * L).fill(1)

  let loss = 0, lossMass = 0
  let pgLoss = 0, pgMass = 0
  let klSum = 0, klMass = 0
  let entropySum = 0
  let clipped = 0, dualCapped = 0
  let ratioSum = 0, ratioMax = 0
  let approxKlSum = 0, approxKlMass = 0
  let tokens = 0

  for (let b = 0; b < B; b++) {
    for (let l = 0; l < L; l++) {
      const t = b * L + l
      if (!counted(t)) continue // not read; gradient 0
      const A = perToken ? advantages[t] : advantages[b]
      const terms = tokenTerms(logp[t], oldLogp?.[t], refLogp?.[t], A, options, sequenceLogRatio[b])
      const H = entropy ? entropy[t] : 0
      // the policy term's factor: rollout weight × selection (both constants)
      const factor = (rollout ? rollout.weights[t] : 1) * entropyWeights[t]
      const pg = nll ? terms.pg : factor * terms.pg
      const pgGrad = nll ? terms.pgGrad : factor * terms.pgGrad
      // bias-corrected KL: r·KL, differentiated as a product
      const klValue = biasCorrected ? terms.ratio * terms.kl : terms.kl
      const klGrad = biasCorrected ? terms.ratio * terms.klGrad + terms.kl * terms.ratioGrad : terms.klGrad
      const bonus = cH * entropyWeights[t] * H
      // §3: ℓ_t = ℓpg + β·KL − cH·H; in nll mode no KL term (docs/ops.md)
      const lossTerm = pg + (nll ? 0 : beta * klValue) - bonus
      loss += w[t] * lossTerm
      lossMass += Math.abs(w[t] * pg) + (nll ? 0 : Math.abs(w[t] * beta * klValue)) + Math.abs(w[t] * bonus)
      pgLoss += w[t] * pg
      pgMass += Math.abs(w[t] * pg)
      gradLogp[t] = nll ? -w[t] : w[t] * (pgGrad + beta * klGrad)

      tokens += 1
      klSum += terms.kl
      klMass += Math.abs(terms.kl)
      entropySum += H
      if (terms.clipped) clipped++
      if (terms.dualCapped) dualCapped++
      ratioSum += terms.ratio
      ratioMax = Math.max(ratioMax, terms.ratio)
      if (oldLogp) {
        approxKlSum += oldLogp[t] - logp[t]
        // old − logp is a difference: a kernel's logp carries its own error (f32 sums: ~1e-7·|logp| at best),
        // which reaches approxKl whole. The mass counts 1e-2·|logp| for it (so 1e-7·|logp| at rtol 1e-5):
        // without it, |old − logp| ~ 1e-4 asks for logp to 1e-9, beyond any f32 kernel.
        approxKlMass += Math.abs(oldLogp[t] - logp[t]) + 1e-2 * Math.abs(logp[t])
      }
    }
  }

  // §6 statistics: plain means over counted tokens, 0 when there is none
  const mean = (x: number): number => (tokens > 0 ? x / tokens : 0)
  const stats: LossStats = {
    loss,
    pgLoss,
    klMean: mean(klSum),
    entropyMean: mean(entropySum),
    clipFrac: mean(clipped),
    clipFracLower: mean(dualCapped),
    ratioMean: mean(ratioSum),
    ratioMax: tokens > 0 ? ratioMax : 0,
    approxKl: mean(approxKlSum),
    tokens,
    rolloutWeightMean: 0,
    rolloutWeightMax: 0,
    rolloutCorrectedFrac: 0,
    rolloutGapMean: 0,
    rolloutGapMax: 0,
    rolloutKl: 0,
    ...(rollout ? rollout.stats : {}),
    entropySelectedFrac: selection ? selection.fraction : 1,
    entropyThreshold: selection ? selection.threshold : 0,
  }
  const mass: LossStatsMass = {
    ...stats,
    loss: lossMass,
    pgLoss: pgMass,
    klMean: mean(klMass),
    approxKl: mean(approxKlMass),
  }
  return { loss, stats, mass, gradLogp, weights: w, entropyWeights }
}

// ---------------------------------------------------------------------------------------------------------
// §5 The fused op: log-softmax, loss, and the gradient with respect to the logits (ops.grpoLoss)
// ---------------------------------------------------------------------------------------------------------

export interface GrpoLossInput {
  logits: Num
  targets: Num
  mask?: Num
  oldLogp?: Num
  refLogp?: Num
  rolloutLogp?: Num
  advantages: Num
  /** see PolicyLossInput.selectionEntropy (default: the exact entropies of the logits) */
  selectionEntropy?: Num
  B: number
  L: number
  V: number
}

export interface GrpoLossResult extends PolicyLossResult {
  /** per-token log-probs, 0 at masked positions */
  logp: Float64Array
  entropy: Float64Array
  /** ∂loss/∂logits, [B, L, V]; all-zero rows at masked positions */
  gradLogits: Float64Array
}

export function grpoLoss(input: GrpoLossInput, options: LossOptions): GrpoLossResult {
  const { logits, targets, mask, B, L, V } = input
  const T = options.temperature ?? 1
  const cH = options.entropyCoef ?? 0

  // §1: grpoLoss always computes H (it feeds entropyMean and the entropy bonus)
  const rows = tokenLogprobs({ logits, targets, mask, B, L, V }, { temperature: T })
  const core = policyLoss(
    { logp: rows.logp, oldLogp: input.oldLogp, refLogp: input.refLogp, rolloutLogp: input.rolloutLogp, advantages: input.advantages, mask, entropy: rows.entropy, selectionEntropy: input.selectionEntropy, B, L },
    options,
  )
  // entropyMean from f32 kernels may lack each token's entropyFloor; the mass counts 1e5·floor for it (so the
  // floor itself at rtol 1e-5), as approxKl's mass counts logp's own rounding.
  let floorSum = 0
  for (let t = 0; t < B * L; t++) if (!mask || mask[t] !== 0) floorSum += rows.entropyFloor[t]!
  if (core.stats.tokens > 0) core.mass.entropyMean += (1e5 * floorSum) / core.stats.tokens

  // §5: ∂loss/∂x_j = (1/T)·[g_t·(e_y − p)_j + gH_t·(−p_j·(z_j − E_p[z]))], gH_t = −w_t·cH
  const gradLogits = new Float64Array(B * L * V)
  for (let t = 0; t < B * L; t++) {
    if (mask && mask[t] === 0) continue // all-zero row
    const g = core.gradLogp[t]
    const gH = -core.weights[t] * cH * core.entropyWeights[t]
    const offset = t * V
    const { shifted, logSum } = rowSoftmax(logits, offset, V, T)
    // z_j − E_p[z] = d_j − E_p[d]; E_p[d] = Σ p_j d_j has terms of one sign. Banned tokens (p = 0, d = −∞) are skipped.
    let meanShifted = 0
    for (let j = 0; j < V; j++) {
      const p = Math.exp(shifted[j] - logSum)
      if (p > 0) meanShifted += p * shifted[j]
    }
    for (let j = 0; j < V; j++) {
      const logProb = shifted[j] - logSum
      const p = Math.exp(logProb)
      // e_y − p at the target is 1 − p_y = −expm1(log p_y): exact to the last digits even when p_y → 1
      const oneHotMinusP = j === targets[t] ? -Math.expm1(logProb) : -p
      const entropyPart = p > 0 ? -p * (shifted[j] - meanShifted) : 0
      gradLogits[offset + j] = (g * oneHotMinusP + gH * entropyPart) / T
    }
  }
  return { ...core, logp: rows.logp, entropy: rows.entropy, gradLogits }
}

/**
 * Seeded random inputs of the GPU check's correctness cases: built once on the host, copied to both sides
 * (the CPU backend and the backend under test), so both compute on the same values.
 *
 * The generators keep every token away from the branch points of the loss (the clip bounds, the dual-clip
 * cap, the log-ratio clamp, the k3 clamps, the sign of the abs estimator), by a margin far above the
 * float32 difference two correct backends can have in logp: otherwise a correct kernel may legitimately take
 * the other branch at one token and the comparison would report a difference that is no bug.
 */
import { float32ToBf16, float32ToF16 } from '../dtype.js'

/** mulberry32 with 53-bit uniforms: fast, seedable, good enough for test inputs. */
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
  uniform(): number {
    return (this.uint32() * 2 ** 21 + (this.uint32() >>> 11)) / 2 ** 53
  }
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform()
  }
  int(n: number): number {
    return Math.floor(this.uniform() * n)
  }
  bool(p = 0.5): boolean {
    return this.uniform() < p
  }
  normal(): number {
    const u = 1 - this.uniform()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform())
  }
  logUniform(lo: number, hi: number): number {
    return Math.exp(this.range(Math.log(lo), Math.log(hi)))
  }
}

/** FNV-1a of a label mixed with the run's seed: each case draws from its own stream. */
export function rngFor(seed: number, label: string): Rng {
  let h = 0x811c9dc5
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193)
  return new Rng((h ^ seed) >>> 0)
}

export type FloatDType = 'f32' | 'bf16' | 'f16'

/** What Tensor.from takes for a float dtype: f32 values, or the half-precision bits. */
export function storage(dtype: FloatDType, values: Float32Array): Float32Array | Uint16Array {
  return dtype === 'f32' ? values : dtype === 'bf16' ? float32ToBf16(values) : float32ToF16(values)
}

export interface LogitsOptions {
  /** Each row's scale is drawn log-uniformly in this range (default 0.01 to 100). */
  scale?: [number, number]
  /** Share of rows with some −∞ entries (banned tokens, never the whole row). Default 0.25. */
  bannedRows?: number
}

export interface Logits {
  values: Float32Array // f32 values; stored in the case's dtype by storage()
  targets: Int32Array // drawn from each row's own softmax, so |logp| is what a sampling policy sees
}

/**
 * rows × V logits, scale·N(0, 1) per row; rows at scale ≥ 4 get a few competitors near their maximum (a
 * peaked but not degenerate policy). f16 rows are kept inside f16's range.
 */
export function logits(rng: Rng, rows: number, V: number, dtype: FloatDType, o: LogitsOptions = {}): Logits {
  const [lo, hi] = o.scale ?? [0.01, dtype === 'f16' ? 30 : 100]
  const banned = o.bannedRows ?? 0.25
  const values = new Float32Array(rows * V)
  const targets = new Int32Array(rows)
  const p = new Float64Array(V)
  for (let r = 0; r < rows; r++) {
    const s = rng.logUniform(lo, hi)
    const row = values.subarray(r * V, (r + 1) * V)
    let max = -Infinity
    for (let j = 0; j < V; j++) {
      row[j] = s * rng.normal()
      if (row[j] > max) max = row[j]
    }
    if (s >= 4 && V > 1) for (let k = 1 + rng.int(Math.min(5, V - 1)); k > 0; k--) row[rng.int(V)] = max - Math.abs(rng.normal()) * 2
    if (V > 1 && rng.bool(banned)) {
      for (let k = 1 + rng.int(Math.max(1, V >> 2)); k > 0; k--) row[rng.int(V)] = -Infinity
      if (row.every((v) => v === -Infinity)) row[rng.int(V)] = 0
    }
    // The target: a draw from softmax(row), in float64, on the values as stored (a banned token has p = 0).
    const stored = dtype === 'f32' ? row : roundTrip(dtype, row)
    let m = -Infinity
    for (let j = 0; j < V; j++) if (stored[j]! > m) m = stored[j]!
    let total = 0
    for (let j = 0; j < V; j++) total += p[j] = Math.exp(stored[j]! - m)
    let u = rng.uniform() * total
    let t = 0
    while (t < V - 1 && (u -= p[t]!) > 0) t++
    while (p[t] === 0) t = (t + 1) % V // never a banned token (the row has a finite entry)
    targets[r] = t
  }
  return { values, targets }
}

function roundTrip(dtype: 'bf16' | 'f16', row: Float32Array): Float32Array {
  const bits = dtype === 'bf16' ? float32ToBf16(row) : float32ToF16(row)
  const out = new Float32Array(row.length)
  const view = new DataView(new ArrayBuffer(4))
  for (let i = 0; i < bits.length; i++) {
    if (dtype === 'bf16') {
      view.setUint32(0, bits[i]! << 16)
      out[i] = view.getFloat32(0)
    } else {
      out[i] = f16Value(bits[i]!)
    }
  }
  return out
}

function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const e = (h >> 10) & 0x1f, m = h & 0x3ff
  if (e === 0x1f) return m ? NaN : sign * Infinity
  return e === 0 ? sign * m * 2 ** -24 : sign * (1 + m / 1024) * 2 ** (e - 15)
}

/**
 * A 0/1 mask over [B, L]: some whole sequences masked (never the first, so a case always has counted tokens),
 * the rest with masked positions scattered.
 */
export function mask(rng: Rng, B: number, L: number, o: { maskedRows?: number; maskedShare?: number } = {}): Uint8Array {
  const m = new Uint8Array(B * L)
  for (let b = 0; b < B; b++) {
    const whole = b > 0 && rng.bool(o.maskedRows ?? 0.2)
    for (let l = 0; l < L; l++) m[b * L + l] = whole || rng.bool(o.maskedShare ?? 0.15) ? 0 : 1
  }
  return m
}

/** Masked positions get target −100 (padding ids are allowed there and must not be read). */
export function padTargets(targets: Int32Array, m: Uint8Array): Int32Array {
  return targets.map((t, i) => (m[i] ? t : -100))
}

// The k3 estimator's clamp points: exp(d) − d − 1 = 10 (the value clamp) on either side of 0.
const K3_VALUE_POINTS = [solveK3(-12, -1), solveK3(1, 4)]
function solveK3(a: number, b: number): number {
  const f = (d: number) => Math.exp(d) - d - 1 - 10
  for (let i = 0; i < 200; i++) {
    const m = (a + b) / 2
    if (f(a) * f(m) <= 0) b = m
    else a = m
  }
  return (a + b) / 2
}

const MARGIN = 1e-3

function awayFrom(draw: () => number, points: readonly number[]): number {
  for (;;) {
    const v = draw()
    if (points.every((p) => Math.abs(v - p) > MARGIN)) return v
  }
}

export interface LossInputOptions {
  clipLow: number
  clipHigh: number
  dualClip?: number | null
  logRatioClamp?: number | null
}

/**
 * oldLogp and refLogp around given log-probs: log-ratios mostly in [−0.5, 0.5] (inside and outside the clip
 * range), 5% past the dual-clip point, 2% past the log-ratio clamp; reference gaps in [−2, 2] with 2% past the
 * k3 clamp at 20. Every value stays MARGIN away from each branch point.
 */
export function lossInputs(rng: Rng, logp: Float32Array, o: LossInputOptions): { old: Float32Array; ref: Float32Array } {
  const clampPoints = o.logRatioClamp ? [o.logRatioClamp, -o.logRatioClamp] : []
  const ratioPoints = [Math.log(1 + o.clipHigh), Math.log(1 - o.clipLow), ...(o.dualClip ? [Math.log(o.dualClip)] : []), ...clampPoints]
  const old = new Float32Array(logp.length)
  const ref = new Float32Array(logp.length)
  for (let i = 0; i < logp.length; i++) {
    const lp = Number.isFinite(logp[i]!) ? logp[i]! : -1 // masked positions hold 0: any value works there
    const u = rng.uniform()
    const d = awayFrom(() => (u < 0.93 ? rng.range(-0.5, 0.5) : u < 0.98 ? rng.range(1, 2.5) : rng.range(20.5, 23) * (rng.bool() ? 1 : -1)), ratioPoints)
    old[i] = lp - d
    const e = awayFrom(() => (rng.bool(0.98) ? rng.range(-2, 2) : rng.range(20.5, 23) * (rng.bool() ? 1 : -1)), [0, 20, -20, ...K3_VALUE_POINTS])
    ref[i] = lp + e
  }
  // Rounding old and ref to float32 moves d by about |logp|·6e-8, far inside MARGIN.
  return { old, ref }
}

/** Advantages, per sequence [B] or per token [B·L], standard-normal-ish and never exactly 0. */
export function advantages(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => {
    const a = rng.normal()
    return Math.abs(a) < 1e-3 ? 0.5 : a
  })
}

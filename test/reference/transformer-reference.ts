/**
 * Float64 references of the transformer ops (lib/transformer-ops.ts), written from their mathematical definitions
 * (docs/ops.md "Transformer ops") and sharing no code with the kernels: no tiles, no online softmax, every
 * attention score matrix materialized whole, every angle from Math.cos/Math.sin.
 */

type Arr = ArrayLike<number>

/** y = x / sqrt(mean(x²) + eps) · w over rows of n; rstd per row. */
export function rmsNorm(x: Arr, w: Arr, rows: number, n: number, eps: number): { out: Float64Array; rstd: Float64Array } {
  const out = new Float64Array(rows * n)
  const rstd = new Float64Array(rows)
  for (let r = 0; r < rows; r++) {
    let ss = 0
    for (let i = 0; i < n; i++) ss += x[r * n + i]! ** 2
    const s = 1 / Math.sqrt(ss / n + eps)
    rstd[r] = s
    for (let i = 0; i < n; i++) out[r * n + i] = x[r * n + i]! * s * w[i]!
  }
  return { out, rstd }
}

/** The backward of rmsNorm by the chain rule written out: dx_i = Σ_j g_j w_j ∂(x_j s)/∂x_i, s = (mean(x²)+eps)^(−1/2). */
export function rmsNormBackward(g: Arr, x: Arr, w: Arr, rows: number, n: number, eps: number): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(rows * n)
  const dw = new Float64Array(n)
  for (let r = 0; r < rows; r++) {
    let ss = 0
    for (let i = 0; i < n; i++) ss += x[r * n + i]! ** 2
    const s = 1 / Math.sqrt(ss / n + eps)
    // ∂s/∂x_i = −s³ x_i / n
    let gwx = 0
    for (let j = 0; j < n; j++) gwx += g[r * n + j]! * w[j]! * x[r * n + j]!
    for (let i = 0; i < n; i++) {
      dx[r * n + i] = g[r * n + i]! * w[i]! * s + gwx * (-(s ** 3) * x[r * n + i]! / n)
      dw[i]! += g[r * n + i]! * x[r * n + i]! * s
    }
  }
  return { dx, dw }
}

/** Rotate-half rope on x [T, H, D] (sign −1: the inverse rotation). */
export function rope(x: Arr, positions: Arr, T: number, H: number, D: number, theta: number, sign = 1): Float64Array {
  const out = new Float64Array(T * H * D)
  const half = D / 2
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const angle = positions[t]! * theta ** ((-2 * i) / D)
      const c = Math.cos(angle)
      const s = sign * Math.sin(angle)
      for (let h = 0; h < H; h++) {
        const base = (t * H + h) * D
        const x1 = x[base + i]!
        const x2 = x[base + half + i]!
        out[base + i] = x1 * c - x2 * s
        out[base + half + i] = x2 * c + x1 * s
      }
    }
  }
  return out
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z))

export function swiglu(gate: Arr, up: Arr): Float64Array {
  return Float64Array.from({ length: gate.length }, (_, i) => gate[i]! * sigmoid(gate[i]!) * up[i]!)
}

/**
 * The root of d/dz [z σ(z)] = σ(z)(1 + z(1 − σ(z))), near z = −1.2785, found by bisection in float64. There the
 * derivative is a difference of terms of size 1 with a zero result: a float32 kernel's gradGate carries an absolute
 * error of ~1e-7 of those terms, so its relative error grows as 1e-7 / |z − root| (1e-5 at 0.01 from it) however
 * it is computed (the input's own rounding moves the result by as much). Tests keep random gates away from it and
 * check it on its own against the size of the terms (swigluGradMass).
 */
export const SILU_GRAD_ROOT: number = (() => {
  const h = (z: number) => 1 + z * (1 - sigmoid(z))
  let lo = -1.5, hi = -1 // h(lo) < 0 < h(hi)
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2
    if (h(mid) < 0) lo = mid
    else hi = mid
  }
  return (lo + hi) / 2
})()

/** |g·u|·σ(z)·(1 + |z|(1 − σ(z))): the size of the terms whose sum is gradGate, the scale of a float32 kernel's error. */
export function swigluGradMass(g: number, gate: number, up: number): number {
  const s = sigmoid(gate)
  return Math.abs(g * up) * s * (1 + Math.abs(gate) * (1 - s))
}

export function swigluBackward(g: Arr, gate: Arr, up: Arr): { dGate: Float64Array; dUp: Float64Array } {
  const dGate = new Float64Array(gate.length)
  const dUp = new Float64Array(gate.length)
  for (let i = 0; i < gate.length; i++) {
    const s = sigmoid(gate[i]!)
    dUp[i] = g[i]! * gate[i]! * s
    // d/dz [z σ(z)] = σ(z) + z σ(z)(1 − σ(z))
    dGate[i] = g[i]! * up[i]! * (s + gate[i]! * s * (1 - s))
  }
  return { dGate, dUp }
}

export interface Sequence {
  start: number
  len: number
}

export interface AttentionShape {
  T: number
  Hq: number
  Hkv: number
  D: number
  seqs: readonly Sequence[]
  scale: number
}

/** Per sequence and head, the full causal score matrix, its softmax, and out = P·v; lse per row (−∞ on padding). */
export function attention(q: Arr, k: Arr, v: Arr, s: AttentionShape): { out: Float64Array; lse: Float64Array } {
  const { T, Hq, Hkv, D, seqs, scale } = s
  const g = Hq / Hkv
  const out = new Float64Array(T * Hq * D)
  const lse = new Float64Array(T * Hq).fill(-Infinity)
  for (const { start, len } of seqs) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / g)
      for (let i = 0; i < len; i++) {
        const scores = new Float64Array(i + 1)
        for (let j = 0; j <= i; j++) {
          let dot = 0
          for (let d = 0; d < D; d++) dot += q[((start + i) * Hq + h) * D + d]! * k[((start + j) * Hkv + kh) * D + d]!
          scores[j] = scale * dot
        }
        const m = Math.max(...scores)
        let sum = 0
        for (let j = 0; j <= i; j++) sum += Math.exp(scores[j]! - m)
        lse[(start + i) * Hq + h] = m + Math.log(sum)
        for (let j = 0; j <= i; j++) {
          const p = Math.exp(scores[j]! - m) / sum
          for (let d = 0; d < D; d++) out[((start + i) * Hq + h) * D + d]! += p * v[((start + j) * Hkv + kh) * D + d]!
        }
      }
    }
  }
  return { out, lse }
}

/**
 * Gradients of L = Σ gradOut·out through softmax attention, from the definitions: dV = Pᵀ·dO, dP = dO·Vᵀ,
 * dS_ij = P_ij (dP_ij − Σ_l P_il dP_il), dQ = scale·dS·K, dK = scale·dSᵀ·Q (summed over the group's heads).
 */
export function attentionBackward(dO: Arr, q: Arr, k: Arr, v: Arr, s: AttentionShape): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { T, Hq, Hkv, D, seqs, scale } = s
  const g = Hq / Hkv
  const dq = new Float64Array(T * Hq * D)
  const dk = new Float64Array(T * Hkv * D)
  const dv = new Float64Array(T * Hkv * D)
  const qa = (t: number, h: number, d: number) => q[(t * Hq + h) * D + d]!
  const ka = (t: number, h: number, d: number) => k[(t * Hkv + h) * D + d]!
  const va = (t: number, h: number, d: number) => v[(t * Hkv + h) * D + d]!
  for (const { start, len } of seqs) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / g)
      for (let i = 0; i < len; i++) {
        const ti = start + i
        const P = new Float64Array(i + 1)
        let m = -Infinity
        for (let j = 0; j <= i; j++) {
          let dot = 0
          for (let d = 0; d < D; d++) dot += qa(ti, h, d) * ka(start + j, kh, d)
          P[j] = scale * dot
          m = Math.max(m, P[j]!)
        }
        let sum = 0
        for (let j = 0; j <= i; j++) sum += Math.exp(P[j]! - m)
        for (let j = 0; j <= i; j++) P[j] = Math.exp(P[j]! - m) / sum
        const dP = new Float64Array(i + 1)
        let rowDot = 0
        for (let j = 0; j <= i; j++) {
          let dot = 0
          for (let d = 0; d < D; d++) dot += dO[(ti * Hq + h) * D + d]! * va(start + j, kh, d)
          dP[j] = dot
          rowDot += P[j]! * dot
        }
        for (let j = 0; j <= i; j++) {
          const tj = start + j
          const dS = P[j]! * (dP[j]! - rowDot)
          for (let d = 0; d < D; d++) {
            dv[(tj * Hkv + kh) * D + d]! += P[j]! * dO[(ti * Hq + h) * D + d]!
            dq[(ti * Hq + h) * D + d]! += scale * dS * ka(tj, kh, d)
            dk[(tj * Hkv + kh) * D + d]! += scale * dS * qa(ti, h, d)
          }
        }
      }
    }
  }
  return { dq, dk, dv }
}

/** One query per sequence against a cache [B, Hkv, S, D] of which the first lens[b] rows count. */
export function attentionDecode(q: Arr, kCache: Arr, vCache: Arr, lens: Arr, B: number, Hq: number, Hkv: number, S: number, D: number, scale: number): Float64Array {
  const out = new Float64Array(B * Hq * D)
  const g = Hq / Hkv
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / g)
      const n = lens[b]!
      const sc = new Float64Array(n)
      for (let j = 0; j < n; j++) {
        let dot = 0
        for (let d = 0; d < D; d++) dot += q[(b * Hq + h) * D + d]! * kCache[((b * Hkv + kh) * S + j) * D + d]!
        sc[j] = scale * dot
      }
      const m = Math.max(...sc)
      let sum = 0
      for (let j = 0; j < n; j++) sum += Math.exp(sc[j]! - m)
      for (let j = 0; j < n; j++) {
        const p = Math.exp(sc[j]! - m) / sum
        for (let d = 0; d < D; d++) out[(b * Hq + h) * D + d]! += p * vCache[((b * Hkv + kh) * S + j) * D + d]!
      }
    }
  }
  return out
}

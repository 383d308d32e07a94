/**
 * Float64 references of the model ops (lib/model-ops.ts), written from their documented definitions and sharing no
 * code with the kernels: embedding bag forward and backward, the sampler (its counter hash in BigInt), the global
 * gradient norm and AdamW.
 */

/** out[r, :] = bias + Σ_f W[ids[r, f], :] (ids of -1 skipped). */
export function embeddingBagForward(W: ArrayLike<number>, bias: ArrayLike<number> | null, ids: ArrayLike<number>, rows: number, F: number, V: number): Float64Array {
  const out = new Float64Array(rows * V)
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < V; j++) out[r * V + j] = bias ? bias[j]! : 0
    for (let f = 0; f < F; f++) {
      const id = ids[r * F + f]!
      if (id < 0) continue
      for (let j = 0; j < V; j++) out[r * V + j]! += W[id * V + j]!
    }
  }
  return out
}

/** The transpose, added to gradWeight and gradBias (rows whose mask is 0 skipped). */
export function embeddingBagBackward(
  grad: ArrayLike<number>,
  ids: ArrayLike<number>,
  mask: ArrayLike<number> | null,
  rows: number,
  F: number,
  H: number,
  V: number,
  gradWeight: ArrayLike<number>,
  gradBias: ArrayLike<number>,
): { gradWeight: Float64Array; gradBias: Float64Array } {
  const gw = Float64Array.from(gradWeight)
  const gb = Float64Array.from(gradBias)
  for (let r = 0; r < rows; r++) {
    if (mask && !mask[r]) continue
    for (let j = 0; j < V; j++) gb[j]! += grad[r * V + j]!
    for (let f = 0; f < F; f++) {
      const id = ids[r * F + f]!
      if (id < 0) continue
      for (let j = 0; j < V; j++) gw[id * V + j]! += grad[r * V + j]!
    }
  }
  void H
  return { gradWeight: gw, gradBias: gb }
}

const M64 = (1n << 64n) - 1n

function mix64(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & M64
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64
  return z ^ (z >> 31n)
}

/** The uniform of a row: 53 bits of mix64(mix64(mix64(seed) ^ step) ^ stream). */
export function rowUniform(seed: number, step: number, stream: number): number {
  const h = mix64(mix64(mix64(BigInt(seed)) ^ BigInt(step)) ^ BigInt(stream >>> 0))
  return Number(h >> 11n) / 2 ** 53
}

export interface SampleReference {
  token: number
  logp: number
}

/**
 * One row of the sampler: p_j = exp((x_j − max)/T); greedy takes the argmax; otherwise the nucleus (most probable
 * first, lower id on ties) until its mass reaches topP·Σp, and the first token whose running sum exceeds u·(kept
 * mass). logp is the token's log-prob under the full tempered softmax.
 */
export function sampleRow(x: ArrayLike<number>, options: { temperature: number; topP: number; greedy: boolean; u: number }): SampleReference {
  const V = x.length
  const invT = 1 / Math.fround(options.temperature)
  let max = -Infinity
  let argmax = -1
  for (let j = 0; j < V; j++) {
    if (x[j]! > max) {
      max = x[j]!
      argmax = j
    }
  }
  const p = new Float64Array(V)
  let sum = 0
  for (let j = 0; j < V; j++) {
    p[j] = Math.exp((x[j]! - max) * invT)
    sum += p[j]!
  }
  let token = argmax
  if (!options.greedy) {
    const order = Array.from({ length: V }, (_, j) => j).filter((j) => p[j]! > 0)
    if (options.topP >= 1) {
      let cum = 0
      token = order[order.length - 1]!
      for (const j of order) {
        cum += p[j]!
        if (cum > options.u * sum) {
          token = j
          break
        }
      }
    } else {
      order.sort((a, b) => p[b]! - p[a]! || a - b)
      let kept = 0
      let k = 0
      while (k < order.length) {
        kept += p[order[k++]!]!
        if (kept >= options.topP * sum) break
      }
      let cum = 0
      token = order[k - 1]!
      for (let i = 0; i < k; i++) {
        cum += p[order[i]!]!
        if (cum > options.u * kept) {
          token = order[i]!
          break
        }
      }
    }
  }
  return { token, logp: (x[token]! - max) * invT - Math.log(sum) }
}

/** One AdamW step in float64 (decoupled decay, bias correction for step t). */
export function adamwStep(
  p: ArrayLike<number>,
  g: ArrayLike<number>,
  m: ArrayLike<number>,
  v: ArrayLike<number>,
  o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number },
): { p: Float64Array; m: Float64Array; v: Float64Array } {
  const n = p.length
  const out = { p: new Float64Array(n), m: new Float64Array(n), v: new Float64Array(n) }
  const bc1 = 1 - o.beta1 ** o.step
  const bc2 = 1 - o.beta2 ** o.step
  for (let i = 0; i < n; i++) {
    const gi = g[i]! * o.gradScale
    out.m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi
    out.v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi
    out.p[i] = p[i]! * (1 - o.lr * o.weightDecay) - (o.lr * out.m[i]! / bc1) / (Math.sqrt(out.v[i]! / bc2) + o.eps)
  }
  return out
}

/** ‖out − ref‖ / ‖ref‖ (or ‖out‖ when ref is 0); NaN anywhere is Infinity. */
export function relativeError(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) return Infinity
  let d = 0
  let r = 0
  let o = 0
  for (let i = 0; i < out.length; i++) {
    if (Number.isNaN(out[i]) || Number.isNaN(ref[i])) return Infinity
    d += (out[i]! - ref[i]!) ** 2
    r += ref[i]! ** 2
    o += out[i]! ** 2
  }
  return r > 0 ? Math.sqrt(d / r) : Math.sqrt(o)
}

/** mulberry32, for test inputs. */
export function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Seeded inputs that a rank and the test that checks it both derive from (seed, rank, label). */
function hash(text: string): number {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619)
  return h >>> 0
}

/** n values in [-1, 1) (mulberry32), the same for every process that asks for (seed, rank, label). */
export function values(seed: number, rank: number, label: string, n: number): Float64Array {
  let s = hash(`${seed}:${rank}:${label}`)
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0
    let x = s
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    out[i] = (((x ^ (x >>> 14)) >>> 0) / 4294967296) * 2 - 1
  }
  return out
}

/** The same values as f32 (what Tensor.from stores). */
export function f32(v: Float64Array): Float64Array {
  return Float64Array.from(Float32Array.from(v))
}

/** Round to bf16, nearest even (the rounding of Tensor.from with dtype bf16). */
export function bf16(v: Float64Array): Float64Array {
  const f = Float32Array.from(v)
  const u = new Uint32Array(f.buffer)
  for (let i = 0; i < u.length; i++) u[i] = ((u[i]! + 0x7fff + ((u[i]! >>> 16) & 1)) >>> 16) << 16
  return Float64Array.from(f)
}

/** Sizes used by the collectives worker and its test. */
export const N = { sum: 1000, bucket: [5, 1, 7], bf16: 300, large: 300_000, flight: 6, gather: 7, scatter: 5 }

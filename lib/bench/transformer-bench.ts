/**
 * The transformer ops in `npm run bench`: attention forward and forward+backward in tokens/s (and GFLOP/s, counted
 * as flash-attention papers do: 4·D per causal (query, key) pair and head forward, 2.5× that backward) at the
 * shapes of Qwen2.5-0.5B (14 query heads, 2 kv heads, D = 64); the memory-bound ops in GB/s against the machine's
 * measured bandwidth, at the 0.5B model's widths (C = 896, FFN 4864) over 4096 tokens.
 */
import type { Device } from '../dtype.js'
import * as modelOps from '../model-ops.js'
import { Tensor } from '../tensor.js'
import type { BenchCase, MachineLimits, Timing } from './types.js'

export interface TransformerBenchOptions {
  device: Device
  dtypes: readonly ('f32' | 'bf16')[]
  reps: number
  warmup: number
  random: () => number
  time: (reps: number, warmup: number, run: () => Promise<unknown> | unknown) => Promise<Timing>
  add: (c: Omit<BenchCase, 'tokensPerSecond' | 'gbps' | 'shareOfLimit'>, limitGBps: number) => BenchCase
  log: (line: string) => void
}

const BYTES = { f32: 4, bf16: 2 } as const

function randomTensor(o: TransformerBenchOptions, shape: number[], dtype: 'f32' | 'bf16', scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1)
  const values = new Float32Array(n)
  for (let i = 0; i < n; i++) values[i] = (o.random() * 2 - 1) * scale
  using f = Tensor.from(values, shape, { device: o.device })
  return dtype === 'f32' ? Tensor.from(values, shape, { device: o.device }) : modelOps.castSync(f, 'bf16')
}

function disposeAll(value: unknown): void {
  if (value instanceof Tensor) value.dispose()
  else if (value && typeof value === 'object') for (const v of Object.values(value)) if (v instanceof Tensor) v.dispose()
}

/** Attention at L = 512 and 2048 (4096 tokens per call), heads 14/2, D = 64. */
export async function benchAttention(o: TransformerBenchOptions, lengths: readonly number[] = [512, 2048], tokens = 4096): Promise<void> {
  const [Hq, Hkv, D] = [14, 2, 64]
  for (const L of lengths) {
    const B = Math.max(1, Math.floor(tokens / L))
    const T = B * L
    const flopsForward = 4 * D * Hq * B * ((L * (L + 1)) / 2)
    for (const dtype of o.dtypes) {
      const q = randomTensor(o, [T, Hq, D], dtype)
      const k = randomTensor(o, [T, Hkv, D], dtype)
      const v = randomTensor(o, [T, Hkv, D], dtype)
      const dO = randomTensor(o, [T, Hq, D], dtype)
      const starts = Tensor.from(Int32Array.from({ length: B }, (_, b) => b * L), [B], { device: o.device })
      const lens = Tensor.from(Int32Array.from({ length: B }, () => L), [B], { device: o.device })
      const opts = { seqStarts: starts, seqLens: lens }
      // CPU seconds per call too (process-wide, every pool thread): on a shared machine the wall clock also counts
      // the time other processes held the cores, the CPU time does not.
      const calls = o.reps + o.warmup
      let cpu0 = process.cpuUsage()
      const forward = await o.time(o.reps, o.warmup, async () => disposeAll(await modelOps.attention(q, k, v, opts)))
      let cpu = process.cpuUsage(cpu0)
      const forwardCpu = (cpu.user + cpu.system) / 1e6 / calls
      cpu0 = process.cpuUsage()
      const both = await o.time(o.reps, o.warmup, async () => {
        const r = await modelOps.attention(q, k, v, opts)
        disposeAll(await modelOps.attentionBackward(dO, q, k, v, r.out, r.lse, opts))
        disposeAll(r)
      })
      cpu = process.cpuUsage(cpu0)
      const bothCpu = (cpu.user + cpu.system) / 1e6 / calls
      const cpuNote = (seconds: number, flops: number) =>
        o.device === 'cpu' ? `; CPU time ${(seconds * 1000).toFixed(0)} ms/call = ${(flops / seconds / 1e9).toFixed(1)} GFLOP/s per busy core` : ''
      const note = (t: Timing, flops: number, seconds: number) =>
        `${(flops / (t.medianMs / 1000) / 1e9).toFixed(1)} GFLOP/s${cpuNote(seconds, flops)}; L=${L} x ${B} sequences, heads ${Hq}/${Hkv}, D=${D}`
      const f = o.add({ op: 'attention' as BenchCase['op'], impl: 'native', dtype, V: L, tokens: T, timing: forward, bytesPerToken: 0 }, 0)
      f.note = `forward: ${note(forward, flopsForward, forwardCpu)}`
      o.log(`    ${f.note}`)
      const fb = o.add({ op: 'attention+backward' as BenchCase['op'], impl: 'native', dtype, V: L, tokens: T, timing: both, bytesPerToken: 0 }, 0)
      fb.note = `forward+backward: ${note(both, 3.5 * flopsForward, bothCpu)}`
      o.log(`    ${fb.note}`)
      for (const x of [q, k, v, dO, starts, lens]) x.dispose()
    }
  }
}

/**
 * rmsNorm, rope, swiglu, add, cast, embedding over T tokens at a 0.5B Qwen's widths (embedding rows drawn from a
 * V-row table): GB/s of the bytes each must move (every input read once, every output written once).
 */
export async function benchRowOps(o: TransformerBenchOptions, machine: MachineLimits, T = 4096, V = 151936): Promise<void> {
  const [C, F, Hq, Hkv, D] = [896, 4864, 14, 2, 64]
  for (const dtype of o.dtypes) {
    const e = BYTES[dtype]
    const x = randomTensor(o, [T, C], dtype, 2)
    const w = randomTensor(o, [C], dtype)
    const gate = randomTensor(o, [T, F], dtype, 3)
    const up = randomTensor(o, [T, F], dtype)
    const qk = randomTensor(o, [T, Hq + Hkv, D], dtype)
    const positions = Tensor.from(Int32Array.from({ length: T }, (_, i) => i), [T], { device: o.device })
    const table = randomTensor(o, [V, C], dtype)
    const ids = Tensor.from(Int32Array.from({ length: T }, () => Math.floor(o.random() * V)), [T], { device: o.device })
    const cases: [string, number, () => Promise<unknown>][] = [
      ['rmsNorm', 2 * C * e + 4, () => modelOps.rmsNorm(x, w)],
      ['rope', 2 * (Hq + Hkv) * D * e, () => modelOps.rope(qk, positions, { theta: 1e6 })],
      ['swiglu', 3 * F * e, () => modelOps.swiglu(gate, up)],
      ['add', 3 * C * e, () => modelOps.add(x, x)],
      [dtype === 'f32' ? 'cast f32→bf16' : 'cast bf16→f32', 6 * C, () => modelOps.cast(x, dtype === 'f32' ? 'bf16' : 'f32')],
      ['embedding', 2 * C * e, () => modelOps.embedding(table, ids)],
    ]
    for (const [op, bytesPerToken, run] of cases) {
      const timing = await o.time(o.reps, o.warmup, async () => disposeAll(await run()))
      o.add({ op: op as BenchCase['op'], impl: 'native', dtype, V: 0, tokens: T, timing, bytesPerToken }, machine.copyGBps)
    }
    for (const t of [x, w, gate, up, qk, positions, table, ids]) t.dispose()
  }
}

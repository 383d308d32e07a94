/**
 * Step 3 of the GPU check: our ops timed with CUDA events against the device's measured bandwidth, and the
 * PyTorch baselines on the same shapes in the same run (scripts/gpu_check_torch.py).
 *
 * PERF_CASES is the table: one entry per shape, with how to time our op (`ours`), the PyTorch baselines to
 * run beside it (`torch`: kinds the Python script knows), and the targets the row is judged by.
 * An entry without `ours` is a PyTorch-only reference row (the device's GEMM and attention rates, until our
 * transformer ops land and fill it in). See bench/README.md, "Adding a case".
 */
import type { Device } from '../dtype.js'
import type { BandwidthProbe } from '../bench/device.js'
import { randomUniform, timeKernels } from '../bench/device.js'
import { gb, runBench } from '../bench/run.js'
import * as modelOps from '../model-ops.js'
import { native } from '../native.js'
import { Tensor } from '../tensor.js'
import type { BenchCase, BenchOp, Timing } from '../bench/types.js'
import { opExists } from './cases.js'

export type TorchKind = 'trl_grpo_loss' | 'selective_log_softmax' | 'matmul' | 'sdpa' | 'copy' | 'transformer_op' | 'model_op'

export interface TorchSpec {
  /** unique id of this baseline row, e.g. 'grpoLoss bf16 8192x151936 / TRL eager' */
  id: string
  kind: TorchKind
  /** torch.compile the function (the compile time is reported apart and not timed) */
  compile?: boolean
  params: Record<string, number | string | boolean>
}

export interface PerfContext {
  device: Device
  /** the dry run: small shapes, the SIMT executor */
  dry: boolean
  probe: BandwidthProbe
  reps: number
  warmup: number
  seed: number
  log: (line: string) => void
}

export interface OurTiming {
  timing: Timing
  /** TFLOP/s (compute-bound rows) */
  tflops?: number
  /** GB/s over the bytes moved by design */
  gbps?: number
  /** achieved GB/s over the measured copy (read + write ops) or read (read-only ops) bandwidth */
  shareOfBandwidth?: number
  /** the same op unfused, where the benchmark has it */
  unfused?: Timing
}

export interface PerfCase {
  id: string
  /** our op; absent: a PyTorch-only reference row */
  op?: string
  ours?: (ctx: PerfContext) => Promise<OurTiming>
  torch: (dry: boolean) => TorchSpec[]
  /** the targets this row is judged by on a device (not in the dry run) */
  targets?: { shareOfBandwidth?: number; speedupOverTorch?: { id: string; min: number } }
}

/** Times one row op through the benchmark (same inputs, rotation, timer and bandwidth as `npm run bench`). */
async function benchRowOp(ctx: PerfContext, op: BenchOp, dtype: 'f32' | 'bf16' | 'f16', N: number, V: number): Promise<OurTiming> {
  const { cases } = await runBench({
    device: ctx.device,
    ops: [op],
    vocab: [V],
    tokens: [N],
    dtypes: [dtype],
    reps: ctx.reps,
    warmup: ctx.warmup,
    baselineReps: 0,
    out: '',
    seed: ctx.seed,
    log: ctx.log,
    timer: 'kernels',
    deviceProbe: ctx.probe,
    write: false,
  })
  const native = cases.find((c) => c.op === op && c.impl === 'native') as BenchCase
  const unfused = cases.find((c) => c.op === op && c.impl === 'unfused-ops')
  return { timing: native.timing, gbps: native.gbps, shareOfBandwidth: native.shareOfLimit, unfused: unfused?.timing }
}

/** The GRPO shapes: Qwen's vocabulary, 8192 completion tokens (the headline). */
const rowShape = (dry: boolean) => (dry ? { N: 64, V: 1000 } : { N: 8192, V: 151936 })

function lossCase(dtype: 'f32' | 'bf16'): PerfCase {
  const id = (dry: boolean) => `grpoLoss ${dtype} ${rowShape(dry).N}x${rowShape(dry).V}`
  return {
    id: `grpoLoss ${dtype}`,
    op: 'ops.grpoLoss',
    ours: (ctx) => benchRowOp(ctx, 'grpoLoss', dtype, rowShape(ctx.dry).N, rowShape(ctx.dry).V),
    torch: (dry) => {
      // TRL's loss as its GRPOTrainer computes it: selective log-softmax of the logits, ratio, clip, k3 KL,
      // token-mean over the mask, backward to the logits; eager and torch.compile.
      const params = { B: 1, L: rowShape(dry).N, V: rowShape(dry).V, dtype, beta: 1e-3, clip: 0.2 }
      return [
        { id: `${id(dry)} / TRL eager`, kind: 'trl_grpo_loss', params },
        { id: `${id(dry)} / TRL torch.compile`, kind: 'trl_grpo_loss', compile: true, params },
      ]
    },
    targets:
      dtype === 'bf16'
        ? { shareOfBandwidth: 0.85, speedupOverTorch: { id: `${id(false)} / TRL eager`, min: 5 } }
        : undefined,
  }
}

function logprobsCase(dtype: 'f32' | 'bf16'): PerfCase {
  return {
    id: `tokenLogprobs ${dtype}`,
    op: 'ops.tokenLogprobs',
    ours: (ctx) => benchRowOp(ctx, 'tokenLogprobs', dtype, rowShape(ctx.dry).N, rowShape(ctx.dry).V),
    torch: (dry) => [
      {
        id: `tokenLogprobs ${dtype} ${rowShape(dry).N}x${rowShape(dry).V} / TRL selective_log_softmax`,
        kind: 'selective_log_softmax',
        params: { B: 1, L: rowShape(dry).N, V: rowShape(dry).V, dtype },
      },
    ],
  }
}

const attn = (dry: boolean) => (dry ? { B: 1, H: 2, Hkv: 1, L: 64, D: 64 } : { B: 4, H: 28, Hkv: 4, L: 2048, D: 128 })

/** Times `run` with the kernel timer (CUDA events; a repetition that launches nothing falls back to the host clock). */
async function timeOp(ctx: PerfContext, run: () => Promise<unknown>): Promise<Timing> {
  let first = 0
  for (let i = 0; i < ctx.warmup; i++) {
    const t0 = performance.now()
    await run()
    if (i === 0) first = performance.now() - t0
  }
  // An op far slower than expected (a kernel gone wrong) gets fewer repetitions, not the whole step's budget.
  const reps = Math.min(ctx.reps, Math.max(3, Math.floor(10_000 / Math.max(first, 1e-3))))
  const kernels: number[] = [], host: number[] = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    const { time } = await timeKernels(ctx.device, run)
    host.push(performance.now() - t0)
    if (time) kernels.push(time.ms)
  }
  const events = kernels.length === reps
  const samples = (events ? kernels : host).sort((a, b) => a - b)
  const hostSorted = [...host].sort((a, b) => a - b)
  return {
    medianMs: samples[samples.length >> 1]!,
    minMs: samples[0]!,
    maxMs: samples[samples.length - 1]!,
    reps,
    clock: events ? 'cuda-events' : 'host',
    hostMedianMs: hostSorted[hostSorted.length >> 1]!,
  }
}

/** modelOps.linear in bf16 on an n × n × n GEMM (cuBLASLt where it is loaded, else our tensor-core kernel). */
function gemmCase(n: number, dryN: number): PerfCase {
  const size = (dry: boolean) => (dry ? dryN : n)
  return {
    id: `linear bf16 ${n}^3`,
    op: 'modelOps.linear',
    async ours(ctx) {
      const m = size(ctx.dry)
      const inputs = await Promise.all(
        [0, 1].map(async (k) => ({
          x: await randomUniform([m, m], { dtype: 'bf16', device: ctx.device, seed: ctx.seed + 2 * k }),
          w: await randomUniform([m, m], { dtype: 'bf16', device: ctx.device, seed: ctx.seed + 2 * k + 1 }),
        })),
      )
      let k = 0
      try {
        const timing = await timeOp(ctx, async () => {
          const i = inputs[k++ & 1]!
          ;(await modelOps.linear(i.x, i.w)).dispose()
        })
        const tflops = (2 * m ** 3) / (timing.medianMs / 1e3) / 1e12
        const info = native().backendInfo()
        const gemm = ctx.device === 'cuda' ? JSON.stringify(info.cuda.gemm) : `cuda/linear.cu's kernels on the ${info.active} backend`
        ctx.log(`linear bf16 ${m}^3: ${timing.medianMs.toFixed(3)} ms (${timing.clock}), ${tflops.toPrecision(3)} TFLOP/s; gemm: ${gemm}`)
        return { timing, tflops }
      } finally {
        for (const i of inputs) {
          i.x.dispose()
          i.w.dispose()
        }
      }
    },
    torch: (dry) => [{ id: `linear bf16 ${size(dry)}^3 / torch.matmul`, kind: 'matmul', params: { M: size(dry), N: size(dry), K: size(dry), dtype: 'bf16' } }],
  }
}

/**
 * modelOps.attention (and with attentionBackward) on B sequences of L tokens packed as [B·L, H, D], causal, against
 * scaled_dot_product_attention on [B, H, L, D]; TFLOP/s counted as the flash-attention papers do (4·D per causal
 * (query, key) pair and head forward, 3.5× that with the backward), the same count as the Python side.
 */
function attentionCase(backward: boolean): PerfCase {
  const label = (dry: boolean) => {
    const a = attn(dry)
    return `causal bf16 B${a.B} H${a.H}/${a.Hkv} L${a.L} D${a.D} ${backward ? 'forward+backward' : 'forward'}`
  }
  return {
    id: backward ? 'attention+backward bf16' : 'attention bf16',
    op: backward ? 'modelOps.attentionBackward' : 'modelOps.attention',
    async ours(ctx) {
      const a = attn(ctx.dry)
      const T = a.B * a.L
      const seed = ctx.seed
      const q = await randomUniform([T, a.H, a.D], { dtype: 'bf16', device: ctx.device, seed, low: -2, high: 2 })
      const k = await randomUniform([T, a.Hkv, a.D], { dtype: 'bf16', device: ctx.device, seed: seed + 1, low: -2, high: 2 })
      const v = await randomUniform([T, a.Hkv, a.D], { dtype: 'bf16', device: ctx.device, seed: seed + 2 })
      const dO = await randomUniform([T, a.H, a.D], { dtype: 'bf16', device: ctx.device, seed: seed + 3 })
      const starts = Tensor.from(Int32Array.from({ length: a.B }, (_, b) => b * a.L), [a.B], { device: ctx.device })
      const lens = Tensor.from(Int32Array.from({ length: a.B }, () => a.L), [a.B], { device: ctx.device })
      const opts = { seqStarts: starts, seqLens: lens }
      try {
        const timing = await timeOp(ctx, async () => {
          const r = await modelOps.attention(q, k, v, opts)
          if (backward) {
            const g = await modelOps.attentionBackward(dO, q, k, v, r.out, r.lse, opts)
            for (const x of [g.gradQ, g.gradK, g.gradV]) x.dispose()
          }
          r.out.dispose()
          r.lse.dispose()
        })
        const flops = ((4 * a.B * a.H * a.L * a.L * a.D) / 2) * (backward ? 3.5 : 1)
        const tflops = flops / (timing.medianMs / 1e3) / 1e12
        ctx.log(`${label(ctx.dry)}: ${timing.medianMs.toFixed(3)} ms (${timing.clock}), ${tflops.toPrecision(3)} TFLOP/s`)
        return { timing, tflops }
      } finally {
        for (const x of [q, k, v, dO, starts, lens]) x.dispose()
      }
    },
    torch: (dry) => [{ id: `${backward ? 'attention+backward' : 'attention'} ${label(dry)} / torch sdpa`, kind: 'sdpa', params: { ...attn(dry), dtype: 'bf16', backward } }],
  }
}

/** Widths of the memory-bound rows: Qwen2.5-7B over 8192 tokens (the dry run: small). */
const widths = (dry: boolean) =>
  dry ? { T: 64, C: 96, F: 160, Hq: 4, Hkv: 2, D: 32, V: 1000 } : { T: 8192, C: 3584, F: 18944, Hq: 28, Hkv: 4, D: 128, V: 151936 }

type TransformerOp = 'rmsNorm' | 'rmsNormBackward' | 'rope' | 'swiglu' | 'swigluBackward' | 'add' | 'cast' | 'embedding'
const TRANSFORMER_OPS: readonly TransformerOp[] = ['rmsNorm', 'rmsNormBackward', 'rope', 'swiglu', 'swigluBackward', 'add', 'cast', 'embedding']

/** Inputs for a timing row on the context's device, kept in `made` so the row disposes them all at the end. */
function tensorMaker(ctx: PerfContext) {
  const made: Tensor[] = []
  const rand = async (dims: number[], k: number, dt: 'f32' | 'bf16' = 'bf16', low = -2, high = 2) => {
    const t = await randomUniform(dims, { dtype: dt, device: ctx.device, seed: ctx.seed * 16 + k, low, high })
    made.push(t)
    return t
  }
  const int32 = (data: Int32Array, dims: number[]) => {
    const t = Tensor.from(data, dims, { device: ctx.device })
    made.push(t)
    return t
  }
  return { made, rand, int32 }
}

/**
 * One memory-bound transformer op in bf16 (cast: f32 master weights to bf16): its inputs made on the device, two
 * sets alternating, timed with CUDA events; GB/s over the bytes it must move (each input read once, each output
 * written once) against the measured copy bandwidth.
 */
function transformerOpCase(op: TransformerOp): PerfCase {
  const shape = (dry: boolean) => {
    const w = widths(dry)
    return op === 'swiglu' || op === 'swigluBackward' ? `T${w.T} F${w.F}` : op === 'rope' ? `T${w.T} H${w.Hq}+${w.Hkv} D${w.D}` : op === 'embedding' ? `T${w.T} C${w.C} V${w.V}` : `T${w.T} C${w.C}`
  }
  const dtype = op === 'cast' ? 'f32->bf16' : 'bf16'
  return {
    id: `${op} ${dtype}`,
    op: `modelOps.${op}`,
    async ours(ctx) {
      const w = widths(ctx.dry)
      const e = 2
      const { made, rand, int32 } = tensorMaker(ctx)
      try {
        // Two input sets, so that a repetition does not find the previous one's data in the device's 50 MB L2.
        const sets: { bytes: number; run: () => Promise<unknown> }[] = []
        for (const k of [0, 1]) {
          const b = k * 8
          if (op === 'rmsNorm' || op === 'rmsNormBackward') {
            const x = await rand([w.T, w.C], b), weight = await rand([w.C], b + 1, 'bf16', 0.5, 1.5)
            if (op === 'rmsNorm') sets.push({ bytes: 2 * w.T * w.C * e + 4 * w.T + w.C * e, run: () => modelOps.rmsNorm(x, weight) })
            else {
              const { out, rstd } = await modelOps.rmsNorm(x, weight)
              out.dispose()
              made.push(rstd)
              const g = await rand([w.T, w.C], b + 2)
              const gw = await rand([w.C], b + 3, 'f32')
              // read gradOut and x, write gradX; rstd, the weight and its f32 gradient are small
              sets.push({ bytes: 3 * w.T * w.C * e + 4 * w.T + w.C * (e + 8), run: () => modelOps.rmsNormBackward(g, x, weight, rstd, { gradWeight: gw }) })
            }
          } else if (op === 'rope') {
            const x = await rand([w.T, w.Hq + w.Hkv, w.D], b)
            const pos = int32(Int32Array.from({ length: w.T }, (_, i) => i), [w.T])
            sets.push({ bytes: 2 * w.T * (w.Hq + w.Hkv) * w.D * e + 4 * w.T, run: () => modelOps.rope(x, pos, { theta: 1e6 }) })
          } else if (op === 'swiglu' || op === 'swigluBackward') {
            const gate = await rand([w.T, w.F], b, 'bf16', -6, 6), up = await rand([w.T, w.F], b + 1)
            if (op === 'swiglu') sets.push({ bytes: 3 * w.T * w.F * e, run: () => modelOps.swiglu(gate, up) })
            else {
              const g = await rand([w.T, w.F], b + 2)
              sets.push({ bytes: 5 * w.T * w.F * e, run: () => modelOps.swigluBackward(g, gate, up) })
            }
          } else if (op === 'add') {
            const x = await rand([w.T, w.C], b), y = await rand([w.T, w.C], b + 1)
            sets.push({ bytes: 3 * w.T * w.C * e, run: () => modelOps.add(x, y) })
          } else if (op === 'cast') {
            const x = await rand([w.T, w.C], b, 'f32')
            sets.push({ bytes: w.T * w.C * (4 + 2), run: () => modelOps.cast(x, 'bf16') })
          } else {
            const table = k === 0 ? await rand([w.V, w.C], b) : made[0]!
            let h = (ctx.seed + k) >>> 0 || 1 // xorshift: the same ids for the same seed
            const ids = int32(Int32Array.from({ length: w.T }, () => ((h ^= h << 13), (h ^= h >>> 17), (h ^= h << 5), (h >>> 0) % w.V)), [w.T])
            sets.push({ bytes: 2 * w.T * w.C * e + 4 * w.T, run: () => modelOps.embedding(table, ids) })
          }
        }
        let i = 0
        const timing = await timeOp(ctx, async () => {
          const r = await sets[i++ & 1]!.run()
          if (r instanceof Tensor) r.dispose()
          else if (r && typeof r === 'object') for (const v of Object.values(r)) if (v instanceof Tensor) v.dispose()
        })
        const gbps = sets[0]!.bytes / (timing.medianMs / 1e3) / 1e9
        const shareOfBandwidth = gbps / ctx.probe.copyGBps
        ctx.log(`${op} ${dtype} ${shape(ctx.dry)}: ${timing.medianMs.toFixed(3)} ms (${timing.clock}), ${gb(gbps)} GB/s = ${(shareOfBandwidth * 100).toFixed(0)}% of the copy bandwidth`)
        return { timing, gbps, shareOfBandwidth }
      } finally {
        for (const t of made) t.dispose()
      }
    },
    torch: (dry) => [{ id: `${op} ${dtype} ${shape(dry)} / torch eager (Hugging Face)`, kind: 'transformer_op', params: { op, ...widths(dry) } }],
  }
}

/** The decode shapes: Qwen2.5-7B's heads, 64 sequences with 4096 cached positions (the dry run: small). */
const decode = (dry: boolean) => (dry ? { B: 2, Hq: 4, Hkv: 2, S: 64, D: 32 } : { B: 64, Hq: 28, Hkv: 4, S: 4096, D: 128 })

/** The rows of the model's generation and backward that are not in TRANSFORMER_OPS: decode, cache write, embedding backward. */
type ModelOpRow = 'attentionDecode' | 'kvCacheWrite' | 'embeddingBackward'

/**
 * attentionDecode (one query per sequence against its full KV cache: reads both caches once), kvCacheWrite (a
 * prefill of B sequences of S tokens into empty caches: reads k and v, writes the caches) and embeddingBackward
 * (bf16 gradients of T tokens scatter-added into an f32 table: reads them, reads and writes the T rows they touch).
 * GB/s over the bytes each must move, against the probe's read bandwidth for the decode (it only reads) and its
 * copy bandwidth for the others; PyTorch's equivalents on the same shapes: scaled_dot_product_attention with one
 * query (Hugging Face's decode step), index_copy_ into the caches along the position axis (its StaticCache), and
 * index_add_ into an f32 table (the f32 accumulation our op does; autograd's embedding backward makes a dense
 * gradient of the table's dtype instead).
 */
function modelOpCase(op: ModelOpRow): PerfCase {
  const label = (dry: boolean) => {
    const d = decode(dry), w = widths(dry)
    return op === 'embeddingBackward' ? `T${w.T} C${w.C} V${w.V}` : `B${d.B} H${d.Hq}/${d.Hkv} S${d.S} D${d.D}`
  }
  const dtype = op === 'embeddingBackward' ? 'bf16->f32' : 'bf16'
  return {
    id: `${op} ${dtype}`,
    op: `modelOps.${op}`,
    async ours(ctx) {
      const d = decode(ctx.dry), w = widths(ctx.dry)
      const e = 2
      const { made, rand, int32 } = tensorMaker(ctx)
      try {
        // Two input sets where the inputs are large (a repetition must not find the previous one's in L2).
        const sets: { bytes: number; run: () => Promise<unknown> }[] = []
        let table: Tensor | undefined
        for (const k of [0, 1]) {
          const b = k * 8
          if (op === 'attentionDecode') {
            const q = await rand([d.B, d.Hq, d.D], b)
            const kc = await rand([d.B, d.Hkv, d.S, d.D], b + 1), vc = await rand([d.B, d.Hkv, d.S, d.D], b + 2)
            const lens = int32(new Int32Array(d.B).fill(d.S), [d.B])
            sets.push({ bytes: 2 * d.B * d.Hkv * d.S * d.D * e + 2 * d.B * d.Hq * d.D * e + 4 * d.B, run: () => modelOps.attentionDecode(q, kc, vc, lens) })
          } else if (op === 'kvCacheWrite') {
            const T = d.B * d.S
            const kk = await rand([T, d.Hkv, d.D], b), vv = await rand([T, d.Hkv, d.D], b + 1)
            const kc = await rand([d.B, d.Hkv, d.S, d.D], b + 2), vc = await rand([d.B, d.Hkv, d.S, d.D], b + 3)
            const starts = int32(new Int32Array(d.B), [d.B])
            sets.push({ bytes: 4 * T * d.Hkv * d.D * e + 4 * d.B, run: () => modelOps.kvCacheWrite(kk, vv, kc, vc, { cacheStarts: starts }) })
          } else {
            const g = await rand([w.T, w.C], b)
            table ??= await rand([w.V, w.C], b + 1, 'f32', -0.01, 0.01) // one table (2.2 GB in f32 at Qwen's vocabulary)
            let h = (ctx.seed + 7 * k) >>> 0 || 1 // xorshift: the same ids for the same seed
            const idValues = Int32Array.from({ length: w.T }, () => ((h ^= h << 13), (h ^= h >>> 17), (h ^= h << 5), (h >>> 0) % w.V))
            const ids = int32(idValues, [w.T])
            const rows = new Set(idValues).size
            const gw = table
            // read the gradients and the ids, read and write each touched f32 row once
            sets.push({ bytes: w.T * w.C * e + 4 * w.T + 2 * rows * w.C * 4, run: () => modelOps.embeddingBackward(g, ids, gw) })
          }
        }
        let i = 0
        const timing = await timeOp(ctx, async () => {
          const r = await sets[i++ & 1]!.run()
          if (r instanceof Tensor) r.dispose()
        })
        const gbps = sets[0]!.bytes / (timing.medianMs / 1e3) / 1e9
        const limit = op === 'attentionDecode' ? ctx.probe.readGBps : ctx.probe.copyGBps
        const shareOfBandwidth = gbps / limit
        // The host time beside the kernels': embeddingBackward groups the ids by row on the host (a copy of the ids
        // to the host and a synchronization per call), which the CUDA events around its kernels do not see.
        ctx.log(
          `${op} ${dtype} ${label(ctx.dry)}: ${timing.medianMs.toFixed(3)} ms (${timing.clock}; host ${timing.hostMedianMs.toFixed(3)} ms), ${gb(gbps)} GB/s = ${(shareOfBandwidth * 100).toFixed(0)}% of the ${op === 'attentionDecode' ? 'read' : 'copy'} bandwidth`,
        )
        return { timing, gbps, shareOfBandwidth }
      } finally {
        for (const t of made) t.dispose()
      }
    },
    torch: (dry) => {
      const base = op === 'attentionDecode' ? 'torch sdpa, one query' : op === 'kvCacheWrite' ? 'torch index_copy_ (HF StaticCache)' : 'torch index_add_ into f32'
      return [{ id: `${op} ${dtype} ${label(dry)} / ${base}`, kind: 'model_op', params: { op, ...decode(dry), T: widths(dry).T, C: widths(dry).C, V: widths(dry).V } }]
    },
  }
}

export const PERF_CASES: readonly PerfCase[] = [
  lossCase('bf16'),
  lossCase('f32'),
  logprobsCase('bf16'),
  logprobsCase('f32'),
  // The GEMM under modelOps.linear against cuBLAS through torch.matmul (the transformer ops' target is ours at
  // least half of cuBLASLt at 4096^3 bf16: backend.info().cuda.gemm says which one ran; GRPO_CUDA_GEMM=own
  // forces ours).
  gemmCase(4096, 64),
  gemmCase(8192, 96),
  // Attention at Qwen2.5-7B's heads against PyTorch's scaled_dot_product_attention (flash) on the same shape.
  attentionCase(false),
  attentionCase(true),
  // The memory-bound transformer ops at Qwen2.5-7B's widths, against the device's copy bandwidth and PyTorch
  // eager as Hugging Face's modeling code writes them.
  ...TRANSFORMER_OPS.map(transformerOpCase),
  // Generation (the KV cache) and the embedding's backward, against the same bandwidth and PyTorch's equivalents.
  ...(['attentionDecode', 'kvCacheWrite', 'embeddingBackward'] as const).map(modelOpCase),
  {
    id: 'device copy (cross-check of our probe)',
    torch: (dry) => [{ id: `torch copy_ ${dry ? '4 MiB' : '1 GiB'}`, kind: 'copy', params: { bytes: dry ? 4 << 20 : 1 << 30 } }],
  },
]

export interface TorchResult {
  id: string
  kind: TorchKind
  ok: boolean
  medianMs?: number
  minMs?: number
  maxMs?: number
  reps?: number
  compileSeconds?: number
  /** TFLOP/s (matmul, sdpa) or GB/s (copy), as the script computes them */
  rate?: number
  rateUnit?: string
  error?: string
  skipped?: string
}

export interface PerfRow {
  id: string
  op?: string
  status: 'timed' | 'absent' | 'no timing written' | 'reference only' | 'error' | 'skipped'
  ours?: OurTiming
  error?: string
  torch: { id: string; medianMs?: number; rate?: string; speedup?: number; note?: string }[]
  targets: { what: string; value: number | undefined; min: number; met: boolean }[]
}

/** Times our ops of PERF_CASES (the PyTorch side runs apart, in Python); returns rows without torch yet. */
export async function timeOurs(ctx: PerfContext, deadline: number, only?: (c: PerfCase) => boolean, fatal: ReadonlySet<string> = new Set()): Promise<PerfRow[]> {
  const rows: PerfRow[] = []
  for (const c of PERF_CASES.filter(only ?? (() => true))) {
    const row: PerfRow = { id: c.id, op: c.op, status: 'reference only', torch: [], targets: [] }
    rows.push(row)
    if (!c.op) continue
    if (!opExists(c.op)) {
      row.status = 'absent'
      continue
    }
    if (!c.ours) {
      row.status = 'no timing written'
      ctx.log(`  ${c.id}: ${c.op} exists but PERF_CASES has no timing for it (lib/check/perf.ts)`)
      continue
    }
    if (fatal.has(c.op)) {
      row.status = 'skipped'
      row.error = `${c.op} ended its process or its device in the correctness step`
      continue
    }
    if (Date.now() >= deadline) {
      row.status = 'skipped'
      row.error = 'time budget'
      continue
    }
    try {
      row.ours = await c.ours(ctx)
      row.status = 'timed'
    } catch (e) {
      row.status = 'error'
      row.error = (e as Error).message
      ctx.log(`  ${c.id}: ERROR ${row.error}`)
    }
  }
  return rows
}

/** Every PyTorch baseline of the table, for the Python script; the torch.compile rows last (their compile
 * time is the largest and least predictable cost, so a short budget loses them rather than the others). */
export function torchSpecs(dry: boolean): TorchSpec[] {
  const all = PERF_CASES.flatMap((c) => c.torch(dry))
  return [...all.filter((s) => !s.compile), ...all.filter((s) => s.compile)]
}

/** Joins the PyTorch results into the rows and judges the targets. */
export function joinTorch(rows: PerfRow[], results: readonly TorchResult[], dry: boolean): PerfRow[] {
  const byId = new Map(results.map((r) => [r.id, r]))
  for (const c of PERF_CASES) {
    const row = rows.find((r) => r.id === c.id)!
    const ours = row.ours?.timing.medianMs
    for (const spec of c.torch(dry)) {
      const r = byId.get(spec.id)
      if (!r) {
        row.torch.push({ id: spec.id, note: 'not run' })
        continue
      }
      if (!r.ok) {
        row.torch.push({ id: spec.id, note: r.skipped ? `skipped: ${r.skipped}` : `error: ${r.error}` })
        continue
      }
      row.torch.push({
        id: spec.id,
        medianMs: r.medianMs,
        rate: r.rate !== undefined ? `${r.rate.toFixed(1)} ${r.rateUnit}` : undefined,
        speedup: ours && r.medianMs ? r.medianMs / ours : undefined,
        note: r.compileSeconds !== undefined ? `compile ${r.compileSeconds.toFixed(1)} s (not timed)` : undefined,
      })
    }
    const t = dry ? undefined : c.targets
    if (t?.shareOfBandwidth !== undefined) {
      const v = row.ours?.shareOfBandwidth
      row.targets.push({ what: `${c.id}: share of the measured copy bandwidth`, value: v, min: t.shareOfBandwidth, met: v !== undefined && v >= t.shareOfBandwidth })
    }
    if (t?.speedupOverTorch) {
      const v = row.torch.find((x) => x.id === t.speedupOverTorch!.id)?.speedup
      row.targets.push({ what: `${c.id}: speed-up over ${t.speedupOverTorch.id.split(' / ')[1]}`, value: v, min: t.speedupOverTorch.min, met: v !== undefined && v >= t.speedupOverTorch.min })
    }
  }
  return rows
}

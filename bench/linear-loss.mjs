// The fused linear GRPO loss (ops.linearGrpoLoss) against the unfused path on the same machine in the same run:
//   unfused  modelOps.linear(hidden, W) → [N, V] logits → ops.grpoLoss (gradient written over the logits) →
//            modelOps.linearBackward (dx and gradWeight += dZᵀ·hidden)
//   fused    ops.linearGrpoLoss: chunks of tokens × vocabulary tiles, the logits recomputed for the gradient
// Peak extra memory is memoryInfo()[device].peakBytes (tensors + op scratch, counted by the allocator) minus what
// was live before the call; time is the median of `reps` runs (after one warm-up that also allocates the GEMM's
// per-thread buffers). Run after `npm run build` (uses dist/):
//   node bench/linear-loss.mjs [--n 8192] [--v 151936] [--h 896,3584] [--dtype bf16] [--reps 3] [--warmup 1]
//                              [--chunkTokens T] [--chunkVocab C] [--device cpu|cuda] [--out file.json]
// --device cuda (GRPO_BACKEND=cuda on a machine with a GPU) runs both paths on the GPU with its chunk defaults.
import { writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { ops, modelOps, Tensor, backend, memoryInfo, resetPeakMemory } from '../dist/index.js'

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []))
const N = Number(args.n ?? 8192)
const V = Number(args.v ?? 151936)
const Hs = String(args.h ?? '896,3584').split(',').map(Number)
const dtype = args.dtype ?? 'bf16'
const reps = Number(args.reps ?? 3)
const warmup = Number(args.warmup ?? 1) // runs before the timed ones (0: the GEMM buffers exist already)
const chunkTokens = args.chunkTokens ? Number(args.chunkTokens) : undefined
const chunkVocab = args.chunkVocab ? Number(args.chunkVocab) : undefined
const device = args.device ?? 'cpu'

function randomTensor(count, shape, scale) {
  const x = new Float32Array(count)
  for (let i = 0; i < count; i++) x[i] = (Math.random() * 2 - 1) * scale
  return Tensor.from(x, shape, { dtype, device })
}

async function measure(run) {
  const times = []
  let peak = 0
  for (let r = 1 - warmup; r <= reps; r++) {
    const before = memoryInfo()[device]
    resetPeakMemory()
    const t0 = performance.now()
    const keep = await run()
    const ms = performance.now() - t0
    const extra = memoryInfo()[device].peakBytes - (before.bytes + before.scratchBytes)
    for (const t of keep) t.dispose()
    if (r <= 0) continue // warm-up
    times.push(ms)
    peak = Math.max(peak, extra)
  }
  times.sort((a, b) => a - b)
  return { ms: times[times.length >> 1], peakExtraBytes: peak }
}

const info = backend.info()
const result = {
  date: new Date().toISOString(),
  cpu: cpus()[0]?.model,
  threads: info.cpu.threads,
  gemm: info.cpu.gemm,
  loadavgBefore: loadavg(),
  device,
  N, V, dtype, reps, warmup,
  cases: [],
}
console.log(`device ${device}, cpu ${result.cpu}, ${result.threads} threads, gemm ${JSON.stringify(info.cpu.gemm)}, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)
for (const H of Hs) {
  const hidden = randomTensor(N * H, [1, N, H], 1)
  const weight = randomTensor(V * H, [V, H], 2 / Math.sqrt(H))
  const targets = Tensor.from(Int32Array.from({ length: N }, () => (Math.random() * V) | 0), [1, N], { device })
  const advantages = Tensor.from([1], [1], { device })
  const gradWeight = Tensor.from(new Float32Array(V * H), [V, H], { device })
  const unfused = await measure(async () => {
    const logits = await modelOps.linear(hidden, weight)
    const r = await ops.grpoLoss({ logits, targets, advantages }, { inplace: true })
    const dx = await modelOps.linearBackward(logits, hidden, weight, { gradWeight })
    logits.dispose()
    return [r.logp, dx]
  })
  const fused = await measure(async () => {
    const r = await ops.linearGrpoLoss({ hidden, weight, targets, advantages, gradWeight }, { chunkTokens, chunkVocab })
    return [r.logp, r.gradHidden]
  })
  const flops = 2 * N * V * H
  const row = {
    H,
    unfused: { ...unfused, gemmTflops: (3 * flops) / (unfused.ms / 1e3) / 1e12 },
    fused: { ...fused, gemmTflops: (4 * flops) / (fused.ms / 1e3) / 1e12 },
    timeRatio: fused.ms / unfused.ms,
    memoryRatio: fused.peakExtraBytes / unfused.peakExtraBytes,
    logitsBytes: N * V * (dtype === 'bf16' ? 2 : 4),
  }
  result.cases.push(row)
  console.log(
    `H ${H}: unfused ${unfused.ms.toFixed(0)} ms, peak +${(unfused.peakExtraBytes / 2 ** 20).toFixed(1)} MiB | fused ${fused.ms.toFixed(0)} ms, ` +
      `peak +${(fused.peakExtraBytes / 2 ** 20).toFixed(1)} MiB | time ×${row.timeRatio.toFixed(3)}, memory 1/${(1 / row.memoryRatio).toFixed(1)}`,
  )
  for (const t of [hidden, weight, targets, advantages, gradWeight]) t.dispose()
}
result.loadavgAfter = loadavg()
console.log(`load after ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)
if (args.out) writeFileSync(args.out, JSON.stringify(result, null, 2) + '\n')

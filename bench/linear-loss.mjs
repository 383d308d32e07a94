// The fused linear GRPO loss (ops.linearGrpoLoss) against the unfused path on the same machine in the same run:
//   unfused  modelOps.linear(hidden, W) → [N, V] logits → ops.grpoLoss (gradient written over the logits) →
//            modelOps.linearBackward (dx and gradWeight += dZᵀ·hidden)
//   fused    ops.linearGrpoLoss with its defaults: vocabulary tiles whose logits are recomputed for the gradient
//            (4 GEMMs; on the CPU the row statistics and dZ are taken in the GEMM's epilogue); with --chunkVocab >= V
//            on the CPU the whole-vocabulary mode (chunks of tokens against the whole vocabulary, 3 GEMMs)
// Peak extra memory is memoryInfo()[device].peakBytes (tensors + op scratch, counted by the allocator) minus what
// was live before the call; time is the median of `reps` runs (after one warm-up that also allocates the GEMM's
// per-thread buffers). Run after `npm run build` (uses dist/):
//   node bench/linear-loss.mjs [--n 8192] [--v 151936] [--h 896,3584] [--dtype bf16] [--reps 3] [--warmup 1]
//                              [--chunkTokens T] [--chunkVocab C] [--device cpu|cuda] [--variants] [--out file.json]
// --device cuda (GRPO_BACKEND=cuda on a machine with a GPU) runs both paths on the GPU with its chunk defaults.
// --variants also times the loss variants of docs/math.md §3.2-3.3 on the fused path (old and reference log-probs,
// k3 KL): plain, rollout correction, GSPO, GSPO + sequence rollout correction, each as a ratio to plain. The fused
// linear loss computes every token's log-prob before any gradient anyway, so GSPO's sequence ratio costs it no pass.
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
const variants = 'variants' in args

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

// The same call with old/reference/sampler log-probs near the policy's own, under each variant's options.
async function timeVariants(hidden, weight, targets, gradWeight) {
  const first = await ops.linearTokenLogprobs({ hidden, weight, targets }, { chunkTokens, chunkVocab })
  const logp = await first.logp.toArray()
  first.logp.dispose()
  first.lse?.dispose()
  const near = (spread) => Tensor.from(logp.map((v) => v + (Math.random() - 0.5) * spread), [1, N], { device })
  const [oldLogp, refLogp, rolloutLogp] = [near(0.2), near(0.1), near(0.02)]
  const advantages = Tensor.from(Float32Array.from({ length: N }, () => Math.random() * 2 - 1), [1, N], { device })
  const base = { clipLow: 0.2, clipHigh: 0.2, beta: 1e-3, kl: 'k3', chunkTokens, chunkVocab }
  const cases = [
    ['plain', {}, false],
    ['rollout-corr', { rolloutCorrection: { level: 'token', mode: 'truncate', max: 2 } }, true],
    ['gspo', { ratioLevel: 'sequence' }, false],
    ['gspo+rollout', { ratioLevel: 'sequence', rolloutCorrection: { level: 'sequence', mode: 'mask', min: 0.5, max: 2 } }, true],
  ]
  const out = {}
  for (const [name, options, rollout] of cases) {
    const inputs = { hidden, weight, targets, oldLogp, refLogp, advantages, gradWeight, ...(rollout ? { rolloutLogp } : {}) }
    const m = await measure(async () => {
      const r = await ops.linearGrpoLoss(inputs, { ...base, ...options })
      return [r.logp, r.gradHidden, ...(r.entropy ? [r.entropy] : [])]
    })
    out[name] = { ms: m.ms, ratioToPlain: out.plain ? m.ms / out.plain.ms : 1 }
    console.log(`  variant ${name}: ${m.ms.toFixed(0)} ms (${out[name].ratioToPlain.toFixed(3)}x plain)`)
  }
  for (const t of [oldLogp, refLogp, rolloutLogp, advantages]) t.dispose()
  return out
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
  const recompute = device === 'cuda' || chunkVocab === undefined || chunkVocab < V
  const row = {
    H,
    unfused: { ...unfused, gemmTflops: (3 * flops) / (unfused.ms / 1e3) / 1e12 },
    fused: { ...fused, mode: recompute ? 'vocabulary tiles (recompute)' : 'whole vocabulary', gemmTflops: ((recompute ? 4 : 3) * flops) / (fused.ms / 1e3) / 1e12 },
    timeRatio: fused.ms / unfused.ms,
    memoryRatio: fused.peakExtraBytes / unfused.peakExtraBytes,
    logitsBytes: N * V * (dtype === 'bf16' ? 2 : 4),
  }
  if (variants) row.variants = await timeVariants(hidden, weight, targets, gradWeight)
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

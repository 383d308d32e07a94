// GSPO from materialized logits against the plain fused loss, same inputs, same process (issue 13):
//   plain      grpoLoss, token ratio (clip 0.2, k3 KL, beta 1e-3)
//   gspo       ratioLevel 'sequence': the fused pass writes provisional rows, then rescales them per token
//   gspo+roll  the same with a sequence-level rollout mask (sampler log-probs)
//   prepass    ratioLevel 'sequence' with GRPO_CPU_GSPO_PREPASS=1: a statistics pass over the logits first
// Rounds alternate the variants (and two input sets, so no call finds the previous one's rows in cache); the
// medians of wall time and of the process's CPU time (all pool threads) are reported, and their ratios to plain.
// On a loaded machine the CPU-time ratios are the ones to read.
//
//   node bench/gspo-logits.mjs --b 1 --l 256 --v 151936 --dtype f32 --reps 9 [--out bench/results/x.json]
import { writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { ops, Tensor, backend } from '../dist/index.js'

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []))
const B = Number(args.b ?? 1), L = Number(args.l ?? 256), V = Number(args.v ?? 151936), N = B * L
const dtype = args.dtype ?? 'f32'
const reps = Number(args.reps ?? 9)
const loadBefore = loadavg()

let state = 12345
const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32)
const inputs = [0, 1].map(() => {
  const values = new Float32Array(N * V)
  for (let i = 0; i < values.length; i++) values[i] = (random() + random() + random() - 1.5) * 4
  return { logits: Tensor.from(values, [B, L, V], { dtype }), targets: Tensor.from(Int32Array.from({ length: N }, () => Math.floor(random() * V)), [B, L]) }
})
const lp = await ops.tokenLogprobs(inputs[0].logits, inputs[0].targets)
const logp = await lp.logp.toArray()
lp.logp.dispose()
lp.lse.dispose()
const near = (spread) => Tensor.from(logp.map((v) => v + (random() - 0.5) * spread), [B, L])
const old = near(0.2), ref = near(0.1), rollout = near(0.02)
const advantages = Tensor.from(Float32Array.from({ length: B }, () => random() * 2 - 1), [B])
const base = { clipLow: 0.2, clipHigh: 0.2, beta: 1e-3, kl: 'k3' }
const gspo = { ...base, ratioLevel: 'sequence' }
const variants = {
  plain: { options: base },
  gspo: { options: gspo },
  'gspo+roll': { options: { ...gspo, rolloutCorrection: { level: 'sequence', mode: 'mask', min: 0.5, max: 2 } }, rollout: true },
  prepass: { options: gspo, prepass: true },
}
const samples = Object.fromEntries(Object.keys(variants).map((k) => [k, []]))
let k = 0
for (let round = -1; round < reps; round++) {
  for (const [name, v] of Object.entries(variants)) {
    if (v.prepass) process.env.GRPO_CPU_GSPO_PREPASS = '1'
    else delete process.env.GRPO_CPU_GSPO_PREPASS
    const i = inputs[k++ & 1]
    const c0 = process.cpuUsage(), t0 = performance.now()
    const r = ops.grpoLossSync({ logits: i.logits, targets: i.targets, oldLogp: old, refLogp: ref, advantages, ...(v.rollout ? { rolloutLogp: rollout } : {}) }, v.options)
    const wall = performance.now() - t0, cpu = process.cpuUsage(c0)
    r.gradLogits.dispose()
    r.logp.dispose()
    if (round >= 0) samples[name].push({ wall, cpu: (cpu.user + cpu.system) / 1000 })
  }
}
delete process.env.GRPO_CPU_GSPO_PREPASS
const median = (a) => a.slice().sort((x, y) => x - y)[a.length >> 1]
const rows = Object.fromEntries(Object.entries(samples).map(([n, s]) => [n, { wallMs: median(s.map((x) => x.wall)), cpuMs: median(s.map((x) => x.cpu)) }]))
const info = backend.info()
console.log(`grpoLoss B=${B} L=${L} V=${V} ${dtype}, ${reps} rounds, ${info.cpu?.isa ?? '?'} x ${info.cpu?.threads ?? '?'} threads, load ${loadBefore.map((x) => x.toFixed(1)).join(' ')}`)
for (const [n, r] of Object.entries(rows)) {
  r.wallRatio = r.wallMs / rows.plain.wallMs
  r.cpuRatio = r.cpuMs / rows.plain.cpuMs
  console.log(`  ${n.padEnd(10)} wall ${r.wallMs.toFixed(2).padStart(9)} ms (${r.wallRatio.toFixed(2)}x)  cpu ${r.cpuMs.toFixed(2).padStart(9)} ms (${r.cpuRatio.toFixed(2)}x)`)
}
if (args.out) {
  writeFileSync(args.out, JSON.stringify({ B, L, V, dtype, reps, cpu: cpus()[0]?.model, backend: info.cpu, loadavgBefore: loadBefore, loadavgAfter: loadavg(), rows }, null, 2) + '\n')
}

/**
 * The kernel benchmark (`npm run bench`): every op at the given shapes and dtypes, timed right (warm-up,
 * repetitions, median and spread, inputs rotated so that caches do not flatter the numbers, never zeros),
 * against the machine's own limits measured in the same run and against the baselines a user would
 * otherwise have (plain TypeScript, and our own ops unfused). Results: a table, a JSON file, an SVG chart.
 *
 * On cuda the limits are the device's (our copy and read kernels, lib/bench/device.ts) and each op is timed
 * with CUDA events around the kernels it launches (first kernel's start to last kernel's end), so the host's
 * argument checks and status copies are not in the numbers; the host-clock median is kept beside it.
 * Inputs are filled where they live (fillUniform), so gigabytes of logits never pass through JavaScript.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import type { Device } from '../dtype.js'
import { native } from '../native.js'
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { plainGrpoLoss } from './baselines.js'
import { probeDeviceBandwidth, randomUniform, timeKernels } from './device.js'
import { SQUARE_SIZES, gemmMarkdown, runGemmBench, type GemmBenchResult } from './gemm.js'
import type { BenchCase, BenchOptions, MachineLimits, Timing } from './types.js'

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return (s >>> 0) / 4294967296
  }
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1]!

/**
 * Times `run` `reps` times after `warmup` runs. With the kernel timer, each repetition's time is the kernels'
 * (CUDA events); a repetition that launched no kernel falls back to the host clock, and the whole case then
 * reports the host clock, so the two are never mixed.
 */
async function time(reps: number, warmup: number, run: () => Promise<unknown> | unknown, timer?: { device: Device }, pairedLimit?: () => number): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await run()
  const host: number[] = []
  const kernels: number[] = []
  const limits: number[] = []
  for (let i = 0; i < reps; i++) {
    if (pairedLimit) limits.push(pairedLimit())
    const t0 = performance.now()
    if (timer) {
      const { time: k } = await timeKernels(timer.device, run)
      if (k) kernels.push(k.ms)
    } else {
      await run()
    }
    host.push(performance.now() - t0)
  }
  const samples = kernels.length === reps ? kernels : host
  const paired = pairedLimit ? pairTimings(samples, limits) : undefined // before the sort below reorders the samples
  samples.sort((a, b) => a - b)
  return {
    medianMs: samples[samples.length >> 1]!,
    minMs: samples[0]!,
    maxMs: samples[samples.length - 1]!,
    reps,
    clock: samples === kernels ? 'cuda-events' : 'host',
    hostMedianMs: median(host),
    ...(paired ? { paired } : {}),
  }
}

/** Repetition i's time over the limit measured just before it, and the median of those ratios (Timing.paired). */
export function pairTimings(timesMs: readonly number[], limitsMs: readonly number[]): NonNullable<Timing['paired']> {
  if (timesMs.length !== limitsMs.length || timesMs.length === 0) throw new Error(`pairTimings: ${timesMs.length} times for ${limitsMs.length} limits`)
  const ratios = timesMs.map((t, i) => t / limitsMs[i]!)
  return { timesLimit: median(ratios), limitMedianMs: median([...limitsMs]), ratios }
}

/**
 * The limit of a row op's repetition, measured just before it (Timing.paired): the host's copy (read + write) or
 * read bandwidth over two 512 MiB buffers (as the run's first probe), once, ~0.3 s. The probe's buffers bypass
 * the block cache (cpu/machine_limits.cc), so the op's own output block stays cached between repetitions. Only
 * for ops that move 64 MB or more: below that the op's data stays in cache and no DRAM probe describes it.
 */
function pairedProbe(machine: MachineLimits, bytes: number, kind: 'copy' | 'read'): (() => number) | undefined {
  if (machine.source !== 'host' || bytes < 64 * 2 ** 20) return undefined
  return () => {
    const m = native().measureMachine({ bytes: 512 * 1024 * 1024, reps: 1 })
    return bytes / (kind === 'copy' ? m.copyGBps : m.readGBps) / 1e6
  }
}

/** GB/s with three significant digits (the SIMT executor's rates are far below 1). */
export const gb = (v: number) => (v >= 100 ? v.toFixed(0) : v.toPrecision(3))

const BYTES: Record<string, number> = { f32: 4, bf16: 2, f16: 2 }

/** Random logits in [−6, 6) made where they live: no [N, V] array in JavaScript. */
function logitsTensor(seed: number, shape: number[], dtype: 'f32' | 'bf16' | 'f16', device: Device): Promise<Tensor> {
  return randomUniform(shape, { dtype, device, seed, low: -6, high: 6 })
}

function disposeAll(value: unknown): void {
  if (value instanceof Tensor) value.dispose()
  else if (value && typeof value === 'object') for (const v of Object.values(value)) if (v instanceof Tensor) v.dispose()
}

/** Runs the benchmark and writes its results; returns them too. */
export async function runBench(o: BenchOptions): Promise<{ machine: MachineLimits; cases: BenchCase[]; gemm?: GemmBenchResult; files: string[] }> {
  const random = xorshift(o.seed)
  const loadStart = os.loadavg()
  const cpuModel = os.cpus()[0]?.model ?? 'unknown'
  const timer = (o.timer ?? (o.device === 'cuda' ? 'kernels' : 'host')) === 'kernels' ? { device: o.device } : undefined
  let machine: MachineLimits
  if (o.device === 'cuda' || o.deviceProbe) {
    // On cuda the limits are the device's; a caller that runs the kernels on the SIMT executor passes that
    // backend's probe (the GPU check's dry run), so both sides of "% of limit" come from the same executor.
    if (!o.deviceProbe) o.log('measuring the device bandwidth (our copy and read kernels, CUDA events)...')
    const probe = o.deviceProbe ?? (await probeDeviceBandwidth('cuda'))
    const cpu = native().backendInfo().cpu
    machine = {
      threads: cpu.threads, isa: cpu.isa, copyGBps: probe.copyGBps, readGBps: probe.readGBps, expPerSecond: 0,
      source: 'device', device: probe, cpuModel, loadAverage: { start: loadStart },
    }
    o.log(
      `  ${probe.backend} bandwidth: copy ${gb(probe.copyGBps)} GB/s (read+write), read ${gb(probe.readGBps)} GB/s, ` +
        `cudaMemcpy device-to-device ${gb(probe.memcpyGBps)} GB/s, over ${(probe.bytes / 2 ** 20).toFixed(0)} MiB buffers`,
    )
  } else {
    o.log(`measuring this machine's limits (bandwidth with every core, vectorized exp rate)...`)
    machine = { ...native().measureMachine({ bytes: 512 * 1024 * 1024, reps: 5 }), source: 'host', cpuModel, loadAverage: { start: loadStart } }
    o.log(
      `  ${machine.threads} threads, ${machine.isa}: copy ${machine.copyGBps.toFixed(1)} GB/s (read+write; memcpy ${machine.memcpyGBps?.toFixed(1)}, ` +
        `streaming stores ${machine.streamCopyGBps?.toFixed(1)}), read ${machine.readGBps.toFixed(1)} GB/s, exp ${(machine.expPerSecond / 1e9).toFixed(2)} G/s`,
    )
  }
  o.log(`  timing: ${timer ? 'kernel time from CUDA events' : 'host clock'}, median of ${o.reps} after ${o.warmup} warm-up`)
  const cases: BenchCase[] = []
  const add = (c: Omit<BenchCase, 'tokensPerSecond' | 'gbps' | 'shareOfLimit'>, limitGBps: number) => {
    const seconds = c.timing.medianMs / 1000
    const gbps = (c.bytesPerToken * c.tokens) / seconds / 1e9
    const full: BenchCase = { ...c, tokensPerSecond: c.tokens / seconds, gbps, shareOfLimit: limitGBps > 0 ? gbps / limitGBps : 0 }
    let limits = ''
    if (limitGBps > 0) {
      // The two ceilings of a row op on this machine, from the same run: moving its bytes once, and its
      // exponentials at the measured exp rate. The larger one is what a perfect kernel would be bound by.
      full.bandwidthLimitMs = (c.bytesPerToken * c.tokens) / limitGBps / 1e6
      full.timesBandwidthLimit = c.timing.medianMs / full.bandwidthLimitMs
      limits = ` ${full.timesBandwidthLimit.toFixed(2)}x the bandwidth limit (${full.bandwidthLimitMs.toFixed(2)} ms)`
      if (c.timing.paired) {
        full.pairedTimesBandwidthLimit = c.timing.paired.timesLimit
        limits += `, paired ${c.timing.paired.timesLimit.toFixed(2)}x (limit ${c.timing.paired.limitMedianMs.toFixed(2)} ms)`
      }
      // The device probe measures no exp rate (expPerSecond 0): on cuda only the bandwidth limit is reported.
      if (c.expsPerElement && machine.expPerSecond > 0) {
        full.expLimitMs = (c.expsPerElement * c.tokens * c.V) / machine.expPerSecond * 1e3
        full.binds = full.expLimitMs > full.bandwidthLimitMs ? 'exp' : 'memory'
        limits += `, exp limit ${full.expLimitMs.toFixed(2)} ms: ${full.binds}-bound`
      }
    }
    cases.push(full)
    o.log(
      `  ${full.op.padEnd(22)} ${full.impl.padEnd(11)} ${full.dtype.padEnd(4)} V=${String(full.V).padEnd(6)} tokens=${String(full.tokens).padEnd(5)} ` +
        `${full.timing.medianMs.toFixed(3).padStart(9)} ms [${full.timing.minMs.toFixed(3)}-${full.timing.maxMs.toFixed(3)}]${full.timing.clock === 'cuda-events' ? ' ev' : ''} ` +
        `${(full.tokensPerSecond / 1e3).toFixed(1).padStart(8)}k tok/s ${gb(full.gbps).padStart(6)} GB/s ${(full.shareOfLimit * 100).toFixed(0).padStart(4)}% of limit` +
        limits + (full.note ? `  ${full.note}` : ''),
    )
    return full
  }

  const rowOps = o.ops.filter((op) => op === 'grpoLoss' || op === 'tokenLogprobs' || op === 'tokenLogprobs+entropy')
  for (const V of rowOps.length ? o.vocab : []) {
    for (const N of o.tokens) {
      // Two input sets, used alternately: the second run of a case never finds the first one's rows in cache.
      const seeds = [random() * 2 ** 31, random() * 2 ** 31].map(Math.floor)
      const targetSets = seeds.map(() => Int32Array.from({ length: N }, () => Math.floor(random() * V)))
      for (const dtype of o.dtypes) {
        const inputs = await Promise.all(
          seeds.map(async (seed, k) => ({
            logits: await logitsTensor(seed, [1, N, V], dtype, o.device),
            targets: Tensor.from(targetSets[k]!, [1, N], { device: o.device }),
          })),
        )
        const logp0 = await ops.tokenLogprobs(inputs[0]!.logits, inputs[0]!.targets)
        const logpValues = (await logp0.logp.toArray()) as Float32Array
        disposeAll(logp0)
        const old = Tensor.from(logpValues.map((v) => v + (random() - 0.5) * 0.2), [1, N], { device: o.device })
        const ref = Tensor.from(logpValues.map((v) => v + (random() - 0.5) * 0.1), [1, N], { device: o.device })
        const rollout = Tensor.from(logpValues.map((v) => v + (random() - 0.5) * 0.02), [1, N], { device: o.device })
        const advantages = Tensor.from(Float32Array.from({ length: N }, () => random() * 2 - 1), [1, N], { device: o.device })
        const lossOptions = { clipLow: 0.2, clipHigh: 0.2, beta: 1e-3, kl: 'k3' as const }
        let k = 0
        const next = () => inputs[k++ & 1]!
        const inBytes = BYTES[dtype]! * V
        if (o.ops.includes('tokenLogprobs')) {
          const timing = await time(o.reps, o.warmup, async () => { const i = next(); disposeAll(await ops.tokenLogprobs(i.logits, i.targets)) }, timer, pairedProbe(machine, N * inBytes, 'read'))
          add({ op: 'tokenLogprobs', impl: 'native', dtype, V, tokens: N, timing, bytesPerToken: inBytes, expsPerElement: 1 }, machine.readGBps)
        }
        if (o.ops.includes('tokenLogprobs+entropy')) {
          const timing = await time(o.reps, o.warmup, async () => { const i = next(); disposeAll(await ops.tokenLogprobs(i.logits, i.targets, { entropy: true })) }, timer, pairedProbe(machine, N * inBytes, 'read'))
          add({ op: 'tokenLogprobs+entropy', impl: 'native', dtype, V, tokens: N, timing, bytesPerToken: inBytes, expsPerElement: 1 }, machine.readGBps)
        }
        if (o.ops.includes('grpoLoss')) {
          const bytesPerToken = 2 * inBytes // one read of the logits, one write of the gradient
          const fused = await time(o.reps, o.warmup, async () => {
            const i = next()
            disposeAll(await ops.grpoLoss({ logits: i.logits, targets: i.targets, oldLogp: old, refLogp: ref, advantages }, lossOptions))
          }, timer, pairedProbe(machine, N * bytesPerToken, 'copy'))
          const native = add({ op: 'grpoLoss', impl: 'native', dtype, V, tokens: N, timing: fused, bytesPerToken, expsPerElement: 1 }, machine.copyGBps)
          // The variants of docs/math.md §3.2-3.3 on the same shape, in the same run: rollout correction (weights
          // from [B, L] inputs, no extra pass over the logits) and GSPO (a statistics pass first: one more read).
          const variants = [
            { impl: 'rollout-corr' as const, options: { rolloutCorrection: { level: 'token' as const, mode: 'truncate' as const, max: 2 } }, rollout: true, exps: 1, reads: 0 },
            { impl: 'gspo' as const, options: { ratioLevel: 'sequence' as const }, rollout: false, exps: 2, reads: 1 },
            { impl: 'gspo+rollout' as const, options: { ratioLevel: 'sequence' as const, rolloutCorrection: { level: 'sequence' as const, mode: 'mask' as const, min: 0.5, max: 2 } }, rollout: true, exps: 2, reads: 1 },
          ]
          for (const v of variants) {
            const timing = await time(o.reps, o.warmup, async () => {
              const i = next()
              disposeAll(await ops.grpoLoss({ logits: i.logits, targets: i.targets, oldLogp: old, refLogp: ref, advantages, ...(v.rollout ? { rolloutLogp: rollout } : {}) }, { ...lossOptions, ...v.options }))
            })
            const c = add({ op: 'grpoLoss', impl: v.impl, dtype, V, tokens: N, timing, bytesPerToken: bytesPerToken + v.reads * inBytes, expsPerElement: v.exps }, machine.copyGBps)
            c.note = `${(timing.medianMs / fused.medianMs).toFixed(2)}x the plain fused loss`
            o.log(`    ${c.note}`)
          }
          // Our own ops unfused: log-softmax, then the loss on the log-probs, then a separate gradient pass
          // over the logits (grpoLoss with per-token advantages set so that its ∂loss/∂logp is the policy
          // loss's gradient: the same two passes over the row as a stand-alone log-softmax backward).
          const unfused = await time(o.reps, o.warmup, async () => {
            const i = next()
            const lp = await ops.tokenLogprobs(i.logits, i.targets)
            const pl = await ops.policyLoss({ logp: lp.logp, oldLogp: old, refLogp: ref, advantages }, lossOptions)
            const g = (await pl.gradLogp.toArray()) as Float32Array
            const scaled = Tensor.from(g.map((v) => -v * N), [1, N], { device: o.device })
            disposeAll(await ops.grpoLoss({ logits: i.logits, targets: i.targets, advantages: scaled }))
            scaled.dispose()
            disposeAll(lp)
            disposeAll(pl)
          }, timer)
          const u = add({ op: 'grpoLoss', impl: 'unfused-ops', dtype, V, tokens: N, timing: unfused, bytesPerToken, expsPerElement: 2 }, machine.copyGBps)
          u.note = `fused is ${(unfused.medianMs / fused.medianMs).toFixed(2)}x faster`
          o.log(`    ${u.note}`)
          if (dtype === 'f32' && o.baselineReps > 0) {
            const s = { values: await inputs[0]!.logits.toFloat32Array(), targets: targetSets[0]! }
            const oldV = (await old.toArray()) as Float32Array, refV = (await ref.toArray()) as Float32Array
            const advV = (await advantages.toArray()) as Float32Array
            let plainLoss = 0
            const plain = await time(o.baselineReps, 0, () => {
              plainLoss = plainGrpoLoss({ logits: s.values, targets: s.targets, oldLogp: oldV, refLogp: refV, advantages: advV, V, temperature: 1, clip: 0.2, beta: 1e-3 }).loss
            })
            const check = await ops.grpoLoss({ logits: inputs[0]!.logits, targets: inputs[0]!.targets, oldLogp: old, refLogp: ref, advantages }, lossOptions)
            const agree = Math.abs(check.loss - plainLoss) <= 1e-4 * Math.max(1e-6, Math.abs(plainLoss))
            disposeAll(check)
            const p = add({ op: 'grpoLoss', impl: 'plain-ts', dtype, V, tokens: N, timing: plain, bytesPerToken }, machine.copyGBps)
            p.note = `native is ${(plain.medianMs / native.timing.medianMs).toFixed(1)}x faster; losses ${agree ? 'agree' : 'DIFFER'}`
            o.log(`    ${p.note}`)
          }
        }
        for (const t of [...inputs.flatMap((i) => [i.logits, i.targets]), old, ref, rollout, advantages]) t.dispose()
      }
    }
  }

  for (const N of o.ops.includes('groupAdvantages') || o.ops.includes('policyLoss') ? o.tokens : []) {
    if (o.ops.includes('groupAdvantages')) {
      const rewards = Tensor.from(Float32Array.from({ length: N * 5 }, () => (random() < 0.4 ? 1 : 0)), [N * 5], { device: o.device })
      const timing = await time(o.reps, o.warmup, async () => disposeAll(await ops.groupAdvantages(rewards, { groupSize: 5 })), timer)
      add({ op: 'groupAdvantages', impl: 'native', dtype: 'f32', V: 0, tokens: N * 5, timing, bytesPerToken: 8, note: 'tokens = rewards, groups of 5' }, machine.copyGBps)
      rewards.dispose()
    }
    if (o.ops.includes('policyLoss')) {
      const L = 512, B = Math.max(1, Math.ceil(N / L))
      const values = () => Tensor.from(Float32Array.from({ length: B * L }, () => -random() * 5), [B, L], { device: o.device })
      const [logp, old, ref] = [values(), values(), values()]
      const advantages = Tensor.from(Float32Array.from({ length: B }, () => random() * 2 - 1), [B], { device: o.device })
      const timing = await time(o.reps, o.warmup, async () =>
        disposeAll(await ops.policyLoss({ logp, oldLogp: old, refLogp: ref, advantages }, { beta: 1e-3 })),
      timer)
      add({ op: 'policyLoss', impl: 'native', dtype: 'f32', V: 0, tokens: B * L, timing, bytesPerToken: 16 }, machine.copyGBps)
      for (const t of [logp, old, ref, advantages]) t.dispose()
    }
  }

  if (o.ops.includes('attention') || o.ops.includes('transformerOps')) {
    const { benchAttention, benchRowOps } = await import('./transformer-bench.js')
    const tb = { device: o.device, dtypes: o.dtypes.filter((d): d is 'f32' | 'bf16' => d !== 'f16'), reps: o.reps, warmup: o.warmup, random, time: (reps: number, warmup: number, run: () => Promise<unknown> | unknown) => time(reps, warmup, run, timer), add, log: o.log }
    const T = o.transformerTokens ?? 4096
    if (o.ops.includes('transformerOps')) await benchRowOps(tb, machine, T, Math.max(...o.vocab))
    if (o.ops.includes('attention')) await benchAttention(tb, o.attentionLengths, T)
  }

  if (o.ops.includes('scoreBatch')) {
    const { scoreBatchBench } = await import('./reward-bench.js')
    const r = await scoreBatchBench(o.reps, o.seed)
    cases.push(r)
    o.log(`  scoreBatch             ${r.timing.medianMs.toFixed(2)} ms for ${r.tokens} completions: ${(r.tokensPerSecond / 1e3).toFixed(1)}k completions/s`)
  }

  let gemm: GemmBenchResult | undefined
  if (o.ops.includes('gemm')) {
    gemm = await runGemmBench({ device: o.device, reps: Math.min(o.reps, 5), tokens: o.gemmTokens ?? 1024, sizes: o.gemmSizes ?? SQUARE_SIZES, log: o.log, torch: o.gemmTorch ?? true })
  }

  machine.loadAverage!.end = os.loadavg()
  o.log(`  load average at the end: ${machine.loadAverage!.end.map((l) => l.toFixed(2)).join(' ')}`)
  const files = o.write === false ? [] : await writeResults(o.out, machine, cases, o, gemm)
  return { machine, cases, gemm, files }
}

function machineName(): string {
  const cpu = (os.cpus()[0]?.model ?? 'cpu').replace(/\(R\)|\(TM\)|CPU|Processor|@.*$/g, '').trim().replace(/[^A-Za-z0-9]+/g, '-')
  return `${cpu.toLowerCase()}-${os.cpus().length}c`.replace(/-+/g, '-')
}

async function writeResults(outDir: string, machine: MachineLimits, cases: BenchCase[], o: BenchOptions, gemm?: GemmBenchResult): Promise<string[]> {
  mkdirSync(outDir, { recursive: true })
  const date = new Date().toISOString().slice(0, 10)
  const base = join(outDir, `${o.device}-${machineName()}-${date}`)
  const json = `${base}.json`
  writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), device: o.device, node: process.version, loadAverage: os.loadavg(), machine, options: { ...o, log: undefined }, cases, gemm }, null, 2) + '\n')
  const files = [json]
  if (cases.length > 0) {
    const svg = `${base}.svg`
    // Loaded here only: the chart library is not needed by callers that do not write (the GPU check's pack).
    const { benchChartSvg } = await import('./chart.js')
    writeFileSync(svg, await benchChartSvg(cases, machine, `node-grpo ${o.device} kernels on ${machineName()}`))
    files.push(svg)
  }
  if (gemm) {
    const md = `${base}-gemm.md`
    writeFileSync(md, `# GEMM, ${o.device}, ${machineName()}, ${date} (load average ${os.loadavg().map((l) => l.toFixed(1)).join(', ')})\n\n${gemmMarkdown(gemm)}`)
    files.push(md)
  }
  return files
}

/**
 * The GEMM benchmark (`npm run bench -- --ops gemm`, part of the default run): GFLOP/s of modelOps.linear and
 * of its two backward products at square sizes and at the shapes of a Qwen2.5-0.5B layer, against, in the same
 * run: the machine's multiply-add peak (measureGemmPeak: f32 FMA, vdpbf16ps, AMX), OpenBLAS's sgemm (loaded at
 * run time with its AVX-512 kernel selected) and oneDNN's bf16 GEMM through PyTorch (a python3 subprocess, when
 * torch is installed). FLOPs are 2·M·N·K per product; times are the best of `reps` after a warm-up (the least
 * disturbed by other processes on a shared machine).
 *
 * On a shared machine the wall clock also counts the time other processes hold the cores, so every case records
 * the process's CPU time too (every thread, best run): `busyGflops` = FLOPs / (CPU seconds / threads) is the
 * rate while the work actually runs, the figure the peaks (per-thread CPU time) are measured in. Ratios between
 * implementations use it; both figures are in the results.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import type { Device } from '../dtype.js'
import { float32ToBf16 } from '../dtype.js'
import { linearBackwardSync, linearSync } from '../linear.js'
import { native } from '../native.js'
import { Tensor } from '../tensor.js'

export type GemmPass = 'forward' | 'gradInput' | 'gradWeight'

export interface GemmShape {
  name: string
  /** tokens (rows of x), out features (rows of W), in features */
  N: number
  M: number
  K: number
}

export interface GemmCase {
  shape: string
  /** the GEMM run: C [M, N] = A [M, K] · B [K, N] (forward: M = tokens, N = out features, K = in features) */
  M: number
  N: number
  K: number
  pass: GemmPass
  impl: 'node-grpo' | 'openblas' | 'onednn-torch' | 'torch'
  dtype: 'f32' | 'bf16'
  ms: number
  gflops: number
  /** best process CPU time of a run, over the thread count, in ms: the time the work was actually running */
  busyMs: number
  busyGflops: number
  /** busyGflops over the measured peak of the dtype's instruction set */
  shareOfPeak: number
  note?: string
}

export interface GemmPeak {
  threads: number
  fmaIsa: string
  f32GFlops: number
  bf16DotGFlops: number
  amxGFlops: number
}

export const SQUARE_SIZES = [256, 512, 1024, 2048, 4096]

/** The projections of one Qwen2.5-0.5B layer for `tokens` tokens (hidden 896, MLP 4864, 14 query / 2 KV heads of 64). */
export function qwenShapes(tokens: number): GemmShape[] {
  return [
    { name: 'q_proj/o_proj 896x896', N: tokens, M: 896, K: 896 },
    { name: 'k_proj/v_proj 128x896', N: tokens, M: 128, K: 896 },
    { name: 'gate/up 4864x896', N: tokens, M: 4864, K: 896 },
    { name: 'down 896x4864', N: tokens, M: 896, K: 4864 },
    { name: 'lm_head 151936x896', N: tokens, M: 151936, K: 896 },
  ]
}

function randomValues(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    out[i] = (s >>> 0) / 4294967296 - 0.5
  }
  return out
}

/** Best wall and process-CPU milliseconds of `reps` runs after a warm-up (packing buffers, page faults). */
function bestMs(reps: number, run: () => void): { ms: number; cpuMs: number } {
  run()
  let ms = Infinity
  let cpuMs = Infinity
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    run()
    ms = Math.min(ms, performance.now() - t0)
    const c = process.cpuUsage(c0)
    cpuMs = Math.min(cpuMs, (c.user + c.system) / 1000)
  }
  return { ms, cpuMs }
}

/** How long to let OpenBLAS's worker threads spin down after a call (they poll for ~2^28 cycles, 0.11-0.13 s). */
const OPENBLAS_SPIN_MS = 300

/** Blocks the thread (no CPU) for `ms`: the cores go back to idle before the next measurement. */
function settle(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** M, N, K of the GEMM a pass runs (rows, columns, depth). */
function dims(s: GemmShape, pass: GemmPass): [number, number, number] {
  return pass === 'forward' ? [s.N, s.M, s.K] : pass === 'gradInput' ? [s.N, s.K, s.M] : [s.M, s.K, s.N]
}

// oneDNN (and PyTorch's own f32 GEMM) through torch, in a python3 subprocess: one JSON line per case.
const TORCH_SCRIPT = `
import json, sys, time
import torch
threads, reps, cases = json.loads(sys.argv[1])
torch.set_num_threads(threads)
out = {"version": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(), "results": []}
for (name, N, M, K, pass_, dtype) in cases:
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    x = torch.rand(N, K).sub_(0.5).to(dt); w = torch.rand(M, K).sub_(0.5).to(dt); dy = torch.rand(N, M).sub_(0.5).to(dt)
    if pass_ == "forward": f = lambda: torch.nn.functional.linear(x, w)
    elif pass_ == "gradInput": f = lambda: torch.matmul(dy, w)
    else: f = lambda: torch.matmul(dy.t(), x)
    f()
    best = float("inf"); best_cpu = float("inf")
    for _ in range(reps):
        c0 = time.process_time(); t0 = time.perf_counter(); f()
        best = min(best, time.perf_counter() - t0); best_cpu = min(best_cpu, time.process_time() - c0)
    out["results"].append([name, N, M, K, pass_, dtype, best * 1000, best_cpu * 1000])
print(json.dumps(out))
`

export interface TorchRun {
  available: boolean
  reason: string
  version?: string
  results: [string, number, number, number, GemmPass, 'f32' | 'bf16', number, number][]
}

function runTorch(threads: number, reps: number, cases: [string, number, number, number, GemmPass, string][]): TorchRun {
  // Debian's python3-torch lives under /usr/bin/python3; a pyenv or venv python3 first on PATH may lack it.
  const pythons = ['/usr/bin/python3', 'python3'].filter((p) => !p.startsWith('/') || existsSync(p))
  let reason = 'python3 not found'
  for (const python of pythons) {
    const r = spawnSync(python, ['-c', TORCH_SCRIPT, JSON.stringify([threads, reps, cases])], { encoding: 'utf8', timeout: 1_800_000 })
    if (r.status === 0) {
      const parsed = JSON.parse(r.stdout.trim().split('\n').pop()!) as { version: string; mkldnn: boolean; results: TorchRun['results'] }
      return { available: true, reason: `torch ${parsed.version} (${python}), mkldnn ${parsed.mkldnn ? 'on' : 'off'}`, version: parsed.version, results: parsed.results }
    }
    reason = `${python}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`
  }
  return { available: false, reason, results: [] }
}

export interface GemmBenchOptions {
  device: Device
  reps: number
  tokens: number
  sizes: readonly number[]
  log: (line: string) => void
  torch: boolean
}

export interface GemmBenchResult {
  peak: GemmPeak
  openblas: { available: boolean; core: string; reason: string }
  torch: { available: boolean; reason: string }
  info: { f32: string; bf16: string; cuda: string }
  cases: GemmCase[]
}

export async function runGemmBench(o: GemmBenchOptions): Promise<GemmBenchResult> {
  const n = native()
  o.log('GEMM: measuring the multiply-add peaks (every thread, registers only)...')
  const peak = n.measureGemmPeak({ ms: 300 })
  o.log(`  ${peak.threads} threads: f32 FMA (${peak.fmaIsa}) ${peak.f32GFlops.toFixed(0)} GFLOP/s, bf16 vdpbf16ps ${peak.bf16DotGFlops.toFixed(0)}, AMX ${peak.amxGFlops.toFixed(0)}`)
  const openblas = n.openblasInfo()
  o.log(`  OpenBLAS: ${openblas.available ? `${openblas.reason}, kernel ${openblas.core}` : openblas.reason}`)
  const bi = n.backendInfo()
  const info = { f32: bi.cpu.gemm.f32, bf16: bi.cpu.gemm.bf16, cuda: bi.cuda.gemm.library }
  o.log(`  node-grpo GEMM: f32 ${info.f32}, bf16 ${info.bf16}${o.device === 'cuda' ? `, cuda ${bi.cuda.gemm.reason}` : ''}`)

  const shapes: GemmShape[] = [...o.sizes.map((s) => ({ name: `square ${s}`, N: s, M: s, K: s })), ...qwenShapes(o.tokens)]
  const plan: { shape: GemmShape; pass: GemmPass }[] = []
  for (const shape of shapes) {
    plan.push({ shape, pass: 'forward' })
    // The backward products at the square sizes from 1024 and at the MLP shapes (the three transpositions).
    if ((shape.name.startsWith('square') && shape.N >= 1024 && shape.N <= 2048) || shape.name.startsWith('gate') || shape.name.startsWith('down')) {
      plan.push({ shape, pass: 'gradInput' }, { shape, pass: 'gradWeight' })
    }
  }
  const cases: GemmCase[] = []
  const add = (c: Omit<GemmCase, 'gflops' | 'busyGflops' | 'busyMs' | 'shareOfPeak'> & { cpuMs: number }, peakGFlops: number) => {
    const flops = 2 * c.M * c.N * c.K
    const gflops = flops / (c.ms / 1000) / 1e9
    // CPU time can fall below wall time x threads (a thread idles at the end of an uneven split) but a run never
    // goes faster than its wall clock allows: the busy time is at most the wall time.
    const busyMs = Math.min(c.ms, c.cpuMs / peak.threads)
    const { cpuMs: _, ...rest } = c
    const busyGflops = flops / (Math.max(busyMs, 1e-6) / 1000) / 1e9
    const full: GemmCase = { ...rest, gflops, busyMs, busyGflops, shareOfPeak: peakGFlops > 0 ? busyGflops / peakGFlops : 0 }
    // More CPU than the threads could use in the wall time: another thread of this process ran meanwhile (a
    // library's spinning workers, V8's compiler at start-up), so this case is disturbed, whatever the load.
    if (c.cpuMs > c.ms * peak.threads * 1.05) full.note = (full.note ? `${full.note}; ` : '') + `disturbed: process CPU ${c.cpuMs.toFixed(2)} ms > ${peak.threads} threads x ${c.ms.toFixed(2)} ms wall`
    cases.push(full)
    o.log(
      `  ${c.shape.padEnd(26)} ${c.pass.padEnd(10)} ${c.dtype.padEnd(4)} ${c.impl.padEnd(12)} ${c.ms.toFixed(2).padStart(9)} ms ` +
        `${gflops.toFixed(1).padStart(7)} GFLOP/s wall, ${busyGflops.toFixed(1).padStart(7)} busy, ${(full.shareOfPeak * 100).toFixed(0).padStart(4)}% of peak${full.note ? `  ${full.note}` : ''}`,
    )
    return full
  }
  const bf16Peak = peak.amxGFlops > 0 ? peak.amxGFlops : peak.bf16DotGFlops > 0 ? peak.bf16DotGFlops : peak.f32GFlops
  for (const { shape, pass } of plan) {
    const [gm, gn, gk] = dims(shape, pass)
    // Big cases get fewer repetitions: each already runs for a second or more.
    const reps = 2 * gm * gn * gk > 1e11 ? Math.max(1, Math.min(o.reps, 2)) : o.reps
    const xv = randomValues(shape.N * shape.K, 1), wv = randomValues(shape.M * shape.K, 2), dyv = randomValues(shape.N * shape.M, 3)
    // Ours first (f32, then bf16), OpenBLAS last, then a pause: OpenBLAS's worker threads keep spinning on the
    // cores for ~0.1 s after each call (its THREAD_TIMEOUT, 2^28 cycles) before they sleep. Measured right
    // after it, our GEMMs shared the 2 cores with that spinning thread, and the spin counted in this process's
    // CPU time too: the quiet run of 12:13 read bf16 512³ at 243 GFLOP/s, which alone runs at ~900.
    const tensors: Record<'f32' | 'bf16', { x: Tensor; w: Tensor; dy: Tensor }> = {} as never
    for (const dtype of ['f32', 'bf16'] as const) {
      const make = (v: Float32Array, s: number[]) => Tensor.from(dtype === 'bf16' ? float32ToBf16(v) : v, s, { dtype, device: o.device })
      const x = make(xv, [shape.N, shape.K]), w = make(wv, [shape.M, shape.K]), dy = make(dyv, [shape.N, shape.M])
      tensors[dtype] = { x, w, dy }
      const gW = pass === 'gradWeight' ? Tensor.zeros([shape.M, shape.K], { device: o.device }) : undefined
      const { ms, cpuMs } = bestMs(reps, () => {
        if (pass === 'forward') linearSync(x, w).dispose()
        else if (pass === 'gradInput') linearBackwardSync(dy, x, w)!.dispose()
        else linearBackwardSync(dy, x, w, { gradWeight: gW, gradInput: false })
      })
      gW?.dispose()
      add({ shape: shape.name, M: gm, N: gn, K: gk, pass, impl: 'node-grpo', dtype, ms, cpuMs }, dtype === 'bf16' ? bf16Peak : peak.f32GFlops)
      if (dtype === 'bf16') {
        const f32 = cases.find((c) => c.shape === shape.name && c.pass === pass && c.dtype === 'f32' && c.impl === 'node-grpo')
        const ours = cases[cases.length - 1]!
        if (f32) {
          ours.note = (ours.note ? `${ours.note}; ` : '') + `${(ours.busyGflops / f32.busyGflops).toFixed(2)}x our f32 (busy), ${(ours.gflops / f32.gflops).toFixed(2)}x (wall)`
          o.log(`    node-grpo bf16 at ${ours.note}`)
        }
      }
    }
    if (openblas.available && o.device === 'cpu') {
      // The same product on the same memory: forward C = x·Wᵀ, gradInput C = dy·W, gradWeight C = dyᵀ·x.
      const { x, w, dy } = tensors.f32
      const c = Tensor.zeros([gm, gn], { device: 'cpu' })
      const [a, b, transA, transB] =
        pass === 'forward' ? [x, w, false, true] : pass === 'gradInput' ? [dy, w, false, false] : [dy, x, true, false]
      n.openblasSgemm(a.native, b.native, c.native, { transA, transB, reps: 1 }) // warm-up
      const blasTime = n.openblasSgemm(a.native, b.native, c.native, { transA, transB, reps })
      c.dispose()
      const ours = cases.find((k) => k.shape === shape.name && k.pass === pass && k.dtype === 'f32' && k.impl === 'node-grpo')!
      const blas = add({ shape: shape.name, M: gm, N: gn, K: gk, pass, impl: 'openblas', dtype: 'f32', ms: blasTime.seconds * 1000, cpuMs: blasTime.cpuSeconds * 1000, note: `kernel ${openblas.core}` }, peak.f32GFlops)
      ours.note = (ours.note ? `${ours.note}; ` : '') + `${(ours.busyGflops / blas.busyGflops * 100).toFixed(0)}% of OpenBLAS (busy), ${(ours.gflops / blas.gflops * 100).toFixed(0)}% (wall)`
      o.log(`    node-grpo f32 at ${ours.note}`)
      settle(OPENBLAS_SPIN_MS)
    }
    for (const t of Object.values(tensors)) for (const v of Object.values(t)) v.dispose()
  }

  let torch: { available: boolean; reason: string } = { available: false, reason: 'skipped (--no-torch or device cuda)' }
  if (o.torch && o.device === 'cpu') {
    o.log('  PyTorch (oneDNN for bf16) in a python3 subprocess...')
    const run = runTorch(peak.threads, o.reps, plan.flatMap(({ shape, pass }) => (['bf16', 'f32'] as const).map((d) => [shape.name, shape.N, shape.M, shape.K, pass, d] as [string, number, number, number, GemmPass, string])))
    torch = { available: run.available, reason: run.reason }
    o.log(`    ${run.reason}`)
    for (const [name, , , , pass, dtype, ms, cpuMs] of run.results) {
      const shape = shapes.find((s) => s.name === name)!
      const [gm, gn, gk] = dims(shape, pass)
      const c = add({ shape: name, M: gm, N: gn, K: gk, pass, impl: dtype === 'bf16' ? 'onednn-torch' : 'torch', dtype, ms, cpuMs }, dtype === 'bf16' ? bf16Peak : peak.f32GFlops)
      const ours = cases.find((x) => x.shape === name && x.pass === pass && x.dtype === dtype && x.impl === 'node-grpo')
      if (ours) {
        c.note = (c.note ? `${c.note}; ` : '') + `node-grpo is ${(ours.busyGflops / c.busyGflops).toFixed(2)}x this (busy), ${(ours.gflops / c.gflops).toFixed(2)}x (wall)`
        o.log(`    ${c.note}`)
      }
    }
  }
  return { peak, openblas, torch, info, cases }
}

/** The results as a Markdown table (one row per shape and pass; GFLOP/s and the ratios the targets name). */
export function gemmMarkdown(r: GemmBenchResult): string {
  const find = (shape: string, pass: GemmPass, dtype: 'f32' | 'bf16', impl: GemmCase['impl']) =>
    r.cases.find((c) => c.shape === shape && c.pass === pass && c.dtype === dtype && c.impl === impl)
  // GFLOP/s while running (busy); the wall-clock figure in parentheses.
  const g = (c?: GemmCase) => (c ? `${c.busyGflops.toFixed(0)} (${c.gflops.toFixed(0)})${c.note?.includes('disturbed') ? ' †' : ''}` : '—')
  const ratio = (a?: GemmCase, b?: GemmCase) => (a && b ? `${(a.busyGflops / b.busyGflops).toFixed(2)}×` : '—')
  const lines = [
    `Peaks measured in the same run (${r.peak.threads} threads): f32 FMA (${r.peak.fmaIsa}) ${r.peak.f32GFlops.toFixed(0)} GFLOP/s, ` +
      `vdpbf16ps ${r.peak.bf16DotGFlops.toFixed(0)}, AMX ${r.peak.amxGFlops.toFixed(0)}. Kernels: f32 ${r.info.f32}, bf16 ${r.info.bf16}. ` +
      `OpenBLAS: ${r.openblas.available ? r.openblas.core : 'not installed'}. PyTorch: ${r.torch.reason}. ` +
      'GFLOP/s while running (process CPU time / threads), wall clock in parentheses; ratios of the former. ' +
      '†: the process used more CPU than its threads could in the wall time (another thread of the process ran meanwhile): disturbed.',
    '',
    '| shape (M×N×K of the GEMM) | pass | f32 ours | f32 OpenBLAS | ours / OpenBLAS | f32 % of FMA peak | bf16 ours | bf16 / our f32 | bf16 oneDNN (torch) | ours / oneDNN |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  const seen = new Set<string>()
  for (const c of r.cases) {
    const key = `${c.shape}|${c.pass}`
    if (seen.has(key)) continue
    seen.add(key)
    const f32 = find(c.shape, c.pass, 'f32', 'node-grpo'), blas = find(c.shape, c.pass, 'f32', 'openblas')
    const bf = find(c.shape, c.pass, 'bf16', 'node-grpo'), dnn = find(c.shape, c.pass, 'bf16', 'onednn-torch')
    lines.push(
      `| ${c.shape} (${c.M}×${c.N}×${c.K}) | ${c.pass} | ${g(f32)} | ${g(blas)} | ${ratio(f32, blas)} | ${f32 ? (f32.shareOfPeak * 100).toFixed(0) + '%' : '—'} | ` +
        `${g(bf)} | ${ratio(bf, f32)} | ${g(dnn)} | ${ratio(bf, dnn)} |`,
    )
  }
  return lines.join('\n') + '\n'
}

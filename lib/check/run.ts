/**
 * The GPU check (scripts/gpu-check.sh → dist/check/main.js): one run that proves the CUDA backend right and
 * measures it against the device's limits and PyTorch, inside a time budget it enforces.
 *
 * Steps, in order of what a short run must not miss:
 *   1. correctness: every case of cases.ts on cuda against the cpu backend (correctness.ts)
 *   2. timing: the device bandwidth probe, then our ops timed with CUDA events (perf.ts)
 *   3. distributed: the data-parallel layer on cuda tensors as a world of one over NCCL (found in PyTorch's
 *      nvidia-nccl wheel, or libnccl.so.2 on the loader's path), and the Trainer's data-parallel step on the
 *      device (distributed.ts), in a child process; skipped with the loader's reason where NCCL is absent
 *   4. torch: the PyTorch baselines on the same shapes (scripts/gpu_check_torch.py), joined into the table
 *   5. sanitizer: compute-sanitizer memcheck and racecheck over the small cases, if it runs on the machine
 * Each step gets a share of the time left; a step or case that does not fit is listed as skipped with its
 * reason. results.json and summary.txt are rewritten after every step, so a run cut short keeps what it did.
 *
 * The dry run (--dry-run) is the same code on the SIMT executor at small sizes: the backend under test is
 * simt instead of cuda, and the CUDA-only steps (the sanitizer) are listed as skipped.
 */
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import type { NativeBackendInfo } from '../../types/binding.js'
import { type BandwidthProbe, probeDeviceBandwidth, withHostBackend } from '../bench/device.js'
import { gb } from '../bench/run.js'
import { native } from '../native.js'
import { type CaseResult, type CorrectnessReport, type Target, newReport, orderedCases, tally } from './correctness.js'
import { type PerfRow, type TorchResult, joinTorch, timeOurs, torchSpecs } from './perf.js'
import { CASES, type CheckCase } from './cases.js'
import type { DistributedReport } from './distributed.js'

export type StepName = 'correctness' | 'timing' | 'distributed' | 'torch' | 'sanitizer'
export const STEPS: readonly StepName[] = ['correctness', 'timing', 'distributed', 'torch', 'sanitizer']

export interface GpuCheckOptions {
  mode: 'device' | 'dry-run'
  out: string
  budgetSeconds: number
  seed: number
  /** the Python that has PyTorch (the device image's python3) */
  python: string
  torchScript: string
  /** compute-sanitizer, if installed */
  sanitizer?: string
  /** argv that starts this entry again (the sanitizer runs the small cases in a child under it) */
  nodeCommand: string[]
  steps?: readonly StepName[]
  /** what the caller knows about the build (the pack's manifest) */
  build?: Record<string, unknown>
  /**
   * Also check and time the linear ops with GRPO_CUDA_GEMM=own (our tensor-core GEMM) in a child process, when
   * cuBLASLt is what they use by default. Default: on a device where cuBLASLt is loaded.
   */
  ownGemmPass?: boolean
  log: (line: string) => void
}

export interface StepRecord {
  name: StepName
  status: 'passed' | 'failed' | 'skipped' | 'partial' | 'error' | 'done'
  seconds: number
  budgetSeconds: number
  reason?: string
  /** skipped by design in this mode (the sanitizer in the dry run; PyTorch where it is not installed, dry run) */
  expected?: boolean
}

export interface SanitizerRun {
  tool: 'memcheck' | 'racecheck'
  status: 'clean' | 'errors' | 'did not run' | 'timed out' | 'failed'
  errors?: number
  seconds: number
  summary: string
  log?: string
}

export interface GpuCheckResults {
  schema: 1
  mode: 'device' | 'dry-run'
  startedAt: string
  finishedAt?: string
  budgetSeconds: number
  elapsedSeconds: number
  seed: number
  environment: Record<string, unknown>
  steps: StepRecord[]
  correctness?: CorrectnessReport
  probe?: BandwidthProbe
  perf?: PerfRow[]
  torch?: { error?: string; torch?: string; cuda?: string; deviceName?: string; results: TorchResult[] }
  distributed?: DistributedReport
  sanitizer?: SanitizerRun[]
  skipped: string[]
  verdict: 'pass' | 'fail' | 'incomplete'
}

/** Shares of the time left that each step gets when it starts (the last takes what is left). */
const WEIGHTS: Record<StepName, number> = { correctness: 35, timing: 20, distributed: 7, torch: 25, sanitizer: 20 }
/**
 * The dry run's shares: the sanitizer is skipped there, and the correctness cases are what it exists to run (on
 * the SIMT executor they take most of the time, many times more on a loaded machine).
 */
const DRY_WEIGHTS: Record<StepName, number> = { correctness: 70, timing: 15, distributed: 7, torch: 15, sanitizer: 0 }
/** Kept back at every step for writing the results and the summary. */
const RESERVE_SECONDS = 8

function commandExists(cmd: string): boolean {
  const r = spawnSync('sh', ['-c', `command -v "$1"`, 'sh', cmd], { encoding: 'utf8' })
  return r.status === 0
}

function run(cmd: string, args: string[], timeoutMs = 10_000): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs })
  return r.status === 0 ? r.stdout.trim() : undefined
}

function environment(o: GpuCheckOptions, info: NativeBackendInfo): Record<string, unknown> {
  const smi = commandExists('nvidia-smi')
    ? run('nvidia-smi', ['--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,power.limit', '--format=csv'])
    : undefined
  return {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: `${os.cpus()[0]?.model ?? '?'} x ${os.cpus().length}`,
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadAverage: os.loadavg().map((x) => +x.toFixed(2)),
    backend: info,
    nvidiaSmi: smi ?? 'not available',
    sanitizer: o.sanitizer ?? 'not found',
    build: o.build,
  }
}

/** Runs a child with a time limit; stdout and stderr go to `logFile` (and their tail is returned). */
interface ChildExit {
  code: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
  tail: string
}

/**
 * Runs a child with a time limit; stdout and stderr go to `logFile` (and their tail is returned); with `echo`,
 * each line is also passed on as it comes (a child's progress shows in the run's log while it runs).
 */
function runChild(cmd: string, args: string[], timeoutMs: number, logFile: string, env?: NodeJS.ProcessEnv, echo?: (line: string) => void): Promise<ChildExit> {
  return new Promise((resolve) => {
    const fd = openSync(logFile, 'w')
    let tail = ''
    let partial = ''
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env })
    const take = (chunk: Buffer) => {
      writeSync(fd, chunk)
      const text = chunk.toString('utf8')
      tail = (tail + text).slice(-20000)
      if (echo) {
        const lines = (partial + text).split('\n')
        partial = lines.pop()!
        for (const line of lines) echo(line)
      }
    }
    child.stdout.on('data', take)
    child.stderr.on('data', take)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGTERM')
      setTimeout(() => child.kill('SIGKILL'), 5000).unref()
    }, Math.max(1000, timeoutMs))
    child.on('error', (e) => {
      take(Buffer.from(`\n${e.message}\n`))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      closeSync(fd)
      if (echo && partial) echo(partial)
      resolve({ code, signal, timedOut, tail })
    })
  })
}

let sanitizerNames: Set<string> | undefined

/**
 * The cases the sanitizer runs: the first small case of each op in each dtype its name gives (every kernel
 * instantiation once: memcheck and racecheck slow each launch down by one to two orders of magnitude).
 */
export function sanitizerCases(c: CheckCase): boolean {
  if (!sanitizerNames) {
    sanitizerNames = new Set()
    const seen = new Set<string>()
    for (const x of CASES) {
      const key = `${x.op} ${/\b(f32|bf16|f16|i32|u8)\b/.exec(x.name)?.[1] ?? ''}`
      if (x.edge || seen.has(key)) continue
      seen.add(key)
      sanitizerNames.add(x.name)
    }
  }
  return sanitizerNames.has(c.name)
}

async function sanitize(o: GpuCheckOptions, tool: 'memcheck' | 'racecheck', seconds: number): Promise<SanitizerRun> {
  const t0 = performance.now()
  const logFile = join(o.out, `sanitizer-${tool}.txt`)
  const json = join(os.tmpdir(), `grpo-sanitizer-${tool}-${process.pid}.json`)
  rmSync(json, { force: true })
  const args = ['--tool', tool, '--error-exitcode', '86', '--print-limit', '20', '--target-processes', 'all']
  args.push(...o.nodeCommand, '--child', 'correctness', '--sanitizer-cases', '--target', 'cuda', '--seed', String(o.seed), '--json', json)
  const r = await runChild(o.sanitizer!, args, seconds * 1000, logFile)
  const elapsed = (performance.now() - t0) / 1000
  const summary = r.tail.match(/ERROR SUMMARY: (\d+) errors?/)
  const base = { tool, seconds: elapsed, log: logFile }
  if (r.timedOut) return { ...base, status: 'timed out', errors: summary ? Number(summary[1]) : undefined, summary: `stopped after ${seconds.toFixed(0)} s (its share of the budget)` }
  if (!summary) {
    const why = r.tail.split('\n').filter((l) => /error|not supported|fail/i.test(l)).slice(-3).join(' | ')
    return { ...base, status: 'did not run', summary: why || `exit code ${r.code}, no error summary` }
  }
  const errors = Number(summary[1])
  let cases = ''
  if (existsSync(json)) {
    const rep = JSON.parse(readFileSync(json, 'utf8')) as CorrectnessReport
    cases = `; the ${rep.cases.length} cases under it: ${rep.passed} passed, ${rep.failed} failed, ${rep.errors} errors`
  }
  return { ...base, status: errors === 0 ? 'clean' : 'errors', errors, summary: `${summary[0]}${cases}` }
}

const LINEAR_OPS = ['modelOps.linear', 'modelOps.linearBackward']
const OWN = ' [GRPO_CUDA_GEMM=own]'

/**
 * The linear ops again in a child process with GRPO_CUDA_GEMM=own (the variable is read once per process), so
 * that our tensor-core GEMM is checked and timed where cuBLASLt is the default: the child's cases and rows join
 * the report with the suffix OWN.
 */
export async function ownGemmChild(o: GpuCheckOptions, kind: 'correctness' | 'perf', target: Target, seconds: number): Promise<{ cases?: CaseResult[]; rows?: PerfRow[]; error?: string }> {
  const json = join(os.tmpdir(), `grpo-own-gemm-${kind}-${process.pid}.json`)
  rmSync(json, { force: true }) // an earlier child's results must not pass for this one's
  const args = [...o.nodeCommand.slice(1), '--child', kind, '--target', target, '--ops', LINEAR_OPS.join(','), '--seed', String(o.seed), '--json', json]
  const r = await runChild(o.nodeCommand[0]!, args, seconds * 1000, join(os.tmpdir(), `grpo-own-gemm-${kind}-${process.pid}.log`), { ...process.env, GRPO_CUDA_GEMM: 'own' })
  if (!existsSync(json)) return { error: `no results (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.tail.split('\n').filter(Boolean).slice(-3).join(' | ')}` }
  const data = JSON.parse(readFileSync(json, 'utf8'))
  if (kind === 'correctness') return { cases: (data as CorrectnessReport).cases.map((c) => ({ ...c, name: c.name + OWN })) }
  return { rows: (data as PerfRow[]).map((row) => ({ ...row, id: row.id + OWN })) }
}

/**
 * The NCCL library for the distributed step: GRPO_NCCL_LIBRARY if set; else the libnccl.so.2 that PyTorch's
 * nvidia-nccl wheel put in site-packages (nvidia/nccl/lib, or nvidia/<cuda>/lib in the newer wheels' layout),
 * found with the image's Python; else undefined (the addon then asks the loader for libnccl.so.2).
 */
export function findNccl(python: string): { path?: string; how: string } {
  const forced = process.env.GRPO_NCCL_LIBRARY
  if (forced) return { path: forced, how: 'GRPO_NCCL_LIBRARY' }
  const script = [
    'import glob, os, sys',
    'found = []',
    'for p in sys.path:',
    '    for pattern in ("nvidia/nccl/lib/libnccl.so.2", "nvidia/*/lib/libnccl.so.2", "nvidia/nccl/lib/libnccl.so*"):',
    '        found += sorted(glob.glob(os.path.join(p or ".", pattern)))',
    'print(found[0] if found else "")',
  ].join('\n')
  const r = spawnSync(python, ['-c', script], { encoding: 'utf8', timeout: 30_000 })
  const path = r.status === 0 ? r.stdout.trim() : ''
  if (path) return { path, how: `found by ${python} in site-packages` }
  return { how: r.status === 0 ? `no libnccl.so.2 in ${python}'s site-packages: the loader's own search` : `${python} did not run (${r.error?.message ?? `exit ${r.status}`}): the loader's own search` }
}

/** The distributed step in a child process (NCCL is loaded once per process; a fault in it ends only the child). */
export async function distributedChild(o: GpuCheckOptions, target: Target, seconds: number): Promise<DistributedReport & { ncclSearch?: string; childError?: string }> {
  const json = join(os.tmpdir(), `grpo-distributed-${process.pid}.json`)
  rmSync(json, { force: true })
  const env: NodeJS.ProcessEnv = { ...process.env }
  let ncclSearch: string | undefined
  if (target === 'cuda') {
    const nccl = findNccl(o.python)
    ncclSearch = nccl.path ? `${nccl.path} (${nccl.how})` : nccl.how
    if (nccl.path) env.GRPO_NCCL_LIBRARY = nccl.path
    o.log(`  NCCL: ${ncclSearch}`)
  }
  const args = [...o.nodeCommand.slice(1), '--child', 'distributed', '--target', target, '--seed', String(o.seed), '--budget', Math.max(1, seconds - 5).toFixed(1), '--json', json]
  const r = await runChild(o.nodeCommand[0]!, args, seconds * 1000, join(o.out, 'distributed-log.txt'), env, (line) => {
    if (line.startsWith('  ')) o.log(line)
  })
  const got = existsSync(json) ? (JSON.parse(readFileSync(json, 'utf8')) as DistributedReport) : undefined
  rmSync(json, { force: true })
  const report = got ?? { target, device: target === 'cuda' ? 'cuda' : 'cpu', seed: o.seed, cases: [], passed: 0, failed: 0, errors: 0, skipped: 0 }
  let childError: string | undefined
  if (r.code !== EXIT.ok && r.code !== EXIT.failed) {
    const how = r.timedOut ? `hung (stopped after its ${seconds.toFixed(0)} s)` : r.signal ? `was killed by ${r.signal}` : `exited with code ${r.code}`
    childError = `the distributed check process ${how}: ${r.tail.split('\n').filter(Boolean).slice(-4).join(' | ').slice(-600)}`
    report.cases.push({ name: 'distributed check process', status: 'error', seconds: 0, error: childError })
    report.errors++
  }
  return { ...report, ncclSearch, childError }
}

/** Exit codes of the check and of its child processes. */
export const EXIT = { ok: 0, failed: 1, usage: 2, noDevice: 3, deviceLost: 4 } as const

/** At most this many correctness processes per run: each one that dies costs a start and a case. */
const MAX_CORRECTNESS_PROCESSES = 12

/**
 * Step 1 in child processes (`--child correctness --from K`), so that a kernel that kills its process (a
 * segmentation fault, an abort) or its CUDA context (an illegal address: every later call in that process fails)
 * costs one case, not the rest of the run: the case that was running is recorded as an error with how the process
 * ended, and a new process takes over at the next case. The child writes its report after every case.
 */
export async function correctnessInChildren(
  o: GpuCheckOptions,
  target: Target,
  deadline: number,
  onProgress: (r: CorrectnessReport) => void,
  ops?: readonly string[],
): Promise<CorrectnessReport> {
  const filter = ops ? (c: CheckCase) => ops.includes(c.op) : undefined
  const ordered = orderedCases({ filter })
  const report = newReport(ordered, { target, seed: o.seed, filter })
  let from = 0
  for (let n = 1; from < ordered.length; n++) {
    const left = (deadline - Date.now()) / 1000
    if (left < 3 || n > MAX_CORRECTNESS_PROCESSES) {
      const reason = left < 3 ? 'time budget' : `${MAX_CORRECTNESS_PROCESSES} check processes ended early`
      for (const c of ordered.slice(from)) report.cases.push({ op: c.op, name: c.name, edge: c.edge ?? false, status: 'skipped', seconds: 0, reason })
      break
    }
    const json = join(os.tmpdir(), `grpo-correctness-${process.pid}-${n}.json`)
    rmSync(json, { force: true })
    const args = [...o.nodeCommand.slice(1), '--child', 'correctness', '--target', target, '--seed', String(o.seed), '--from', String(from), '--budget', left.toFixed(1), '--json', json]
    if (ops) args.push('--ops', ops.join(','))
    // The child keeps the budget itself; the limit here only ends a case that hangs.
    const r = await runChild(o.nodeCommand[0]!, args, (left + 15) * 1000, join(o.out, n === 1 ? 'correctness-log.txt' : `correctness-log-${n}.txt`), undefined, (line) => {
      if (line.startsWith('  ')) o.log(line)
    })
    const got = existsSync(json) ? (JSON.parse(readFileSync(json, 'utf8')) as CorrectnessReport) : undefined
    rmSync(json, { force: true })
    report.cases.push(...(got?.cases ?? []))
    from += got?.cases.length ?? 0
    tally(report)
    onProgress(report)
    if (r.code === EXIT.ok || r.code === EXIT.failed) {
      if (from < ordered.length) {
        // A child that ended normally has run (or skipped) every case after `from`: anything else is a bug here.
        report.cases.push({ op: 'gpu-check', name: `cases from ${from}`, edge: false, status: 'error', seconds: 0, error: `the correctness process ended (exit ${r.code}) with ${ordered.length - from} cases not reported` })
      }
      break
    }
    const last = report.cases[report.cases.length - 1]
    if (r.code === EXIT.deviceLost && last) {
      last.error = `${last.error ?? ''} (after it the device was unusable in that process; a new process took the remaining cases)`
      o.log(`  the device is unusable after ${last.name}: a new process takes over at case ${from}`)
      continue
    }
    const c = ordered[from]
    if (!c) break
    const how = r.timedOut ? 'hung (stopped at the step\'s time limit)' : r.signal ? `was killed by ${r.signal}` : `exited with code ${r.code}`
    const tail = r.tail.split('\n').filter(Boolean).slice(-4).join(' | ').slice(-600)
    report.cases.push({ op: c.op, name: c.name, edge: c.edge ?? false, status: 'error', seconds: 0, error: `the check process ${how} while running this case: ${tail}` })
    o.log(`  ERR  ${c.name}: the check process ${how}${r.timedOut ? '' : `; a new process takes over at case ${from + 1}`}`)
    from++
    tally(report)
    onProgress(report)
  }
  tally(report)
  for (const op of report.unchecked) o.log(`  UNCHECKED: ${op} is exported but no case checks it (add one to lib/check/cases.ts)`)
  if (report.absent.length) o.log(`  no CUDA kernel yet (planned): ${report.absent.join(', ')}`)
  o.log(`correctness: ${report.passed} passed, ${report.failed} failed, ${report.errors} errors, ${report.skipped} skipped`)
  return report
}

/** Ops whose case ended its process or its device: their timing would do the same to the timing step. */
export function fatalOps(c: CorrectnessReport | undefined): Set<string> {
  return new Set((c?.cases ?? []).filter((x) => x.status === 'error' && /the check process|the device was unusable/.test(x.error ?? '')).map((x) => x.op))
}

/** Our GEMM against the default one (cuBLASLt) at the same size: the transformer ops' target is ≥ 50%. */
export function judgeOwnGemm(rows: PerfRow[]): void {
  for (const own of rows.filter((r) => r.id.endsWith(OWN))) {
    const base = rows.find((r) => r.id === own.id.slice(0, -OWN.length))
    const a = base?.ours?.timing.medianMs, b = own.ours?.timing.medianMs
    const value = a && b ? a / b : undefined
    own.targets.push({ what: `${own.id.slice(0, -OWN.length)}: our GEMM's speed as a share of cuBLASLt's`, value, min: 0.5, met: value !== undefined && value >= 0.5 })
  }
}

function probeOf(probe: BandwidthProbe): string {
  return `copy ${gb(probe.copyGBps)} GB/s (read+write), read ${gb(probe.readGBps)} GB/s, cudaMemcpy D2D ${gb(probe.memcpyGBps)} GB/s over ${(probe.bytes / 2 ** 20).toFixed(0)} MiB${probe.verified ? '' : ' (COPY NOT VERIFIED)'}`
}

const fmt = (ms: number | undefined) => (ms === undefined ? '—' : ms < 10 ? ms.toFixed(3) : ms.toFixed(1))

/** The short text table printed last and written to summary.txt. */
export function summaryText(r: GpuCheckResults): string {
  const lines: string[] = []
  const gpu = (r.environment.backend as NativeBackendInfo | undefined)?.cuda?.devices?.[0]
  lines.push(`node-grpo GPU check (${r.mode}) ${r.startedAt}  ${gpu ? `${gpu.name} (sm ${gpu.computeCapability}, ${gpu.multiprocessors} SMs)` : 'SIMT executor'}`)
  lines.push(`verdict: ${r.verdict.toUpperCase()}   elapsed ${r.elapsedSeconds.toFixed(0)} s of ${r.budgetSeconds} s, seed ${r.seed}`)
  for (const s of r.steps) lines.push(`  step ${s.name.padEnd(12)} ${s.status.padEnd(8)} ${s.seconds.toFixed(1).padStart(6)} s${s.reason ? `  (${s.reason})` : ''}`)
  const c = r.correctness
  if (c) {
    lines.push(`correctness (${c.target} vs cpu): ${c.passed} passed, ${c.failed} failed, ${c.errors} errors, ${c.skipped} skipped`)
    for (const x of c.cases.filter((x) => x.status === 'failed' || x.status === 'error').slice(0, 12)) {
      lines.push(`  ${x.status.toUpperCase()} ${x.name} ${x.shape ?? ''}: ${x.error ?? x.outputs!.map((o) => `${o.output} ${o.metric} ${o.value.toExponential(2)} > ${o.limit.toExponential(2)}`).join('; ')}`)
    }
    if (c.unchecked.length) lines.push(`  unchecked ops (no case): ${c.unchecked.join(', ')}`)
    if (c.absent.length) lines.push(`  planned ops without a CUDA kernel yet: ${c.absent.join(', ')}`)
  }
  const d = r.distributed
  if (d) {
    const w = d.world as { cudaTransport?: string; nccl?: { available: boolean; version: number; reason: string } } | undefined
    const how = d.target === 'cuda' ? `cuda tensors, transport ${w?.cudaTransport ?? '?'}, NCCL ${w?.nccl?.available ? w.nccl.version : `absent (${w?.nccl?.reason ?? '?'})`}` : 'host tensors on the SIMT executor'
    lines.push(`distributed (a world of one, ${how}): ${d.passed} passed, ${d.failed} failed, ${d.errors} errors, ${d.skipped} skipped`)
    for (const x of d.cases.filter((x) => x.status === 'failed' || x.status === 'error').slice(0, 8)) lines.push(`  ${x.status.toUpperCase()} ${x.name}: ${x.error}`)
  }
  if (r.probe) lines.push(`bandwidth probe: ${probeOf(r.probe)}`)
  if (r.perf) {
    lines.push('timing (ours: median kernel time from CUDA events; torch: median, CUDA events):')
    lines.push(`  ${'case'.padEnd(22)} ${'ours ms'.padStart(9)} ${'GB/s|TF/s'.padStart(9)} ${'% bw'.padStart(5)}  baselines (ms, ours is N x faster)`)
    for (const p of r.perf) {
      const o = p.ours
      const base = p.torch.map((t) => `${t.id.split(' / ')[1] ?? t.id}: ${t.medianMs !== undefined ? `${fmt(t.medianMs)}${t.speedup ? ` (${t.speedup.toFixed(1)}x)` : ''}${t.rate ? ` ${t.rate}` : ''}` : t.note}`)
      if (o?.unfused) base.unshift(`our unfused ops: ${fmt(o.unfused.medianMs)} (${(o.unfused.medianMs / o.timing.medianMs).toFixed(1)}x)`)
      const status = p.status === 'timed' ? '' : ` [${p.status}${p.error ? `: ${p.error}` : ''}]`
      lines.push(
        `  ${p.id.padEnd(22)} ${fmt(o?.timing.medianMs).padStart(9)} ${(o?.gbps !== undefined ? gb(o.gbps) : o?.tflops !== undefined ? `${o.tflops.toPrecision(3)} TF` : '—').padStart(9)} ${(o?.shareOfBandwidth !== undefined ? `${(o.shareOfBandwidth * 100).toFixed(0)}%` : '—').padStart(5)}${status}  ${base.join('; ')}`,
      )
    }
    const targets = r.perf.flatMap((p) => p.targets)
    for (const t of targets) {
      const v = t.value === undefined ? 'not measured' : t.what.includes('share') ? `${(t.value * 100).toFixed(1)}%` : `${t.value.toFixed(2)}x`
      const min = t.what.includes('share') ? `${(t.min * 100).toFixed(0)}%` : `${t.min}x`
      lines.push(`  target ${t.met ? 'MET   ' : 'MISSED'} ${t.what}: ${v} (target >= ${min})`)
    }
  }
  if (r.torch?.error) lines.push(`torch: ${r.torch.error}`)
  for (const s of r.sanitizer ?? []) lines.push(`sanitizer ${s.tool}: ${s.status}${s.errors !== undefined ? ` (${s.errors} errors)` : ''}: ${s.summary}`)
  for (const s of r.skipped) lines.push(`skipped: ${s}`)
  return lines.join('\n') + '\n'
}

export async function runGpuCheck(o: GpuCheckOptions): Promise<GpuCheckResults> {
  const start = Date.now()
  const deadline = start + o.budgetSeconds * 1000
  mkdirSync(o.out, { recursive: true })
  const info = native().backendInfo()
  const target: Target = o.mode === 'device' ? 'cuda' : 'simt'
  const dry = o.mode === 'dry-run'
  const steps = o.steps ?? STEPS
  const ownGemm = o.ownGemmPass ?? (!dry && (info.cuda as { gemm?: { library?: string } }).gemm?.library === 'cublasLt')
  const results: GpuCheckResults = {
    schema: 1,
    mode: o.mode,
    startedAt: new Date(start).toISOString(),
    budgetSeconds: o.budgetSeconds,
    elapsedSeconds: 0,
    seed: o.seed,
    environment: environment(o, info),
    steps: [],
    skipped: [],
    verdict: 'incomplete',
  }
  const save = () => {
    results.elapsedSeconds = (Date.now() - start) / 1000
    writeFileSync(join(o.out, 'results.json'), JSON.stringify(results, null, 1) + '\n')
    writeFileSync(join(o.out, 'summary.txt'), summaryText(results))
  }
  o.log(`GPU check (${o.mode}): budget ${o.budgetSeconds} s, seed ${o.seed}, backend under test ${target}, results in ${o.out}`)
  const gpu = info.cuda.devices[0]
  o.log(gpu ? `  ${gpu.name}, compute capability ${gpu.computeCapability}, ${gpu.multiprocessors} SMs, driver ${info.cuda.driverVersion}, runtime ${info.cuda.runtimeVersion}` : `  no GPU: ${info.cuda.reason}`)
  save()

  const pending = STEPS.filter((s) => steps.includes(s))
  for (const s of STEPS.filter((s) => !steps.includes(s))) {
    results.steps.push({ name: s, status: 'skipped', seconds: 0, budgetSeconds: 0, reason: 'not asked for (--steps)' })
    results.skipped.push(`step ${s}: not asked for`)
  }
  const torchAvailable = () => {
    const r = spawnSync(o.python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 })
    return r.status === 0 ? undefined : (r.error?.message ?? r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)
  }

  for (let i = 0; i < pending.length; i++) {
    const name = pending[i]!
    const left = (deadline - Date.now()) / 1000 - RESERVE_SECONDS
    const w = dry ? DRY_WEIGHTS : WEIGHTS
    const weights = pending.slice(i).reduce((a, s) => a + w[s], 0)
    const share = i === pending.length - 1 ? left : weights > 0 ? (left * w[name]) / weights : 0
    const stepDeadline = Date.now() + share * 1000
    const t0 = Date.now()
    const record: StepRecord = { name, status: 'done', seconds: 0, budgetSeconds: +share.toFixed(1) }
    results.steps.push(record)
    const skip = (reason: string, expected = false) => {
      record.status = 'skipped'
      record.reason = reason
      record.expected = expected
      results.skipped.push(`step ${name}: ${reason}`)
    }
    o.log(`\n== ${name} (up to ${share.toFixed(0)} s)`)
    try {
      if (share < 5 && !(dry && name === 'sanitizer')) {
        skip(`time budget (${Math.max(0, share).toFixed(0)} s left)`)
      } else if (name === 'correctness') {
        o.log(`correctness: ${orderedCases({}).length} cases, ${target} against the cpu backend, seed ${o.seed} (replay: --seed ${o.seed}), in child processes`)
        results.correctness = await correctnessInChildren(o, target, stepDeadline, (report) => {
          results.correctness = report
          save()
        })
        const c = results.correctness
        if (ownGemm) {
          const left = (stepDeadline - Date.now()) / 1000
          o.log(`  the linear ops again with GRPO_CUDA_GEMM=own (our GEMM; cuBLASLt is the default here)`)
          const child = left > 10 ? await ownGemmChild(o, 'correctness', target, left) : { error: 'time budget' }
          if (child.cases) c.cases.push(...child.cases)
          else c.cases.push({ op: 'modelOps.linear', name: `linear ops${OWN}`, edge: false, status: child.error === 'time budget' ? 'skipped' : 'error', seconds: 0, error: child.error, reason: child.error })
          for (const x of child.cases ?? []) o.log(`  ${x.status} ${x.name}${x.error ? `: ${x.error}` : ''}`)
          tally(c)
        }
        record.status = c.failed || c.errors ? 'failed' : c.skipped ? 'partial' : 'passed'
        if (c.skipped) {
          record.reason = `${c.skipped} cases skipped`
          for (const x of c.cases.filter((x) => x.status === 'skipped')) results.skipped.push(`case ${x.name}: ${x.reason}`)
        }
      } else if (name === 'timing') {
        const device = dry ? 'cpu' : 'cuda'
        const timing = async () => {
          results.probe = await probeDeviceBandwidth(device, dry ? { bytes: 1 << 20, reps: 3 } : { bytes: 2 ** 30, reps: 20 })
          o.log(`  bandwidth probe (${results.probe.backend}): ${probeOf(results.probe)}`)
          const fatal = fatalOps(results.correctness)
          results.perf = await timeOurs({ device, dry, probe: results.probe, reps: dry ? 3 : 20, warmup: dry ? 1 : 3, seed: o.seed, log: (l) => o.log(`  ${l}`) }, stepDeadline, undefined, fatal)
        }
        await (dry ? withHostBackend('simt', timing) : timing())
        if (ownGemm) {
          const left = (stepDeadline - Date.now()) / 1000
          o.log(`  modelOps.linear again with GRPO_CUDA_GEMM=own (our GEMM against cuBLASLt)`)
          const child = left > 10 ? await ownGemmChild(o, 'perf', target, left) : { error: 'time budget' }
          if (child.rows) results.perf!.push(...child.rows)
          else results.perf!.push({ id: `linear${OWN}`, op: 'modelOps.linear', status: child.error === 'time budget' ? 'skipped' : 'error', error: child.error, torch: [], targets: [] })
          judgeOwnGemm(results.perf!)
        }
        const bad = results.perf!.filter((p) => p.status === 'error' || p.status === 'skipped')
        record.status = bad.some((p) => p.status === 'error') ? 'failed' : bad.length ? 'partial' : 'done'
        for (const p of bad) results.skipped.push(`timing ${p.id}: ${p.error}`)
      } else if (name === 'distributed') {
        const d = await distributedChild(o, target, share)
        results.distributed = d
        const skippedAll = d.cases.length > 0 && d.cases.slice(1).every((x) => x.status === 'skipped')
        if (d.failed || d.errors) record.status = 'failed'
        else if (skippedAll) skip(d.cases[1]!.reason ?? 'skipped')
        else record.status = d.skipped ? 'partial' : 'passed'
        if (d.skipped && !skippedAll) record.reason = `${d.skipped} cases skipped`
        for (const x of d.cases.filter((x) => x.status === 'skipped')) if (!skippedAll) results.skipped.push(`distributed ${x.name}: ${x.reason}`)
        o.log(`distributed: ${d.passed} passed, ${d.failed} failed, ${d.errors} errors, ${d.skipped} skipped`)
      } else if (name === 'torch') {
        const missing = torchAvailable()
        if (missing) {
          skip(`PyTorch not importable by ${o.python}: ${missing}`, dry)
          results.torch = { error: `not run: ${missing}`, results: [] }
        } else {
          const spec = join(os.tmpdir(), `grpo-torch-spec-${process.pid}.json`)
          const outFile = join(os.tmpdir(), `grpo-torch-out-${process.pid}.json`)
          rmSync(outFile, { force: true })
          const pythonBudget = Math.max(5, share - 10)
          writeFileSync(spec, JSON.stringify({ device: dry ? 'cpu' : 'cuda', budgetSeconds: pythonBudget, warmup: dry ? 1 : 3, reps: dry ? 3 : 20, cases: torchSpecs(dry) }))
          const r = await runChild(o.python, [o.torchScript, spec, outFile], share * 1000, join(o.out, 'torch-log.txt'), { ...process.env, PYTHONUNBUFFERED: '1' })
          for (const line of r.tail.split('\n').filter(Boolean).slice(-12)) o.log(`  ${line}`)
          const got = existsSync(outFile) ? JSON.parse(readFileSync(outFile, 'utf8')) : { error: `no results (exit ${r.code}${r.timedOut ? ', timed out' : ''})`, results: [] }
          results.torch = got
          if (results.perf) joinTorch(results.perf, got.results ?? [], dry)
          const notOk = (got.results as TorchResult[]).filter((x) => !x.ok)
          for (const x of notOk) results.skipped.push(`torch ${x.id}: ${x.skipped ?? x.error}`)
          record.status = got.error ? 'failed' : r.timedOut ? 'partial' : notOk.some((x) => x.error) ? 'failed' : notOk.length ? 'partial' : 'done'
          if (got.error) record.reason = got.error
          else if (notOk.length) record.reason = `${notOk.length} baselines not run`
          // The dry run exercises the script on whatever PyTorch this machine has: rows it lacks (torch.compile
          // or SDPA on PyTorch 1) are expected there, not on the device.
          if (dry && record.status === 'partial') record.expected = true
        }
      } else if (name === 'sanitizer') {
        if (dry) skip('CUDA-only (compute-sanitizer needs a GPU)', true)
        else if (!o.sanitizer) skip('compute-sanitizer not found on this machine')
        else {
          results.sanitizer = []
          for (const tool of ['memcheck', 'racecheck'] as const) {
            const left = (stepDeadline - Date.now()) / 1000
            if (left < 10) {
              results.sanitizer.push({ tool, status: 'did not run', seconds: 0, summary: 'time budget' })
              results.skipped.push(`sanitizer ${tool}: time budget`)
              continue
            }
            const s = await sanitize(o, tool, tool === 'memcheck' ? left / 2 : left)
            results.sanitizer.push(s)
            o.log(`  ${tool}: ${s.status}: ${s.summary}`)
            if (s.status === 'did not run' || s.status === 'timed out') results.skipped.push(`sanitizer ${tool}: ${s.status}: ${s.summary}`)
          }
          const st = results.sanitizer.map((s) => s.status)
          record.status = st.includes('errors') || st.includes('failed') ? 'failed' : st.every((x) => x === 'clean') ? 'passed' : 'partial'
        }
      }
    } catch (e) {
      record.status = 'error'
      record.reason = (e as Error).message
      o.log(`  step ${name} failed: ${(e as Error).stack ?? e}`)
    }
    record.seconds = (Date.now() - t0) / 1000
    save()
  }
  const statuses = results.steps.map((s) => s.status)
  const complete = results.steps.every((s) => s.status === 'passed' || s.status === 'done' || s.expected)
  results.verdict = statuses.some((s) => s === 'failed' || s === 'error') ? 'fail' : complete ? 'pass' : 'incomplete'
  results.finishedAt = new Date().toISOString()
  save()
  o.log('\n' + summaryText(results))
  return results
}

/**
 * Step 1 of the GPU check: every case of cases.ts on the CPU backend and on the backend under test, same
 * inputs, outputs compared within the accuracy table. Cases run one at a time, smallest first, until the
 * step's deadline; what did not fit is listed as skipped, never silently dropped.
 */
import type { Device } from '../dtype.js'
import { withHostBackend } from '../bench/device.js'
import { type OutputCheck, compareOutput } from './compare.js'
import { CASES, type CheckCase, type Outputs, PLANNED_OPS, exportedOps, opExists } from './cases.js'
import { rngFor } from './inputs.js'

/** Where the backend under test runs: cuda tensors on a GPU, or cpu tensors on the SIMT executor (dry run). */
export type Target = 'cuda' | 'simt'

export interface CaseResult {
  op: string
  name: string
  shape?: string
  edge: boolean
  status: 'passed' | 'failed' | 'error' | 'skipped'
  seconds: number
  /** failed: the outputs out of tolerance; passed: every output with its measured difference */
  outputs?: OutputCheck[]
  error?: string
  reason?: string
}

export interface CorrectnessReport {
  target: Target
  seed: number
  cases: CaseResult[]
  passed: number
  failed: number
  errors: number
  skipped: number
  /** ops exported by this build that no case checks */
  unchecked: string[]
  /** ops planned by open issues without a CUDA kernel yet (PLANNED_OPS with no case) */
  absent: string[]
}

export interface CorrectnessOptions {
  target: Target
  seed: number
  /** Stop starting cases after this time (ms since the epoch). */
  deadline: number
  /** Only cases whose name matches (the sanitizer runs use the small ones). */
  filter?: (c: CheckCase) => boolean
  log: (line: string) => void
  cases?: readonly CheckCase[]
  /** Called after each case with the report so far (the runner saves it: a hang loses nothing before it). */
  onProgress?: (report: CorrectnessReport) => void
  /** Start at this index of orderedCases (a child process that takes over after one that died). */
  from?: number
  /** Called before a case runs. */
  onStart?: (c: CheckCase) => void
  /** After a case that errored: whether to stop here (the device is no longer usable by this process). */
  stopIf?: (r: CaseResult) => Promise<boolean>
}

/** Runs `run` on the backend under test. */
function underTest<T>(target: Target, run: (device: Device) => Promise<T>): Promise<T> {
  return target === 'cuda' ? run('cuda') : withHostBackend('simt', () => run('cpu'))
}

function reference<T>(run: (device: Device) => Promise<T>): Promise<T> {
  return withHostBackend('cpu', () => run('cpu'))
}

function message(e: unknown): string {
  const err = e as { code?: string; message?: string }
  return `${err?.code ? `${err.code}: ` : ''}${err?.message ?? String(e)}`
}

/** One case, both sides; never throws. */
export async function runCase(c: CheckCase, o: { target: Target; seed: number }): Promise<CaseResult> {
  const t0 = performance.now()
  const base = { op: c.op, name: c.name, edge: c.edge ?? false }
  const seconds = () => (performance.now() - t0) / 1000
  let shape: string | undefined
  try {
    const prepared = await c.prepare({ rng: rngFor(o.seed, c.name), dry: o.target !== 'cuda', reference })
    shape = prepared.shape
    const want: Outputs = await reference(prepared.run)
    let got: Outputs
    try {
      got = await underTest(o.target, prepared.run)
    } catch (e) {
      return { ...base, shape, status: 'error', seconds: seconds(), error: `on ${o.target}: ${message(e)}` }
    }
    const keys = new Set([...Object.keys(prepared.tolerances), ...Object.keys(want), ...Object.keys(got)])
    const outputs: OutputCheck[] = []
    for (const k of keys) {
      const tol = prepared.tolerances[k]
      if (!tol) outputs.push({ output: k, ok: false, metric: 'tolerance', value: 0, limit: 0, note: 'no tolerance declared for this output' })
      else outputs.push(compareOutput(k, got[k], want[k], tol))
    }
    const failed = outputs.filter((x) => !x.ok)
    return { ...base, shape, status: failed.length ? 'failed' : 'passed', seconds: seconds(), outputs: failed.length ? failed : outputs }
  } catch (e) {
    return { ...base, shape, status: 'error', seconds: seconds(), error: `on cpu (reference) or while preparing: ${message(e)}` }
  }
}

/** The cases in the order they run: small ones first, so a short budget still checks every op once before the edge shapes. */
export function orderedCases(o: Pick<CorrectnessOptions, 'cases' | 'filter'>): CheckCase[] {
  const all = (o.cases ?? CASES).filter(o.filter ?? (() => true))
  return [...all.filter((c) => !c.edge), ...all.filter((c) => c.edge)]
}

/** An empty report over `ordered`: which exported ops no case checks, which planned ops this build lacks. */
export function newReport(ordered: readonly CheckCase[], o: Pick<CorrectnessOptions, 'target' | 'seed' | 'filter'>): CorrectnessReport {
  const checked = new Set(ordered.map((c) => c.op))
  return {
    target: o.target,
    seed: o.seed,
    cases: [],
    passed: 0,
    failed: 0,
    errors: 0,
    skipped: 0,
    unchecked: o.filter ? [] : exportedOps().filter((op) => !checked.has(op) && !PLANNED_OPS.includes(op)),
    absent: PLANNED_OPS.filter((op) => !checked.has(op)),
  }
}

/** Counts the report's cases by status. */
export function tally(c: CorrectnessReport): void {
  c.passed = c.cases.filter((x) => x.status === 'passed').length
  c.failed = c.cases.filter((x) => x.status === 'failed').length
  c.errors = c.cases.filter((x) => x.status === 'error').length
  c.skipped = c.cases.filter((x) => x.status === 'skipped').length
}

export function describe(r: CaseResult): string {
  if (r.status === 'passed') {
    const worst = r.outputs!.reduce((m, x) => Math.max(m, x.limit > 0 ? x.value / x.limit : 0), 0)
    return `ok   ${r.name} ${r.shape ?? ''} (${r.seconds.toFixed(2)} s, worst output at ${(worst * 100).toFixed(1)}% of its tolerance)`
  }
  if (r.status === 'failed') {
    const first = r.outputs!.map((x) => `${x.output}: ${x.metric} ${x.value.toExponential(2)} > ${x.limit.toExponential(2)}${x.note ? ` (${x.note})` : ''}${x.worst ? ` [worst at ${x.worst.index}: ${x.worst.got} vs cpu ${x.worst.want}]` : ''}`)
    return `FAIL ${r.name} ${r.shape ?? ''}: ${first.join('; ')}`
  }
  if (r.status === 'error') return `ERR  ${r.name} ${r.shape ?? ''}: ${r.error}`
  return `skip ${r.name}: ${r.reason}`
}

export async function runCorrectness(o: CorrectnessOptions): Promise<CorrectnessReport> {
  const ordered = orderedCases(o)
  const report = newReport(ordered, o)
  const results = report.cases
  const from = o.from ?? 0
  o.log(`correctness: ${ordered.length - from} cases${from ? ` (from case ${from})` : ''}, ${o.target} against the cpu backend, seed ${o.seed} (replay: --seed ${o.seed})`)
  for (const c of ordered.slice(from)) {
    let r: CaseResult
    if (!opExists(c.op)) r = { op: c.op, name: c.name, edge: c.edge ?? false, status: 'skipped', seconds: 0, reason: `${c.op} is not in this build` }
    else if (Date.now() >= o.deadline) r = { op: c.op, name: c.name, edge: c.edge ?? false, status: 'skipped', seconds: 0, reason: 'time budget' }
    else {
      o.onStart?.(c)
      r = await runCase(c, o)
    }
    results.push(r)
    report[r.status === 'passed' ? 'passed' : r.status === 'failed' ? 'failed' : r.status === 'error' ? 'errors' : 'skipped']++
    o.log(`  ${describe(r)}`)
    o.onProgress?.(report)
    if (r.status === 'error' && o.stopIf && (await o.stopIf(r))) break
  }
  for (const op of report.unchecked) o.log(`  UNCHECKED: ${op} is exported but no case checks it (add one to lib/check/cases.ts)`)
  if (report.absent.length) o.log(`  no CUDA kernel yet (planned): ${report.absent.join(', ')}`)
  o.log(`correctness: ${report.passed} passed, ${report.failed} failed, ${report.errors} errors, ${report.skipped} skipped`)
  return report
}

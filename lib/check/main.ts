/**
 * Entry of the GPU check: `node dist/check/main.js [options]`, started by scripts/gpu-check.sh (which unpacks
 * the packed folder on the device machine and enforces the budget from outside too). See bench/README.md.
 *
 *   --dry-run            the SIMT executor instead of a GPU, small sizes, CUDA-only steps skipped
 *   --out DIR            where results.json, summary.txt and the logs go (default $OUT, else ./gpu-check-out)
 *   --budget SECONDS     the whole run's time (default 420)
 *   --seed N             the inputs' seed (default: fresh; printed, and replayable)
 *   --steps a,b          a subset of correctness,timing,distributed,torch,sanitizer
 *   --python CMD         the Python with PyTorch (default: the first of python3, /usr/bin/python3,
 *                        /opt/torch/.venv/bin/python3 that imports torch; else python3)
 *   --sanitizer PATH     compute-sanitizer (default: found on PATH or in /usr/local/cuda/bin)
 *   --manifest FILE      the pack's MANIFEST.json, recorded with the results
 *
 * Child modes (the runner starts them: under compute-sanitizer, or with GRPO_CUDA_GEMM=own so the linear ops
 * run our GEMM instead of cuBLASLt, and every correctness run: one process per run, a new one after a case that
 * ends its process or its device): --child correctness --target cuda|simt [--sanitizer-cases] [--ops a,b]
 * [--from K] [--budget SECONDS] --seed N --json FILE (exit 4: the device stopped answering after an error);
 * --child perf --target cuda|simt --ops a,b --seed N --json FILE; --child distributed --target cuda|simt --seed N
 * [--budget SECONDS] --json FILE (the world-of-one collectives and the data-parallel Trainer step).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { native } from '../native.js'
import { Tensor } from '../tensor.js'
import { probeDeviceBandwidth, withHostBackend } from '../bench/device.js'
import type { CheckCase } from './cases.js'
import { runCorrectness } from './correctness.js'
import { runDistributedCheck } from './distributed.js'
import { timeOurs } from './perf.js'
import { EXIT, STEPS, type StepName, runGpuCheck, sanitizerCases } from './run.js'

const here = dirname(fileURLToPath(import.meta.url))
/** The package root: dist/check/main.js and lib/check/main.ts both sit two levels below it. */
const root = join(here, '..', '..')

/** The first Python that imports torch (the device image's python3 does; here it may be Debian's). */
function findPython(explicit: string | undefined): string {
  if (explicit) return explicit
  for (const py of ['python3', '/usr/bin/python3', '/opt/torch/.venv/bin/python3']) {
    if (spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 }).status === 0) return py
  }
  return 'python3'
}

export { EXIT } from './run.js'

function findSanitizer(explicit: string | undefined): string | undefined {
  if (explicit) return explicit
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/local/cuda/bin', '/usr/local/cuda/compute-sanitizer'])) {
    const p = join(dir, 'compute-sanitizer')
    if (dir && existsSync(p)) return p
  }
  return undefined
}

/** Whether a small round trip through the GPU still works (after an illegal address, every call fails). */
async function deviceAnswers(): Promise<boolean> {
  const made: Tensor[] = []
  try {
    made.push(Tensor.from(Float32Array.of(1, 2, 3), [3]))
    made.push(await made[0]!.to('cuda'))
    made.push(await made[1]!.to('cpu'))
    const v = (await made[2]!.toArray()) as Float32Array
    return v[2] === 3
  } catch {
    return false
  } finally {
    for (const t of made) {
      try {
        t.dispose()
      } catch {
        // a device that is gone may refuse the free too
      }
    }
  }
}

/**
 * A fault for the runner's own test (test/check/gpu-check.test.ts): GRPO_CHECK_FAULT=crash:NAME makes a
 * correctness child abort when it starts the case NAME, as a kernel that kills its process would.
 */
function faultInjection(): ((c: CheckCase) => void) | undefined {
  const fault = process.env.GRPO_CHECK_FAULT
  if (!fault?.startsWith('crash:')) return undefined
  const name = fault.slice('crash:'.length)
  return (c) => {
    if (c.name === name) process.kill(process.pid, 'SIGKILL')
  }
}

export async function main(argv: string[], log: (line: string) => void = (l) => process.stdout.write(l + '\n')): Promise<number> {
  let values
  try {
    values = parseArgs({
      args: argv,
      options: {
        'dry-run': { type: 'boolean', default: false },
        out: { type: 'string' },
        budget: { type: 'string' },
        seed: { type: 'string' },
        steps: { type: 'string' },
        python: { type: 'string' },
        sanitizer: { type: 'string' },
        manifest: { type: 'string' },
        child: { type: 'string' },
        target: { type: 'string' },
        'sanitizer-cases': { type: 'boolean', default: false },
        ops: { type: 'string' },
        from: { type: 'string' },
        json: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    }).values
  } catch (e) {
    log(`gpu-check: ${(e as Error).message}`)
    return EXIT.usage
  }
  if (values.help) {
    log('usage: node dist/check/main.js [--dry-run] [--out DIR] [--budget SECONDS] [--seed N] [--steps correctness,timing,distributed,torch,sanitizer] [--python CMD] [--sanitizer PATH]')
    return EXIT.ok
  }
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31)
  if (!Number.isSafeInteger(seed) || seed < 0) {
    log(`gpu-check: --seed must be a non-negative integer, not ${values.seed}`)
    return EXIT.usage
  }

  const onlyOps = values.ops?.split(',').map((x) => x.trim())
  if (values.child === 'correctness') {
    const target = values.target === 'cuda' ? 'cuda' : 'simt'
    const filter = values['sanitizer-cases'] ? sanitizerCases : onlyOps ? (c: CheckCase) => onlyOps.includes(c.op) : undefined
    const budget = values.budget !== undefined ? Number(values.budget) : Infinity
    const json = values.json
    // The report is rewritten after every case: the runner reads what a process that died had done.
    const write = (report: object) => {
      if (!json) return
      writeFileSync(json + '.tmp', JSON.stringify(report))
      renameSync(json + '.tmp', json)
    }
    let lost = false
    const report = await runCorrectness({
      target,
      seed,
      deadline: Date.now() + budget * 1000,
      filter,
      log,
      from: values.from !== undefined ? Number(values.from) : 0,
      onProgress: write,
      onStart: faultInjection(),
      // After an error on the GPU: if the device no longer answers in this process, stop and say so (exit 4),
      // so that the runner starts a new process for the remaining cases.
      stopIf: async () => (lost = target === 'cuda' && !(await deviceAnswers())),
    })
    write(report)
    if (lost) return EXIT.deviceLost
    return report.failed || report.errors ? EXIT.failed : EXIT.ok
  }
  if (values.child === 'perf') {
    const device = values.target === 'cuda' ? 'cuda' : 'cpu'
    const run = async () => {
      const probe = await probeDeviceBandwidth(device, device === 'cuda' ? { bytes: 2 ** 28, reps: 5 } : { bytes: 1 << 20, reps: 2 })
      return timeOurs({ device, dry: device !== 'cuda', probe, reps: device === 'cuda' ? 20 : 3, warmup: device === 'cuda' ? 3 : 1, seed, log }, Infinity, (c) => !!c.op && (onlyOps ?? []).includes(c.op))
    }
    const rows = await (device === 'cuda' ? run() : withHostBackend('simt', run))
    if (values.json) writeFileSync(values.json, JSON.stringify(rows))
    return rows.some((r) => r.status === 'error') ? EXIT.failed : EXIT.ok
  }
  if (values.child === 'distributed') {
    const target = values.target === 'cuda' ? 'cuda' : 'simt'
    const budget = values.budget !== undefined ? Number(values.budget) : Infinity
    const write = (report: object) => {
      if (!values.json) return
      writeFileSync(values.json + '.tmp', JSON.stringify(report))
      renameSync(values.json + '.tmp', values.json)
    }
    const run = () => runDistributedCheck({ target, seed, deadline: Date.now() + budget * 1000, log, onProgress: write })
    const report = await (target === 'cuda' ? run() : withHostBackend('simt', run))
    write(report)
    return report.failed || report.errors ? EXIT.failed : EXIT.ok
  }
  if (values.child !== undefined) {
    log(`gpu-check: unknown --child ${values.child}`)
    return EXIT.usage
  }

  const budget = Number(values.budget ?? 420)
  if (!(budget >= 10)) {
    log(`gpu-check: --budget must be at least 10 seconds, not ${values.budget}`)
    return EXIT.usage
  }
  const steps = values.steps?.split(',').map((s) => s.trim()) as StepName[] | undefined
  const unknown = steps?.filter((s) => !STEPS.includes(s))
  if (unknown?.length) {
    log(`gpu-check: unknown step ${unknown.join(', ')} (steps: ${STEPS.join(', ')})`)
    return EXIT.usage
  }
  const dry = values['dry-run']!
  let info
  try {
    info = native().backendInfo()
  } catch (e) {
    log(`gpu-check: the native addon does not load: ${(e as Error).message}`)
    return EXIT.noDevice
  }
  if (!dry && !info.cuda.available) {
    log(
      `gpu-check: refusing to run: no usable CUDA GPU here (${info.cuda.reason}; build: ${info.cuda.build}). ` +
        'Run it on a machine with a GPU, or with --dry-run to exercise it on the SIMT executor.',
    )
    return EXIT.noDevice
  }
  if (dry && !info.compiled.includes('simt')) {
    log('gpu-check: --dry-run needs the SIMT executor, and this build has none (compiled: ' + info.compiled.join(', ') + ')')
    return EXIT.noDevice
  }
  const out = resolve(values.out ?? process.env.OUT ?? 'gpu-check-out')
  const manifest = values.manifest && existsSync(values.manifest) ? JSON.parse(readFileSync(values.manifest, 'utf8')) : undefined
  const results = await runGpuCheck({
    mode: dry ? 'dry-run' : 'device',
    out,
    budgetSeconds: budget,
    seed,
    python: findPython(values.python),
    torchScript: join(root, 'scripts', 'gpu_check_torch.py'),
    sanitizer: dry ? undefined : findSanitizer(values.sanitizer),
    nodeCommand: [process.execPath, fileURLToPath(import.meta.url)],
    steps,
    build: manifest,
    log,
  })
  return results.verdict === 'fail' ? EXIT.failed : EXIT.ok
}

// Run when started as a program (not when a test imports it).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`gpu-check: ${(e as Error).stack ?? e}\n`)
      process.exit(EXIT.failed)
    },
  )
}

/**
 * Runs a test script as several MPI ranks on this machine (loopback), with the launcher settings of
 * `node-grpo launch` (lib/commands/launch.ts): Open MPI's mpirun or MPICH's mpiexec, oversubscribed (2 cores
 * run 3 ranks), one CPU thread per rank, as root where CI runs as root. The ranks run the TypeScript sources
 * with this process's loader flags, so their coverage counts.
 *
 * Without an MPI launcher the multi-process tests skip with the reason, except in CI (CI=true), where .ci/run
 * installs Open MPI and a missing launcher is a failure.
 */
import { spawn, spawnSync } from 'node:child_process'
import { launcherKind, launchPlan } from '../../lib/commands/launch.js'
import * as distributed from '../../lib/distributed.js'

export interface Launcher {
  path: string
  kind: 'openmpi' | 'mpich' | 'unknown'
}

function detect(): { launcher: Launcher | null; reason: string } {
  for (const path of ['mpirun', 'mpiexec']) {
    const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 30_000 })
    if (r.error) continue
    const library = distributed.info().mpi
    if (!library.available) return { launcher: null, reason: `${path} is installed but no MPI library loads: ${library.reason}` }
    return { launcher: { path, kind: launcherKind(`${r.stdout}${r.stderr}`) }, reason: '' }
  }
  return { launcher: null, reason: 'no MPI launcher (mpirun or mpiexec) on PATH; install openmpi-bin libopenmpi-dev (.ci/run does)' }
}

export const { launcher, reason: skipReason } = detect()

/** tap options for a multi-process test: skipped (with why) without MPI, except in CI where it must run. */
export function needsMpi(): { skip?: string } {
  if (launcher || process.env.CI) return {}
  return { skip: skipReason }
}

export interface RankRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  seconds: number
  /** Date.now() when the launcher exited. */
  ended: number
}

/** `np` ranks of `script` (a .ts file) with `args`; resolves when the launcher exits (or is killed at `timeoutMs`). */
export function mpirun(np: number, script: string, args: readonly string[], options: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<RankRun> {
  if (!launcher) throw new Error(`multi-process test without an MPI launcher: ${skipReason}`)
  const plan = launchPlan(launcher.path, launcher.kind, np, [process.execPath, ...process.execArgv, script, ...args], [], {
    cores: 1,
    root: typeof process.getuid === 'function' && process.getuid() === 0,
    env: {},
  })
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const child = spawn(plan.command, plan.args, { env: { ...process.env, ...plan.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += String(d)))
    child.stderr.on('data', (d) => (stderr += String(d)))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 900_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, seconds: (performance.now() - started) / 1000, ended: Date.now() })
    })
  })
}

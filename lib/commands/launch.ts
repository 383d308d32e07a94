/**
 * `node-grpo launch --nproc N <command> [args…]`: runs N ranks of a node-grpo command on this machine through the
 * installed MPI launcher (Open MPI's mpirun or MPICH's mpiexec), with the settings one machine needs:
 *
 * - each rank gets a share of the cores for its CPU threads (GRPO_NUM_THREADS, unless set) and no core binding,
 *   so that N ranks neither pile onto one core nor oversubscribe the machine;
 * - Open MPI: --oversubscribe when N exceeds the cores, and --allow-run-as-root when run as root (containers);
 * - each rank picks its own GPU from its local rank (lib/distributed.ts assignDevice).
 *
 * It is a convenience: `mpirun -np N npx node-grpo train …` and `srun … npx node-grpo train …` do the same job, and
 * across several machines the launcher is the way (README "Scaling out").
 */
import { spawn, spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { invalidArg } from '../errors.js'

const USAGE = `Usage: node-grpo launch --nproc N [--launcher PATH] [--mpi-arg ARG]… <command> [args…]

Runs N data-parallel ranks of a node-grpo command on this machine with mpirun (Open MPI) or mpiexec (MPICH).
Example: node-grpo launch --nproc 4 train --steps 300 --batch 32

Options:
  --nproc N        number of ranks (processes); one per GPU on a GPU machine
  --launcher PATH  the MPI launcher (default: mpirun, else mpiexec, from PATH)
  --mpi-arg ARG    an extra argument for the launcher (repeatable), e.g. --mpi-arg=--report-bindings
  --dry-run        print the launcher command instead of running it
  -h, --help       this text

Each rank runs with GRPO_NUM_THREADS = cores / N (unless set). Across machines, start the ranks with your
launcher directly: mpirun -np 16 --hostfile hosts npx node-grpo train …, or srun --ntasks 16 --mpi=pmix npx node-grpo train …`

export interface LaunchPlan {
  command: string
  args: string[]
  env: Record<string, string>
}

/** Which MPI a launcher belongs to, from its --version text. */
export function launcherKind(versionText: string): 'openmpi' | 'mpich' | 'unknown' {
  if (/Open MPI|OpenRTE|Open RTE/i.test(versionText)) return 'openmpi'
  if (/HYDRA|MPICH|Intel\(R\) MPI/i.test(versionText)) return 'mpich'
  return 'unknown'
}

/** The launcher command for `nproc` ranks of `program` (the node binary and its arguments). */
export function launchPlan(
  launcher: string,
  kind: 'openmpi' | 'mpich' | 'unknown',
  nproc: number,
  program: readonly string[],
  extra: readonly string[],
  machine: { cores: number; root: boolean; env: NodeJS.ProcessEnv },
): LaunchPlan {
  const env: Record<string, string> = {}
  if (machine.env.GRPO_NUM_THREADS === undefined) env.GRPO_NUM_THREADS = String(Math.max(1, Math.floor(machine.cores / nproc)))
  const args: string[] = []
  if (kind === 'openmpi') {
    args.push('-np', String(nproc), '--bind-to', 'none')
    if (nproc > machine.cores) args.push('--oversubscribe')
    if (machine.root) args.push('--allow-run-as-root')
    // Open MPI passes only the variables named with -x to ranks on other machines; on this one they inherit them.
    for (const name of Object.keys(env)) args.push('-x', name)
  } else {
    args.push('-n', String(nproc))
    if (kind === 'mpich') args.push('-bind-to', 'none')
  }
  args.push(...extra, ...program)
  return { command: launcher, args, env }
}

function findLauncher(explicit: string | undefined): { path: string; version: string } | null {
  for (const candidate of explicit ? [explicit] : ['mpirun', 'mpiexec']) {
    const r = spawnSync(candidate, ['--version'], { encoding: 'utf8', timeout: 30_000 })
    if (!r.error) return { path: candidate, version: `${r.stdout}${r.stderr}` }
  }
  return null
}

export async function run(argv: string[]): Promise<number> {
  let nproc: number | undefined
  let launcher: string | undefined
  let dryRun = false
  const extra: string[] = []
  let i = 0
  // Options end at the first word that is not one of ours: the command and its own flags follow untouched.
  for (; i < argv.length; i++) {
    const a = argv[i]!
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined]
    const value = () => inline ?? argv[++i]
    if (flag === '-h' || flag === '--help') {
      process.stdout.write(USAGE + '\n')
      return 0
    } else if (flag === '--nproc') {
      const raw = value()
      const n = Number(raw)
      if (!Number.isSafeInteger(n) || n < 1) invalidArg('an integer >= 1', '--nproc', raw)
      nproc = n
    } else if (flag === '--launcher') {
      launcher = value()
    } else if (flag === '--mpi-arg') {
      const v = value()
      if (v === undefined) invalidArg('an argument for the launcher', '--mpi-arg', v)
      extra.push(v)
    } else if (flag === '--dry-run') {
      dryRun = true
    } else if (flag === '--') {
      i++
      break
    } else {
      break
    }
  }
  const command = argv.slice(i)
  if (nproc === undefined) invalidArg('--nproc N', 'node-grpo launch', argv.join(' ') || 'no options')
  if (command.length === 0 || command[0] === 'launch') invalidArg('a node-grpo command to run (e.g. train)', 'node-grpo launch', command[0] ?? 'none')
  const found = findLauncher(launcher)
  if (!found) {
    process.stderr.write(
      `node-grpo launch: Expected an MPI launcher (${launcher ?? 'mpirun or mpiexec'}) on PATH but received none. ` +
        'Install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) or MPICH, or start the ranks with your own launcher (srun).\n',
    )
    return 1
  }
  // The ranks run this very CLI (same node, same loader flags) with the command that follows.
  const program = [process.execPath, ...process.execArgv, process.argv[1]!, ...command]
  const plan = launchPlan(found.path, launcherKind(found.version), nproc, program, extra, {
    cores: availableParallelism(),
    root: typeof process.getuid === 'function' && process.getuid() === 0,
    env: process.env,
  })
  if (dryRun) {
    const env = Object.entries(plan.env).map(([k, v]) => `${k}=${v} `).join('')
    process.stdout.write(`${env}${[plan.command, ...plan.args].join(' ')}\n`)
    return 0
  }
  const child = spawn(plan.command, plan.args, { stdio: 'inherit', env: { ...process.env, ...plan.env } })
  // Ctrl-C reaches the launcher through the terminal's process group; it stops the ranks.
  return await new Promise<number>((resolve) => {
    child.on('error', (error) => {
      process.stderr.write(`node-grpo launch: ${error.message}\n`)
      resolve(1)
    })
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 1 : 1)))
  })
}

/**
 * `node-grpo launch`: the launcher command it builds for Open MPI and MPICH, its errors, and the main job run as
 * 2 ranks through it: rank 0 alone prints and writes, the metrics are the whole batch's, and the run matches the
 * same job on one process.
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { launchPlan, launcherKind, run } from '../../lib/commands/launch.js'
import { launcher, needsMpi } from './mpi.js'

const root = join(import.meta.dirname, '..', '..')
const dir = await mkdtemp(join(tmpdir(), 'node-grpo-launch-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

t.test('the launcher command', async (t) => {
  t.equal(launcherKind('mpirun (Open MPI) 4.1.4\n'), 'openmpi')
  t.equal(launcherKind('HYDRA build details:\n    Version: 4.0.2'), 'mpich')
  t.equal(launcherKind('Intel(R) MPI Library for Linux* OS, Version 2021.9'), 'mpich')
  t.equal(launcherKind('something else'), 'unknown')
  const program = ['node', 'cli.js', 'train', '--steps', '3']
  const ompi = launchPlan('mpirun', 'openmpi', 4, program, ['--report-bindings'], { cores: 2, root: true, env: {} })
  t.same(ompi.env, { GRPO_NUM_THREADS: '1' }, 'a share of the cores per rank')
  t.same(ompi.args, ['-np', '4', '--bind-to', 'none', '--oversubscribe', '--allow-run-as-root', '-x', 'GRPO_NUM_THREADS', '--report-bindings', ...program])
  const quiet = launchPlan('mpirun', 'openmpi', 2, program, [], { cores: 16, root: false, env: { GRPO_NUM_THREADS: '3' } })
  t.same(quiet.env, {}, "the user's GRPO_NUM_THREADS is kept")
  t.same(quiet.args, ['-np', '2', '--bind-to', 'none', ...program], 'no oversubscription or root flag where not needed')
  t.same(launchPlan('mpiexec', 'mpich', 2, program, [], { cores: 16, root: true, env: {} }).args, ['-n', '2', '-bind-to', 'none', ...program])
  t.same(launchPlan('srun', 'unknown', 2, program, [], { cores: 16, root: false, env: {} }).args, ['-n', '2', ...program])
})

async function capture(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const [write, writeErr] = [process.stdout.write, process.stderr.write]
  let [out, err] = ['', '']
  process.stdout.write = ((c: string) => ((out += String(c)), true)) as typeof process.stdout.write
  process.stderr.write = ((c: string) => ((err += String(c)), true)) as typeof process.stderr.write
  try {
    return { code: await run(args), out, err }
  } finally {
    process.stdout.write = write
    process.stderr.write = writeErr
  }
}

t.test('options and errors', async (t) => {
  t.match((await capture(['--help'])).out, /Usage: node-grpo launch --nproc N/)
  await t.rejects(capture(['train']), { code: 'ERR_GRPO_INVALID_ARG', message: /--nproc N/ })
  await t.rejects(capture(['--nproc', '0', 'train']), { code: 'ERR_GRPO_INVALID_ARG', message: /an integer >= 1/ })
  await t.rejects(capture(['--nproc=2']), { code: 'ERR_GRPO_INVALID_ARG', message: /a node-grpo command to run/ })
  await t.rejects(capture(['--nproc', '2', 'launch', 'train']), { code: 'ERR_GRPO_INVALID_ARG' }, 'no launch inside launch')
  await t.rejects(capture(['--nproc', '2', '--mpi-arg']), { code: 'ERR_GRPO_INVALID_ARG', message: /--mpi-arg/ })
  const missing = await capture(['--nproc', '2', '--launcher', join(dir, 'no-such-mpirun'), 'train'])
  t.equal(missing.code, 1)
  t.match(missing.err, /Expected an MPI launcher .* on PATH but received none. Install Open MPI/)
  if (launcher) {
    const dry = await capture(['--nproc', '3', `--launcher=${launcher.path}`, '--mpi-arg=--tag-output', '--dry-run', '--', 'train', '--steps', '1'])
    t.equal(dry.code, 0)
    t.match(dry.out, new RegExp(`GRPO_NUM_THREADS=\\d+ ${launcher.path} .*--tag-output .*cli\\.ts train --steps 1|GRPO_NUM_THREADS=\\d+ ${launcher.path} .*--tag-output .* train --steps 1`), 'the command it would run')
  }
})

t.test('the main job as 2 ranks equals the main job on one process', needsMpi(), async (t) => {
  const flags = ['--steps', '2', '--batch', '4', '--warmup-steps', '1', '--warmup-examples', '64', '--eval-every', '0', '--seed', '5', '--device', 'cpu', '--quiet']
  const cli = (args: string[]) =>
    spawnSync(process.execPath, [...process.execArgv, join(root, 'lib', 'cli.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 600_000, env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' } })
  const one = cli(['train', ...flags, '--out', join(dir, 'one')])
  t.equal(one.status, 0, one.stderr.slice(-2000))
  const two = cli(['launch', '--nproc', '2', 'train', ...flags, '--out', join(dir, 'two')])
  t.equal(two.status, 0, two.stderr.slice(-3000))
  t.equal(two.stdout.match(/node-grpo train: backend/g)?.length, 1, 'rank 0 alone prints')
  t.match(two.stdout, /data-parallel: 2 ranks \((mpirun|mpiexec).*, 2 on this machine, ZeRO-0/)
  t.same((await readdir(join(dir, 'two'))).sort(), ['curves.svg', 'metrics.jsonl', 'summary.json'], 'rank 0 alone writes')
  const lines = async (run: string) => (await readFile(join(dir, run, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l))
  const [a, b] = [await lines('one'), await lines('two')]
  t.same(b.map((l) => l.phase), a.map((l) => l.phase), 'the same records')
  const grpo = (ls: Record<string, number>[]) => ls.filter((l) => l.phase as unknown as string === 'grpo')
  t.same(grpo(b).map((l) => l.completions), [20, 20], 'each step covers the global batch: 4 prompts x 5')
  t.ok(Math.abs(b[0].loss - a[0].loss) < 1e-6, `the warm-start loss (${a[0].loss} vs ${b[0].loss})`)
  for (const [i, m] of grpo(a).entries()) {
    const n = grpo(b)[i]!
    t.same([n.rewardMean, n.tokens], [m.rewardMean, m.tokens], `step ${i + 1}: the same completions and rewards`)
    t.ok(Math.abs(n.loss - m.loss) <= 1e-6 * Math.max(1, Math.abs(m.loss)), `step ${i + 1}: the same loss (${m.loss} vs ${n.loss})`)
  }
  const [sa, sb] = [JSON.parse(await readFile(join(dir, 'one', 'summary.json'), 'utf8')), JSON.parse(await readFile(join(dir, 'two', 'summary.json'), 'utf8'))]
  t.same(sb.world, { size: 2, launcher: sb.world.launcher, mpi: sb.world.mpi, zero: 0 })
  t.same(sb.heldOut, sa.heldOut, 'the same held-out rewards before and after')
})

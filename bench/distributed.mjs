#!/usr/bin/env node
/**
 * Data-parallel benchmarks on this machine (results in bench/distributed.md):
 *
 * 1. All-reduce bandwidth over MPI on loopback (2 ranks, f32 sum, 4 B to 64 MiB): node-grpo's allReduce (a
 *    Promise, the communication thread, MPI_Iallreduce polled against its deadline) against an OSU-style C program
 *    that calls MPI_Allreduce directly (bench/distributed/allreduce.c, compiled with mpicc when present; Debian
 *    ships no OSU micro-benchmarks package). Both report latency, algorithm bandwidth (bytes / time) and bus
 *    bandwidth (algbw x 2(n-1)/n, the data each rank must send and receive in a ring all-reduce). The same C
 *    program built with -DNONBLOCKING calls MPI_Iallreduce + MPI_Test as node-grpo does, separating the cost of
 *    MPI's non-blocking algorithm from node-grpo's own layers.
 * 2. The main job (node-grpo train) on 1 process and on 2 ranks (node-grpo launch --nproc 2) with the same global
 *    batch and seed: tokens per second and the time split.
 *
 *   node bench/distributed.mjs [--steps 40] [--trials 3] [--sizes 4,1024,...] [--skip-train] [--out bench/results]
 *
 * On a shared machine the ranks are descheduled at random (a rank that polls MPI waits for a core): each all-reduce
 * series runs --trials times, alternating node-grpo and C, and the tables show each size's best trial (all trials
 * are in the JSON).
 *
 * Needs the compiled package (npm run build:ts) and an MPI launcher. As root it passes --allow-run-as-root.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const { values: flags } = parseArgs({
  options: {
    steps: { type: 'string', default: '40' },
    sizes: { type: 'string' },
    'skip-train': { type: 'boolean', default: false },
    trials: { type: 'string', default: '3' },
    out: { type: 'string', default: join(root, 'bench', 'results') },
    rank: { type: 'string' }, // internal: run as one rank of the node-grpo all-reduce timing
  },
})

const SIZES = (flags.sizes ?? '4,64,1024,16384,262144,1048576,4194304,16777216,67108864').split(',').map(Number)
const repsFor = (bytes) => (bytes <= 65536 ? 200 : bytes <= 4194304 ? 30 : 8)

// ---- one rank of the node-grpo timing (run under mpirun) ------------------------------------------------
if (flags.rank !== undefined) {
  const { distributed, Tensor } = await import(join(root, 'dist', 'index.js'))
  const world = distributed.init({ timeout: 600 })
  const rows = []
  for (const bytes of SIZES) {
    const n = Math.max(1, bytes / 4)
    const t = Tensor.from(new Float32Array(n).fill(1 / world.size), [n])
    for (let i = 0; i < 3; i++) await distributed.allReduce(t)
    const reps = repsFor(bytes)
    // As the C baseline: a barrier before each call, the slowest rank's time per call.
    const ms = []
    for (let i = 0; i < reps; i++) {
      await distributed.barrier()
      const start = performance.now()
      await distributed.allReduce(t)
      ms.push(performance.now() - start)
    }
    const worst = Array.from(await distributed.allReduceValues(ms, { op: 'max' })).sort((a, b) => a - b)
    rows.push({ bytes: n * 4, ms: worst.reduce((a, b) => a + b, 0) / reps, reps, median: worst[reps >> 1], min: worst[0] })
    t.dispose()
  }
  if (world.rank === 0) writeFileSync(flags.rank, JSON.stringify(rows))
  process.exit(0)
}

// ---- the orchestration ----------------------------------------------------------------------------------
const root_ = typeof process.getuid === 'function' && process.getuid() === 0
const mpiFlags = ['--bind-to', 'none', ...(root_ ? ['--allow-run-as-root'] : [])]
const version = spawnSync('mpirun', ['--version'], { encoding: 'utf8' })
if (version.error) {
  console.error('bench/distributed.mjs: no mpirun on PATH (apt-get install openmpi-bin libopenmpi-dev)')
  process.exit(1)
}
const mpiVersion = version.stdout.split('\n')[0]
const work = mkdtempSync(join(tmpdir(), 'node-grpo-dist-bench-'))
const machine = { cpu: cpus()[0]?.model, cores: cpus().length, loadBefore: loadavg()[0] }
console.log(`machine: ${machine.cpu}, ${machine.cores} cores, load average ${machine.loadBefore.toFixed(1)}; ${mpiVersion}`)

function busbw(bytes, ms, n) {
  return ((bytes / (ms / 1000)) * (2 * (n - 1))) / n / 1e9
}

function table(rows, title) {
  console.log(`\n${title}`)
  console.log('  bytes          mean ms    median ms       min ms   busbw GB/s (mean, median, min)')
  const f = (ms) => ms.toFixed(4).padStart(11)
  for (const r of rows) {
    const bw = [r.ms, r.median, r.min].map((ms) => busbw(r.bytes, ms, 2).toFixed(3)).join(', ')
    console.log(`  ${String(r.bytes).padStart(9)}  ${f(r.ms)}  ${f(r.median)}  ${f(r.min)}   ${bw}`)
  }
}

// 1. node-grpo's allReduce and the OSU-style C baseline, 2 ranks, alternating trials
const nodeOut = join(work, 'node.json')
function nodeTrial() {
  const r = spawnSync('mpirun', ['-np', '2', ...mpiFlags, process.execPath, fileURLToPath(import.meta.url), '--rank', nodeOut, '--sizes', SIZES.join(',')], { encoding: 'utf8', env: { ...process.env, GRPO_NUM_THREADS: '1' } })
  if (r.status !== 0) throw new Error(`node-grpo all-reduce run failed: ${r.stderr}`)
  return JSON.parse(readFileSync(nodeOut, 'utf8'))
}
const source = join(root, 'bench', 'distributed', 'allreduce.c')
const mpicc = spawnSync('mpicc', ['-O2', '-o', join(work, 'allreduce'), source], { encoding: 'utf8' })
if (mpicc.status === 0) spawnSync('mpicc', ['-O2', '-DNONBLOCKING', '-o', join(work, 'iallreduce'), source], { encoding: 'utf8' })
function cTrial(program) {
  const c = spawnSync('mpirun', ['-np', '2', ...mpiFlags, join(work, program), ...SIZES.map(String)], { encoding: 'utf8' })
  if (c.status !== 0) throw new Error(`C baseline failed: ${c.stderr}`)
  return c.stdout.trim().split('\n').map((line) => {
    const [bytes, ms, reps, median, min] = line.trim().split(/\s+/).map(Number)
    return { bytes, ms, reps, median, min }
  })
}
const nodeTrials = []
const cTrials = []
const cNonblockingTrials = []
for (let i = 0; i < Number(flags.trials); i++) {
  nodeTrials.push(nodeTrial())
  if (mpicc.status === 0) cTrials.push(cTrial('allreduce'))
  if (mpicc.status === 0) cNonblockingTrials.push(cTrial('iallreduce'))
}
// Per size: the best trial's mean (OSU's figure), median and fastest call.
const best = (trials) => trials[0].map((row, i) => ({ ...row, ms: Math.min(...trials.map((t) => t[i].ms)), median: Math.min(...trials.map((t) => t[i].median)), min: Math.min(...trials.map((t) => t[i].min)) }))
const nodeRows = best(nodeTrials)
table(nodeRows, `node-grpo distributed.allReduce (f32 sum, 2 ranks, loopback; best of ${nodeTrials.length})`)
const cRows = cTrials.length > 0 ? best(cTrials) : null
const cNonblockingRows = cNonblockingTrials.length > 0 ? best(cNonblockingTrials) : null
if (cRows) table(cRows, `MPI_Allreduce from C (OSU-style, bench/distributed/allreduce.c; best of ${cTrials.length})`)
if (cNonblockingRows) table(cNonblockingRows, `MPI_Iallreduce + MPI_Test from C (what node-grpo calls; -DNONBLOCKING; best of ${cNonblockingTrials.length})`)
else console.log(`\n(no mpicc: the C baseline is skipped: ${mpicc.error?.message ?? mpicc.stderr})`)

// 2. the main job on 1 and 2 processes
let train = null
if (!flags['skip-train']) {
  const steps = flags.steps
  const job = ['train', '--steps', steps, '--batch', '16', '--seed', '1', '--eval-every', '0', '--quiet', '--device', 'cpu']
  const cli = join(root, 'dist', 'cli.js')
  const run = (args, out) => {
    const started = performance.now()
    execFileSync(process.execPath, [cli, ...args, '--out', out], { stdio: 'ignore', env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' } })
    const wall = (performance.now() - started) / 1000
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.phase === 'grpo')
    const tokens = lines.reduce((a, m) => a + m.tokens, 0)
    const seconds = lines.reduce((a, m) => a + m.time.total, 0)
    const split = { sample: 0, reward: 0, loss: 0, update: 0 }
    for (const m of lines) for (const k of Object.keys(split)) split[k] += m.time[k]
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'))
    return { steps: lines.length, tokens, grpoSeconds: seconds, tokensPerSecond: tokens / seconds, split, heldOut: summary.heldOut, wall, finalReward: lines.at(-1).rewardMean }
  }
  const one = run(job, join(work, 'one'))
  const two = run(['launch', '--nproc', '2', ...job], join(work, 'two'))
  train = { steps: Number(steps), batch: 16, one, two }
  console.log(`\nmain job, ${steps} GRPO steps x 16 prompts x 5 completions (cpu):`)
  for (const [name, r] of [['1 process', one], ['2 ranks', two]]) {
    console.log(`  ${name.padEnd(10)} ${r.tokensPerSecond.toFixed(0).padStart(6)} tokens/s  (${r.tokens} tokens in ${r.grpoSeconds.toFixed(1)} s; sample ${r.split.sample.toFixed(1)} s, loss ${r.split.loss.toFixed(1)} s, update ${r.split.update.toFixed(1)} s; held-out ${r.heldOut.beforeGrpo.toFixed(3)} -> ${r.heldOut.afterGrpo.toFixed(3)})`)
  }
}

machine.loadAfter = loadavg()[0]
const stamp = new Date().toISOString().slice(0, 10)
mkdirSync(flags.out, { recursive: true })
const file = join(flags.out, `distributed-${stamp}.json`)
writeFileSync(file, JSON.stringify({ machine, mpi: mpiVersion, allReduce: { node: nodeRows, c: cRows, cNonblocking: cNonblockingRows, trials: { node: nodeTrials, c: cTrials, cNonblocking: cNonblockingTrials } }, train }, null, 2) + '\n')
console.log(`\nload average ${machine.loadBefore.toFixed(1)} before, ${machine.loadAfter.toFixed(1)} after; wrote ${file}`)
rmSync(work, { recursive: true, force: true })

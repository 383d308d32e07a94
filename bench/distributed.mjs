#!/usr/bin/env node
/**
 * Data-parallel benchmarks on this machine (results in bench/distributed.md):
 *
 * 1. All-reduce bandwidth over MPI on loopback (2 ranks, f32 sum, 4 B to 64 MiB): node-grpo's allReduce (a
 *    Promise, the communication thread, MPI_Iallreduce polled against its deadline) against an OSU-style C program
 *    that calls MPI_Allreduce directly (bench/distributed/allreduce.c, compiled with mpicc when present; Debian
 *    ships no OSU micro-benchmarks package). Both report latency, algorithm bandwidth (bytes / time) and bus
 *    bandwidth (algbw x 2(n-1)/n, the data each rank must send and receive in a ring all-reduce).
 * 2. The main job (node-grpo train) on 1 process and on 2 ranks (node-grpo launch --nproc 2) with the same global
 *    batch and seed: tokens per second and the time split.
 *
 *   node bench/distributed.mjs [--steps 40] [--sizes 4,1024,...] [--skip-train] [--out bench/results]
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
    await distributed.barrier()
    const start = performance.now()
    for (let i = 0; i < reps; i++) await distributed.allReduce(t)
    const ms = (performance.now() - start) / reps
    // The slowest rank's time is the collective's time.
    const [worst] = await distributed.allReduceValues([ms], { op: 'max' })
    rows.push({ bytes: n * 4, ms: worst, reps })
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
  console.log('  bytes        latency      algbw GB/s   busbw GB/s')
  for (const r of rows) console.log(`  ${String(r.bytes).padStart(9)}  ${r.ms.toFixed(4).padStart(10)} ms  ${(r.bytes / r.ms / 1e6).toFixed(3).padStart(10)}  ${busbw(r.bytes, r.ms, 2).toFixed(3).padStart(10)}`)
}

// 1a. node-grpo's allReduce, 2 ranks
const nodeOut = join(work, 'node.json')
const nodeRun = spawnSync('mpirun', ['-np', '2', ...mpiFlags, process.execPath, fileURLToPath(import.meta.url), '--rank', nodeOut, '--sizes', SIZES.join(',')], { encoding: 'utf8', env: { ...process.env, GRPO_NUM_THREADS: '1' } })
if (nodeRun.status !== 0) throw new Error(`node-grpo all-reduce run failed: ${nodeRun.stderr}`)
const nodeRows = JSON.parse(readFileSync(nodeOut, 'utf8'))
table(nodeRows, 'node-grpo distributed.allReduce (f32 sum, 2 ranks, loopback)')

// 1b. the OSU-style C baseline
let cRows = null
const mpicc = spawnSync('mpicc', ['-O2', '-o', join(work, 'allreduce'), join(root, 'bench', 'distributed', 'allreduce.c')], { encoding: 'utf8' })
if (mpicc.status === 0) {
  const c = spawnSync('mpirun', ['-np', '2', ...mpiFlags, join(work, 'allreduce'), ...SIZES.map(String)], { encoding: 'utf8' })
  if (c.status !== 0) throw new Error(`C baseline failed: ${c.stderr}`)
  cRows = c.stdout.trim().split('\n').map((line) => {
    const [bytes, ms, reps] = line.trim().split(/\s+/).map(Number)
    return { bytes, ms, reps }
  })
  table(cRows, 'MPI_Allreduce from C (OSU-style, bench/distributed/allreduce.c)')
} else {
  console.log(`\n(no mpicc: the C baseline is skipped: ${mpicc.error?.message ?? mpicc.stderr})`)
}

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
writeFileSync(file, JSON.stringify({ machine, mpi: mpiVersion, allReduce: { node: nodeRows, c: cRows }, train }, null, 2) + '\n')
console.log(`\nload average ${machine.loadBefore.toFixed(1)} before, ${machine.loadAfter.toFixed(1)} after; wrote ${file}`)
rmSync(work, { recursive: true, force: true })

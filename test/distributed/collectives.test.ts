/**
 * The collectives (lib/distributed.ts over csrc/dist): in this process as a world of one (what they do there,
 * and every argument error), then as 2 and 3 MPI ranks over loopback, each rank's results against the
 * single-process result computed here from every rank's inputs (in double precision).
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import * as distributed from '../../lib/distributed.js'
import { GrpoError } from '../../lib/errors.js'
import { Tensor } from '../../lib/tensor.js'
import { SEED } from '../helpers/random.js'
import { checkRanks } from './collectives-check.js'
import { mpirun, needsMpi } from './mpi.js'

const worker = join(import.meta.dirname, 'collectives-worker.ts')

// Before init: the launcher's environment is read at every info() until MPI starts.
t.test('assignDevice: one GPU per local rank', async (t) => {
  const env = { ...process.env }
  t.teardown(() => {
    for (const k of ['OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_SIZE', 'CUDA_VISIBLE_DEVICES', 'GRPO_DIST_DEVICE']) {
      if (env[k] === undefined) delete process.env[k]
      else process.env[k] = env[k]
    }
  })
  // Pretend to be local rank 1 of 2 on this machine, rank 3 of 4 in all.
  Object.assign(process.env, { OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2' })
  const i = distributed.info()
  t.match(i, { launcher: 'mpirun (Open MPI)', launchedSize: 4 })
  t.equal(distributed.launched(), true)
  process.env.CUDA_VISIBLE_DEVICES = '4,6'
  t.equal(distributed.assignDevice(), '6', 'the local rank-th visible device')
  t.equal(process.env.CUDA_VISIBLE_DEVICES, '6')
  t.equal(distributed.assignDevice(), null, 'a single visible device is left alone')
  process.env.CUDA_VISIBLE_DEVICES = '0,1'
  process.env.GRPO_DIST_DEVICE = 'shared'
  t.equal(distributed.assignDevice(), null, 'GRPO_DIST_DEVICE=shared opts out')
  delete process.env.GRPO_DIST_DEVICE
  process.env.CUDA_VISIBLE_DEVICES = '0'
  Object.assign(process.env, { OMPI_COMM_WORLD_LOCAL_SIZE: '3', OMPI_COMM_WORLD_LOCAL_RANK: '2' })
  process.env.CUDA_VISIBLE_DEVICES = '0,1'
  const warn = t.capture(process.stderr, 'write')
  t.equal(distributed.assignDevice(), '0', 'more ranks than GPUs: shared round-robin')
  t.match(warn.args()[0]?.[0], /3 ranks on this machine share 2 GPUs/)
})

t.test('a lone process is a world of one', async (t) => {
  const before = distributed.info()
  t.equal(before.launcher, 'none')
  t.equal(before.launchedSize, 1)
  t.equal(distributed.launched(), false)
  t.type(before.mpi.available, 'boolean')
  t.ok(before.mpi.available || before.mpi.reason.length > 0, 'MPI is available or says why not')
  t.ok(before.nccl.available || /libcuda|NCCL/.test(before.nccl.reason), `NCCL: ${before.nccl.reason || 'available'}`)
  t.throws(() => distributed.allReduceSync(Tensor.from([1], [1])), { code: 'ERR_GRPO_INVALID_ARG', message: /distributed.init\(\) first/ }, 'collectives need init')
  const world = distributed.init({ timeout: 30 })
  t.match(world, { initialized: true, rank: 0, size: 1, localRank: 0, localSize: 1, timeout: 30, broken: false })
  t.same(distributed.world(), { rank: 0, size: 1 })
  t.equal(distributed.init().timeout, 30, 'init is idempotent and keeps the timeout')
  t.equal(distributed.assignDevice(), null, 'a lone process keeps its devices')

  using a = Tensor.from([1, -2, 3], [3])
  await distributed.allReduce(a)
  t.same(await a.toArray(), Float32Array.from([1, -2, 3]), 'allReduce of one rank: unchanged')
  await distributed.allReduce([a], { op: 'max' })
  await distributed.broadcast([a], { root: 0 })
  t.same(await a.toArray(), Float32Array.from([1, -2, 3]), 'broadcast of one rank: unchanged')
  using out = Tensor.zeros([3])
  await distributed.allGather(a, out)
  t.same(await out.toArray(), Float32Array.from([1, -2, 3]), 'allGather of one rank: a copy')
  using x = Tensor.zeros([1])
  using y = Tensor.zeros([2])
  await distributed.allGather(a, [x, y])
  t.same([...(await x.toArray()), ...(await y.toArray())], [1, -2, 3], 'into several outputs')
  using b = Tensor.from([1.5, 2.5, 3.5], [3], { dtype: 'bf16' })
  using r = Tensor.zeros([3], { dtype: 'bf16' })
  await distributed.reduceScatter([b], r)
  t.same(Array.from(await r.toFloat32Array()), [1.5, 2.5, 3.5], 'reduceScatter of one rank: a copy')
  t.same(Array.from(await distributed.allReduceValues([1, 2])), [1, 2])
  t.same(await distributed.allGatherJSON({ a: 1 }), [{ a: 1 }])
  await distributed.barrier()
  distributed.barrierSync()
  t.ok(distributed.info().collectives >= 8, 'collectives are counted')
})

t.test('argument errors', async (t) => {
  distributed.init()
  using f = Tensor.from([1, 2], [2])
  using i = Tensor.from(Int32Array.from([1, 2]), [2])
  using h = Tensor.from([1, 2], [2], { dtype: 'f16' })
  const invalid = { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG' }
  await t.rejects(distributed.allReduce(i), { code: 'ERR_GRPO_DTYPE', message: /f32 or bf16 tensors/ })
  await t.rejects(distributed.allReduce(h), { code: 'ERR_GRPO_DTYPE' }, 'f16 sums are not offered')
  await t.rejects(distributed.allReduce([f, i]), { code: 'ERR_GRPO_DTYPE', message: /one dtype per call/ })
  await t.rejects(distributed.allReduce([]), invalid)
  await t.rejects(distributed.allReduce([f, 3 as unknown as Tensor]), { ...invalid, message: /tensors\[1\]/ })
  await t.rejects(distributed.allReduce(f, { op: 'avg' as 'sum' }), { ...invalid, message: /'sum', 'max', 'min'/ })
  await t.rejects(distributed.allReduce(f, { opp: 'sum' } as never), { ...invalid, message: /did you mean op/ })
  await t.rejects(distributed.broadcast(f, { root: 1 }), { ...invalid, message: /a rank in \[0, 1\)/ })
  await t.rejects(distributed.broadcast(f, { root: -1 }), invalid)
  t.throws(() => distributed.broadcastSync(f, { root: 1 }), invalid)
  using three = Tensor.zeros([3])
  await t.rejects(distributed.allGather(f, three), { code: 'ERR_GRPO_SHAPE', message: /2 values in all/ })
  await t.rejects(distributed.allGather(f, Tensor.zeros([2], { dtype: 'bf16' })), { code: 'ERR_GRPO_DTYPE' })
  await t.rejects(distributed.reduceScatter(three, f), { code: 'ERR_GRPO_SHAPE' })
  const gone = Tensor.from([1], [1])
  gone.dispose()
  await t.rejects(distributed.allReduce(gone), { code: 'ERR_GRPO_DISPOSED' })
  await t.rejects(distributed.allReduceValues('12' as never), invalid)
  t.throws(() => distributed.allReduceValuesSync([1, 'x' as never]), { ...invalid, message: /values\[1\]/ })
  await t.rejects(distributed.allGatherBytes([1] as never), invalid)
  await t.rejects(distributed.allGatherJSON(10n as never), { ...invalid, message: /JSON-serializable/ })
  await t.rejects(distributed.allGatherJSON(undefined), invalid)
  t.throws(() => distributed.init({ timeout: -1 }), invalid)
  t.throws(() => distributed.init({ timout: 5 } as never), { ...invalid, message: /did you mean timeout/ })
  const saved = process.env.GRPO_DIST_TIMEOUT
  process.env.GRPO_DIST_TIMEOUT = 'soon'
  t.throws(() => distributed.init(), { ...invalid, message: /GRPO_DIST_TIMEOUT/ })
  process.env.GRPO_DIST_TIMEOUT = '45'
  t.equal(distributed.init().timeout, 45, 'GRPO_DIST_TIMEOUT sets the timeout')
  if (saved === undefined) delete process.env.GRPO_DIST_TIMEOUT
  else process.env.GRPO_DIST_TIMEOUT = saved
  t.ok(new GrpoError('x', 'ERR_GRPO_DIST_TIMEOUT') instanceof Error)
})

t.test('a launch that MPI cannot serve fails with ERR_GRPO_DIST_UNAVAILABLE', async (t) => {
  // The child compiles the TypeScript sources through tap's loader: minutes on a loaded 2-core machine.
  const child = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, [...process.execArgv, join(import.meta.dirname, 'init-child.ts')], { encoding: 'utf8', timeout: 900_000, env: { ...process.env, ...env } })
    const last = r.stdout.trim().split('\n').at(-1) ?? ''
    if (!last.startsWith('{')) throw new Error(`init-child printed no outcome (status ${r.status}, signal ${r.signal}, error ${r.error?.message}): ${r.stderr.slice(-2000)}`)
    return JSON.parse(last)
  }
  const noLibrary = child({ OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_RANK: '0', GRPO_MPI_LIBRARY: join(tmpdir(), 'no-such-libmpi.so') })
  t.match(noLibrary, { ok: false, code: 'ERR_GRPO_DIST_UNAVAILABLE', info: { available: false } })
  t.match(noLibrary.message, /Expected an MPI library for a job of 2 processes \(launcher: mpirun \(Open MPI\)\) but received none: no usable MPI library \(.*no-such-libmpi\.so.*\)\. Install Open MPI/)
  if (needsMpi().skip === undefined) {
    // srun without --mpi=pmix: every process initializes alone and would train on its own.
    const alone = child({ SLURM_STEP_NUM_TASKS: '2', SLURM_PROCID: '0', SLURM_LOCALID: '0', SLURM_NODEID: '0', SLURM_STEP_TASKS_PER_NODE: '2' })
    t.match(alone, { ok: false, code: 'ERR_GRPO_DIST_UNAVAILABLE', message: /Expected MPI to see the 2 processes srun \(Slurm\) started but received a world of 1: .*srun needs --mpi=pmix/ })
  }
})

for (const size of [2, 3]) {
  t.test(`${size} ranks: every collective equals the single-process result`, needsMpi(), async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'node-grpo-collectives-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const run = await mpirun(size, worker, [String(SEED), dir])
    t.equal(run.code, 0, `mpirun exits 0 (seed ${SEED}) ${run.code === 0 ? '' : run.stderr.slice(-2000)}`)
    await checkRanks(t, dir, size, SEED)
  })
}

/**
 * Collectives on cuda tensors (the GPU check: `npm run test:gpu`, or `npm test` on a machine with a GPU; skipped
 * elsewhere): the collectives worker with GRPO_TEST_DEVICE=cuda, checked against the single-process result,
 *   - as a world of one, over NCCL when libnccl.so.2 loads (what one GPU can check of the NCCL path: the
 *     communicator from a unique id, grouped all-reduce and broadcast, all-gather and reduce-scatter with the
 *     device staging of several tensors, bf16), else through host memory;
 *   - as 2 ranks sharing the GPU, through host memory over MPI (NCCL switched off: it needs one GPU per rank);
 *   - as 2 ranks over NCCL when the machine has 2 GPUs or more.
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import * as backend from '../../lib/backend.js'
import * as distributed from '../../lib/distributed.js'
import { SEED } from '../helpers/random.js'
import { checkRanks } from './collectives-check.js'
import { launcher, mpirun, skipReason } from './mpi.js'

const worker = join(import.meta.dirname, 'collectives-worker.ts')
const cuda = backend.info().cuda
const noGpu = cuda.available ? false : `no usable CUDA device (${cuda.reason})`
const nccl = distributed.info().nccl

t.test(`cuda tensors, a world of one (${nccl.available ? `NCCL ${nccl.version}` : 'host memory: ' + nccl.reason})`, { skip: noGpu }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'node-grpo-cuda1-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const run = spawnSync(process.execPath, [...process.execArgv, worker, String(SEED), dir], { encoding: 'utf8', timeout: 600_000, env: { ...process.env, GRPO_TEST_DEVICE: 'cuda' } })
  t.equal(run.status, 0, run.stderr.slice(-2000))
  await checkRanks(t, dir, 1, SEED)
})

t.test('cuda tensors on 2 ranks of one GPU, through host memory over MPI', { skip: noGpu || (launcher ? false : skipReason) }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'node-grpo-cuda2-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const run = await mpirun(2, worker, [String(SEED), dir], { env: { GRPO_TEST_DEVICE: 'cuda', GRPO_NCCL_LIBRARY: join(dir, 'no-nccl.so'), GRPO_DIST_DEVICE: 'shared' } })
  t.equal(run.code, 0, run.stderr.slice(-2000))
  await checkRanks(t, dir, 2, SEED)
})

t.test('cuda tensors on 2 ranks over NCCL, one GPU each', { skip: noGpu || (launcher ? false : skipReason) || (cuda.devices.length < 2 ? 'fewer than 2 GPUs' : false) || (nccl.available ? false : nccl.reason) }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'node-grpo-cuda-nccl-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // Each rank sees one GPU (what assignDevice does in the CLI).
  const run = await mpirun(2, join(import.meta.dirname, 'cuda-rank.ts'), [String(SEED), dir], { env: { GRPO_TEST_DEVICE: 'cuda' } })
  t.equal(run.code, 0, run.stderr.slice(-2000))
  await checkRanks(t, dir, 2, SEED)
})

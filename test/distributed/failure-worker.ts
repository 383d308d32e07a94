/**
 * One rank of the failure test: after a first collective succeeds, rank 1 fails in the way argv[2] names while
 * rank 0 enters the next collective (the middle of a training step):
 *   kill  — rank 1 dies at once (SIGKILL: no handler, no MPI_Finalize), as a crashed process does;
 *   exit  — rank 1 calls process.exit(3) (its exit hook aborts the MPI job with status 3);
 *   stall — rank 1 stops taking part (sleeps past the timeout), as a hung process does.
 * Rank 0 reports what it got on stderr.
 */
import * as distributed from '../../lib/distributed.js'
import { Tensor } from '../../lib/tensor.js'

const [mode, timeoutText] = process.argv.slice(2)
// MPI_Init waits for every rank to start, which takes minutes on a loaded machine (each rank compiles the
// TypeScript sources): a long timeout until the first collective has seen every rank, then the short one.
const world = distributed.init({ timeout: 900 })
using t = Tensor.from(new Float32Array(4096).fill(1), [4096])
await distributed.allReduce(t)
distributed.init({ timeout: Number(timeoutText) })
const started = performance.now()
if (world.rank === 1) {
  // The test measures from here how long the job takes to end (rank startup is slow and varies with the load).
  process.stderr.write(`rank 1 fails at ${Date.now()}\n`)
  if (mode === 'kill') process.kill(process.pid, 'SIGKILL')
  if (mode === 'exit') process.exit(3)
  if (mode === 'stall') await new Promise((resolve) => setTimeout(resolve, 120_000))
}
try {
  await distributed.allReduce(t)
  await distributed.allReduce(t)
  process.stderr.write(`rank ${world.rank}: no error\n`)
} catch (error) {
  const e = error as { code?: string; message?: string }
  process.stderr.write(`rank ${world.rank} failed after ${((performance.now() - started) / 1000).toFixed(1)} s: ${e.code}: ${e.message}\n`)
  // A later collective fails at once: the world is broken.
  await distributed.barrier().catch((later: { code?: string; message?: string }) => process.stderr.write(`rank ${world.rank} then: ${later.code}: ${later.message}\n`))
  process.exitCode = 1
}

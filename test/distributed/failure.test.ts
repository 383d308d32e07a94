/**
 * A rank that exits or hangs in the middle of a step makes the others fail with a clear error within the
 * timeout, never a hang: a crashed or exiting rank is noticed by the launcher, which stops the others (they say
 * so: "stopped by SIGTERM … in allReduce"); a rank that stops taking part makes the others' collective fail
 * with ERR_GRPO_DIST_TIMEOUT after the timeout, and their exit ends the job (MPI_Abort).
 */
import { join } from 'node:path'
import t from 'tap'
import { mpirun, needsMpi, type RankRun } from './mpi.js'

const worker = join(import.meta.dirname, 'failure-worker.ts')
const TIMEOUT = 6 // seconds a collective waits in these runs

/** Seconds from rank 1's failure to the launcher's exit. */
function sinceFailure(run: RankRun): number {
  const at = /rank 1 fails at (\d+)/.exec(run.stderr)
  return at ? (run.ended - Number(at[1])) / 1000 : Infinity
}

t.test('a rank killed mid-step: the launcher stops the others, which say where they were', needsMpi(), async (t) => {
  const run = await mpirun(2, worker, ['kill', String(TIMEOUT)], { timeoutMs: 900_000 })
  t.not(run.code, 0, 'the job fails')
  t.match(run.stderr, /rank 0 of 2 stopped by SIGTERM( while in allReduce)?: the launcher ends the job when a rank fails or exits early/, 'rank 0 says it was stopped, and in which collective')
  t.notMatch(run.stderr, /rank 0: no error/)
  t.ok(sinceFailure(run) < 120, `ended ${sinceFailure(run).toFixed(1)} s after the failure`)
})

t.test('a rank that exits mid-step ends the job with its status', needsMpi(), async (t) => {
  const run = await mpirun(2, worker, ['exit', String(TIMEOUT)], { timeoutMs: 900_000 })
  t.equal(run.code, 3, "the job ends with the exiting rank's status (its exit hook called MPI_Abort)")
  t.match(run.stderr, /rank 0 of 2 stopped by SIGTERM|rank 0 failed after/, 'rank 0 is stopped or fails, and says so')
  t.ok(sinceFailure(run) < 120, `ended ${sinceFailure(run).toFixed(1)} s after the failure`)
})

t.test('a rank that stops taking part: the others time out with ERR_GRPO_DIST_TIMEOUT', needsMpi(), async (t) => {
  const run = await mpirun(2, worker, ['stall', String(TIMEOUT)], { timeoutMs: 900_000 })
  t.equal(run.code, 1, 'the job fails with the exit status of the rank that timed out')
  const m = /rank 0 failed after ([\d.]+) s: ERR_GRPO_DIST_TIMEOUT: Expected every rank to join allReduce #2 \(1 tensor, 4096 f32 values on cpu\) within 6 s \(rank 0 of 2\) but received no completion: a rank exited, stalls, or called a different collective/.exec(run.stderr)
  t.ok(m, m ? "rank 0's error names the collective, the timeout and the likely causes" : `rank 0's error is missing or unclear:\n${run.stderr.slice(-1500)}`)
  if (m) t.ok(Number(m[1]) >= TIMEOUT - 0.5 && Number(m[1]) < TIMEOUT + 30, `after ${m[1]} s (timeout ${TIMEOUT} s)`)
  t.match(run.stderr, /rank 0 then: ERR_GRPO_DIST: Expected a working world for barrier #3 but received one broken by an earlier collective/, 'later collectives fail at once')
  t.match(run.stderr, /MPI_ABORT|rank 1 of 2 stopped by SIGTERM/, "rank 0's exit ends the job: rank 1 does not hang on")
  t.ok(sinceFailure(run) < 120, `ended ${sinceFailure(run).toFixed(1)} s after rank 1 stopped, before its 120 s sleep ends`)
})

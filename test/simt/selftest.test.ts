/**
 * The SIMT executor's own self-test (cuda/simt/selftest.cu): barriers, shuffles, atomics, shared memory,
 * bit-exact bf16/f16, races and divergent barriers detected. Built with the host compiler by its Makefile.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

t.test('make -C cuda/simt test', async (t) => {
  const run = spawnSync('make', ['-s', '-C', join(root, 'cuda', 'simt'), 'test'], { encoding: 'utf8', timeout: 600_000 })
  const output = `${run.stdout}\n${run.stderr}`
  t.equal(run.status, 0, 'the self-test builds and passes', { output: output.slice(-4000) })
  const summary = output.match(/(\d+) passed, (\d+) failed/)
  t.ok(summary, 'it prints its summary')
  t.equal(summary?.[2], '0', `no failures (${summary?.[0]})`)
  t.ok(Number(summary?.[1]) >= 20, 'it ran its checks')
})

/**
 * Fuzz: generated arguments straight into the native binding, in child processes (issue 18): the binding
 * checks what protects memory by itself, so no argument, however wrong, may crash the process or fail with
 * anything but a GrpoError.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { FUZZ_CASES, SEED } from './harness.js'

const script = fileURLToPath(new URL('./native-child.ts', import.meta.url))

t.test(`the native binding with generated arguments: GrpoErrors only, no crash (seed ${SEED})`, async (t) => {
  const per = Math.max(200, Math.floor(FUZZ_CASES / 3))
  for (const [k, seed] of [SEED, (SEED ^ 0x9e3779b9) >>> 0].entries()) {
    const r = spawnSync(process.execPath, [...process.execArgv, script, String(seed), String(per)], { encoding: 'utf8', timeout: 600_000, env: { ...process.env, GRPO_CPU_CACHE_MB: '64' } })
    t.same([r.status, r.signal], [0, null], `child ${k} (seed ${seed}) exited cleanly ${r.stderr.slice(-1500)}`)
    let report: { cases: number; failures: string[] } = { cases: 0, failures: ['no report'] }
    try {
      report = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '')
    } catch {
      // reported by the assertion below
    }
    t.same(report.failures, [], `child ${k}: ${report.cases} calls, every failure a GrpoError`)
  }
})

/**
 * The ops suite again, on the simt backend: the CUDA kernel source of cuda/ executed by the SIMT executor.
 * Each file of test/ops runs in its own process (the backend is chosen once per process) as a subtest here,
 * so `npm test` reports both runs. The option grid is scaled down (GRPO_TEST_SCALE, default 0.25 here)
 * because every CUDA thread is a fiber on the CPU; the edge cases of docs/math.md §7 (V = 262144, L = 70000) still run.
 */
import t from 'tap'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backend } from '../../lib/index.js'

const opsDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'ops')
const files = readdirSync(opsDir).filter((f) => f.endsWith('.test.ts')).sort()
const env = { ...process.env, GRPO_BACKEND: 'simt', GRPO_TEST_SCALE: process.env.GRPO_SIMT_TEST_SCALE ?? '0.25' }

t.ok(files.length >= 5, `found the ops suite (${files.join(', ')})`)
const compiled = backend.info().compiled
if (!compiled.includes('simt')) {
  // A build with SIMT=OFF (a prebuilt binary) has no simt backend to run the suite on.
  t.skip(`the simt backend is not built into this binary (compiled: ${compiled.join(', ')}; build with SIMT=ON)`)
}
for (const file of compiled.includes('simt') ? files : []) {
  // Same node flags as this process: tap's TypeScript loader comes with them.
  t.spawn(process.execPath, [...process.execArgv, join(opsDir, file)], { env, timeout: 900_000 }, `${file} on simt`)
}

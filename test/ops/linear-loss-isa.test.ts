/**
 * The fused linear loss suite (linear-grpo-loss.test.ts) once more with the tile loops (and the GEMM) of each other
 * instruction set this CPU runs: GRPO_CPU_ISA=avx2 and generic, each in its own process, so an AVX-512 machine
 * still tests the loops that AVX2-only CPUs run. The 151,936-token case is left to the default run.
 */
import t from 'tap'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'
import { backend } from '../../lib/index.js'

const here = dirname(fileURLToPath(import.meta.url))
const info = backend.info()

function cpuFlags(): Set<string> {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'))
    return new Set((line ?? '').split(':')[1]?.trim().split(/\s+/) ?? [])
  } catch {
    return new Set()
  }
}

if (info.active !== 'cpu') {
  t.pass(`backend ${info.active}: the CPU tile loops are not in use`)
} else {
  const flags = cpuFlags()
  // a lower ISA than the default only: the default run covers the default one
  const lower: Record<string, boolean> = { avx2: flags.has('avx2') && flags.has('avx512f'), generic: flags.has('avx2') }
  for (const isa of ['avx2', 'generic']) {
    if (!lower[isa]) continue
    t.spawn(process.execPath, [...process.execArgv, join(here, 'linear-grpo-loss.test.ts')],
      { env: { ...process.env, GRPO_CPU_ISA: isa, GRPO_TEST_SKIP_BIG: '1' }, timeout: 900_000 },
      `linear-grpo-loss.test.ts with GRPO_CPU_ISA=${isa}`)
  }
}

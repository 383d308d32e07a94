/**
 * The row-kernel tests of the ops suite again, once per instruction set this CPU runs besides the one it
 * picks by itself (GRPO_CPU_ISA=avx512 | avx2 | generic in a child process): the CPU backend carries a copy of
 * its row kernels per instruction set (csrc/cpu/kernels_*.cc), and a machine of another kind (AMD Zen 4,
 * an older Xeon, an ARM server) runs a copy this one never would. Each file runs in its own process; the
 * option grid is scaled down (GRPO_TEST_SCALE 0.25) and the big edge cases skipped since the point is the
 * kernels' code paths, which the small shapes and the chunk-layout tests reach; every gradient is written
 * with streaming stores (GRPO_CPU_STREAM_BYTES=0).
 */
import t from 'tap'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backend } from '../../lib/index.js'
import { native } from '../../lib/native.js'

const opsDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'ops')
const files = ['token-logprobs.test.ts', 'grpo-loss.test.ts', 'known-failures.test.ts', 'row-layouts.test.ts', 'linear-grpo-loss.test.ts']
const ALL = ['avx512-bf16', 'avx512', 'avx2', 'generic']

function runs(isa: string): boolean {
  try {
    native().kernelExp2(new Float32Array(1), { isa })
    return true
  } catch {
    return false
  }
}

const active = backend.info().cpu.isa
const others = ALL.filter((isa) => isa !== active && runs(isa))
t.ok(runs('generic'), 'the generic kernels run everywhere')
t.comment(`active: ${active}; also testing: ${others.join(', ') || 'none'}`)
if (backend.info().active !== 'cpu') {
  t.comment(`backend ${backend.info().active}: the CPU row kernels are not what the ops run on; skipped`)
} else {
  for (const isa of others) {
    // Every gradient with streaming stores (GRPO_CPU_STREAM_BYTES=0: the store intrinsics differ per
    // instruction set), on the small shapes, so the big edge cases are left to the main run.
    const env = { ...process.env, GRPO_CPU_ISA: isa, GRPO_CPU_STREAM_BYTES: '0', GRPO_TEST_SKIP_BIG: '1', GRPO_TEST_SCALE: process.env.GRPO_ISA_TEST_SCALE ?? '0.25' }
    for (const file of files) {
      t.spawn(process.execPath, [...process.execArgv, join(opsDir, file)], { env, timeout: 900_000 }, `${file} with GRPO_CPU_ISA=${isa}`)
    }
  }
}

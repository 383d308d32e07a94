/**
 * The linear suite (linear.test.ts) once more for every CPU GEMM micro-kernel this machine can run besides the
 * default one: each in its own process with GRPO_CPU_ISA capping the dispatch (generic, avx2, avx512, avx512-bf16),
 * so AMX machines still test the AVX-512 and AVX2 kernels that Zen 4 and older CPUs run, and the other way round
 * as far as the hardware allows. CPU backend only (under GRPO_BACKEND=simt the CPU kernels are not used).
 */
import t from 'tap'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'
import { backend } from '../../lib/index.js'

const here = dirname(fileURLToPath(import.meta.url))
const info = backend.info()
const defaults = info.cpu.gemm

// The instruction sets this CPU has, from the kernel's view of it (Linux); elsewhere only the baseline is sure.
function cpuInfoLine(key: string): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith(key))?.split(':')[1]?.trim() ?? ''
  } catch {
    return ''
  }
}
function cpuFlags(): Set<string> {
  return new Set(cpuInfoLine('flags').split(/\s+/).filter(Boolean))
}

if (info.active !== 'cpu') {
  t.pass(`backend ${info.active}: the CPU micro-kernels are not in use`)
} else {
  const flags = cpuFlags()
  const has: Record<string, boolean> = {
    // vdpbf16ps is the default bf16 kernel only on AMD without AMX; elsewhere GRPO_CPU_ISA=avx512-bf16 selects it
    'avx512-bf16': flags.has('avx512_bf16') && (flags.has('amx_bf16') || cpuInfoLine('vendor_id') !== 'AuthenticAMD'),
    avx512: flags.has('avx512f') && (flags.has('avx512_bf16') || flags.has('amx_bf16')),
    avx2: flags.has('avx2') && flags.has('avx512f'),
    generic: flags.has('avx2'),
  }
  t.comment(`default kernels: f32 ${defaults.f32}, bf16 ${defaults.bf16}`)
  for (const isa of ['avx512-bf16', 'avx512', 'avx2', 'generic']) {
    if (!has[isa]) continue
    t.spawn(process.execPath, [...process.execArgv, join(here, 'linear.test.ts')],
      { env: { ...process.env, GRPO_CPU_ISA: isa, GRPO_TEST_SCALE: process.env.GRPO_TEST_SCALE ?? '0.5' }, timeout: 900_000 },
      `linear.test.ts with GRPO_CPU_ISA=${isa}`)
  }
}

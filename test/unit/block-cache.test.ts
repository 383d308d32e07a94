/**
 * The host block cache (csrc/core/block_cache.h, also the CUDA allocator's): freed host blocks of 64 KiB or more are
 * kept by size and handed out again for the same size or up to 1/8 less; a full cache frees its oldest blocks
 * first; releaseMemoryCache() empties it; GRPO_CPU_CACHE_MB bounds it (0 turns it off).
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Tensor, memoryInfo, releaseMemoryCache } from '../../lib/index.js'

const MB = 1 << 20
const cached = () => memoryInfo().cpu.cachedBytes

t.test('freed blocks are reused for the same size and up to 1/8 less', async (t) => {
  releaseMemoryCache()
  t.equal(cached(), 0, 'empty after releaseMemoryCache')
  Tensor.zeros([(4 * MB) / 4], { device: 'cpu' }).dispose()
  t.equal(cached(), 4 * MB, 'a freed 4 MB tensor is kept')
  const small = Tensor.zeros([(32 * 1024) / 4], { device: 'cpu' })
  t.equal(cached(), 4 * MB, 'a small tensor is not served from the cache')
  small.dispose()
  t.equal(cached(), 4 * MB, 'and is not kept either (below 64 KiB)')
  Tensor.from(new Float32Array((128 * 1024) / 4).fill(7), [(128 * 1024) / 4]).dispose()
  t.equal(cached(), 4 * MB + 128 * 1024, 'a freed 128 KiB tensor is kept (a small GEMM output, reallocated every call)')
  const again = Tensor.zeros([(128 * 1024) / 4], { device: 'cpu' })
  t.equal(cached(), 4 * MB, 'and taken again for the same size')
  t.ok((again.toArraySync() as Float32Array).every((v) => v === 0), 'zeros from a reused block are zeros')
  again.dispose()
  releaseMemoryCache()
  Tensor.zeros([(4 * MB) / 4], { device: 'cpu' }).dispose()
  const same = Tensor.zeros([(4 * MB) / 4], { device: 'cpu' })
  t.equal(cached(), 0, 'the same size takes the cached block')
  same.dispose()
  Tensor.zeros([(18 * MB) / 4], { device: 'cpu' }).dispose()
  t.equal(cached(), 22 * MB, 'a freed 18 MB tensor is kept too')
  const shorter = Tensor.zeros([(16 * MB) / 4], { device: 'cpu' })
  t.equal(cached(), 4 * MB, 'a 16 MB request takes the 18 MB block (at most 1/8 larger)')
  shorter.dispose()
  t.equal(cached(), 22 * MB, 'and it comes back as the 18 MB block it is')
  const muchSmaller = Tensor.zeros([(2 * MB) / 4], { device: 'cpu' })
  t.equal(cached(), 22 * MB, 'a 2 MB request does not take the 4 MB block (more than 1/8 larger)')
  muchSmaller.dispose()
  t.equal(cached(), 24 * MB, 'all three kept')
  releaseMemoryCache()
  t.equal(cached(), 0, 'releaseMemoryCache frees them')
})

t.test('a full cache frees its oldest blocks; GRPO_CPU_CACHE_MB=0 keeps nothing', async (t) => {
  const script = fileURLToPath(new URL('./block-cache-child.ts', import.meta.url))
  const run = (mb: string) => spawnSync(process.execPath, [...process.execArgv, script], { env: { ...process.env, GRPO_CPU_CACHE_MB: mb }, encoding: 'utf8' })
  const bounded = run('8')
  t.equal(bounded.status, 0, bounded.stderr)
  t.same(JSON.parse(bounded.stdout), [6 * MB, 6 * MB, 4 * MB, 4 * MB], 'GRPO_CPU_CACHE_MB=8: 6 MB kept, then replaced by 4 MB')
  const off = run('0')
  t.equal(off.status, 0, off.stderr)
  t.same(JSON.parse(off.stdout), [0, 0, 0, 0], 'GRPO_CPU_CACHE_MB=0: nothing kept')
})

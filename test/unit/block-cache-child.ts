/**
 * Run by block-cache.test.ts under GRPO_CPU_CACHE_MB=8: frees a 6 MB and then a 4 MB host tensor and prints the
 * cached bytes after each step, as JSON.
 */
import { Tensor, memoryInfo } from '../../lib/index.js'

const MB = 1 << 20
const cached = () => memoryInfo().cpu.cachedBytes
const steps: number[] = []
Tensor.zeros([(6 * MB) / 4], { device: 'cpu' }).dispose()
steps.push(cached()) // the 6 MB block is kept
const b = Tensor.zeros([(4 * MB) / 4], { device: 'cpu' }) // 6 MB is more than 1/8 above 4 MB: a fresh block
steps.push(cached())
b.dispose()
steps.push(cached()) // 6 + 4 > 8: the oldest block (6 MB) goes, the 4 MB one stays
Tensor.zeros([(4 * MB) / 4], { device: 'cpu' }).dispose() // reuses the cached 4 MB block, then gives it back
steps.push(cached())
process.stdout.write(JSON.stringify(steps) + '\n')

/**
 * TransformerPolicy's suite (test/policy/transformer-policy.test.ts) again on the simt backend: every op of the
 * forward, the backward, the KV-cache sampling and the Trainer's steps run as the CUDA kernel source of cuda/
 * executed by the SIMT executor. Then the Trainer on a LinearHeadPolicy (test/trainer/linear-head.test.ts): the
 * fused linear loss of cuda/linear_loss.cu in a training step, no [B, L, V] tensor allocated (memoryInfo()).
 * One child process per file (the backend is chosen once per process).
 */
import t from 'tap'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backend } from '../../lib/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const files = [join(root, 'policy', 'transformer-policy.test.ts'), join(root, 'trainer', 'linear-head.test.ts')]
const compiled = backend.info().compiled
if (!compiled.includes('simt')) {
  t.skip(`the simt backend is not built into this binary (compiled: ${compiled.join(', ')}; build with SIMT=ON)`)
} else {
  for (const file of files) {
    const name = file.slice(root.length + 1)
    t.spawn(process.execPath, [...process.execArgv, file], { env: { ...process.env, GRPO_BACKEND: 'simt' }, timeout: 900_000 }, `${name} on simt`)
  }
}

/**
 * TransformerPolicy's suite (test/policy/transformer-policy.test.ts) again on the simt backend: every op of the
 * forward, the backward, the KV-cache sampling and the Trainer's steps run as the CUDA kernel source of cuda/
 * executed by the SIMT executor. One child process (the backend is chosen once per process).
 */
import t from 'tap'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backend } from '../../lib/index.js'

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'policy', 'transformer-policy.test.ts')
const compiled = backend.info().compiled
if (!compiled.includes('simt')) {
  t.skip(`the simt backend is not built into this binary (compiled: ${compiled.join(', ')}; build with SIMT=ON)`)
} else {
  t.spawn(process.execPath, [...process.execArgv, file], { env: { ...process.env, GRPO_BACKEND: 'simt' }, timeout: 900_000 }, 'transformer-policy.test.ts on simt')
}

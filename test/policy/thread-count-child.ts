/**
 * Run by model-ops.test.ts with GRPO_NUM_THREADS=1 and =2: computes an embedding-bag backward, a sampling call
 * and a gradient norm on fixed inputs large enough to be split across threads, and prints a digest of the bits.
 */
import { createHash } from 'node:crypto'
import { Tensor, modelOps } from '../../lib/index.js'
import { rng } from './model-reference.js'

const r = rng(99)
const [R, F, H, V] = [600, 24, 97, 211]
const ids = Tensor.from(Int32Array.from({ length: R * F }, () => Math.floor(r() * H)), [R, F])
const grad = Tensor.from(Float32Array.from({ length: R * V }, () => r() - 0.5), [R, V])
const gw = Tensor.zeros([H, V])
const gb = Tensor.zeros([V])
modelOps.embeddingBagBackwardSync(grad, ids, gw, { gradBias: gb })
const s = modelOps.sampleTokensSync(grad, { temperature: 0.7, topP: 0.9, seed: 3 })
const norm = modelOps.gradNormSync([gw, gb, grad]).norm
const hash = createHash('sha256')
for (const t of [gw, gb, s.tokens, s.logp]) hash.update(new Uint8Array(t.toArraySync().buffer))
hash.update(String(norm))
process.stdout.write(hash.digest('hex') + '\n')

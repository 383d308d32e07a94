/**
 * A worker thread that starts async ops and reads, says so, then ends while they are still running
 * (process.exit() in the worker, or the parent's terminate()). Run by native-child.ts.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { Tensor, ops } from '../../lib/index.js'

const B = 8, L = 64, V = 32768 // 64 MB of logits: each op takes tens of milliseconds on this machine
const logits = Tensor.zeros([B, L, V], { device: 'cpu' })
const targets = Tensor.zeros([B, L], { dtype: 'i32', device: 'cpu' })
const advantages = Tensor.zeros([B], { device: 'cpu' })
const pending: Promise<unknown>[] = []
for (let i = 0; i < 4; i++) {
  pending.push(ops.tokenLogprobs(logits, targets, { entropy: true }))
  pending.push(ops.grpoLoss({ logits, targets, advantages }))
  pending.push(logits.toArray())
  pending.push(logits.to('cpu'))
}
for (const p of pending) p.catch(() => {})
parentPort!.postMessage('started')
if (workerData.mode === 'exit') process.exit(0)

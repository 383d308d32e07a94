/** A rank of cuda.test.ts's NCCL run: its own GPU first (before CUDA starts), then the collectives worker. */
import * as distributed from '../../lib/distributed.js'

distributed.assignDevice()
await import('./collectives-worker.js')

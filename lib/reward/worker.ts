/** A scoring worker: scores the chunks the pool sends and answers each with its results. */
import { parentPort } from 'node:worker_threads'
import { GrpoError } from '../errors.js'
import { prepareTruth, scorePrepared } from './score.js'
import type { ScoreResult } from './types.js'
import { encodeResults, type ChunkReply, type ChunkRequest } from './wire.js'

function scoreChunk(request: ChunkRequest): ChunkReply {
  const { id, base, options, completions, truths } = request
  const results: ScoreResult[] = new Array(completions.length)
  for (let i = 0; i < completions.length; i++) {
    const truth = truths[i]!
    let prepared
    try {
      prepared = typeof truth === 'string' ? prepareTruth(truth, `items[${base + i}].groundTruth`, options.variant === 'toolrl') : truth.prepared
    } catch (error) {
      if (error instanceof GrpoError) return { id, invalid: { index: base + i, message: error.message } }
      throw error
    }
    results[i] = scorePrepared(completions[i]!, prepared, options)
  }
  return { id, results: encodeResults(results) }
}

parentPort!.on('message', (request: ChunkRequest) => {
  let reply: ChunkReply
  try {
    reply = scoreChunk(request)
  } catch (error) {
    reply = { id: request.id, failed: String((error as Error)?.stack ?? error) }
  }
  // The typed arrays move instead of being copied.
  const transfer = 'results' in reply ? [reply.results.scores.buffer as ArrayBuffer, reply.results.reasons.buffer as ArrayBuffer] : []
  parentPort!.postMessage(reply, transfer)
})

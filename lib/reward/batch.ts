/**
 * scoreBatch: many completions at once without stalling the event loop.
 *
 * Small batches are scored on the main thread in slices of a few milliseconds. Large ones are cut into chunks
 * that the shared worker pool scores; the main thread then only copies chunks in and results out, a fraction
 * of a millisecond each. A chunk whose worker fails is scored inline, so a batch always completes.
 */
import { GrpoError, invalidArg } from '../errors.js'
import { sharedPool, WorkerUnavailable } from './pool.js'
import { prepareTruth, resolveOptions, scorePrepared, type PreparedTruth, type ResolvedOptions } from './score.js'
import type { BatchItem, BatchOptions, ScoreResult } from './types.js'
import { decodeResult, type ChunkReply, type ChunkRequest } from './wire.js'

/** Batches below this size are scored inline: starting a chunk on a worker costs more than it saves. */
export const INLINE_LIMIT = 256
/** Items per worker chunk: about 2 ms of scoring, so replies come often and each costs the main thread little. */
const CHUNK = 128
/** The longest the main thread scores before yielding to the event loop. */
const SLICE_MS = 4

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve))

/** A malformed ground truth, with the index of its item (to report the batch's first one). */
class InvalidItem {
  constructor(
    readonly index: number,
    readonly error: unknown,
  ) {}
}

function prepareAt(truth: unknown, index: number, options: ResolvedOptions): PreparedTruth {
  try {
    return prepareTruth(truth, `items[${index}].groundTruth`, options.variant === 'toolrl')
  } catch (error) {
    throw new InvalidItem(index, error)
  }
}

async function scoreInline(
  completions: string[],
  truths: unknown[],
  options: ResolvedOptions,
  results: ScoreResult[],
  from: number,
  to: number,
): Promise<void> {
  let sliceStart = performance.now()
  for (let i = from; i < to; i++) {
    results[i] = scorePrepared(completions[i]!, prepareAt(truths[i], i, options), options)
    if ((i & 7) === 7 && performance.now() - sliceStart > SLICE_MS) {
      await yieldToLoop()
      sliceStart = performance.now()
    }
  }
}

function makeChunk(
  completions: string[],
  truths: unknown[],
  options: ResolvedOptions,
  from: number,
  to: number,
): ChunkRequest {
  const chunkTruths: ChunkRequest['truths'] = new Array(to - from)
  for (let i = from; i < to; i++) {
    const truth = truths[i]
    // JSON text is parsed in the worker. Objects are prepared here, since a clone would lose LosslessNumbers.
    chunkTruths[i - from] = typeof truth === 'string' ? truth : { prepared: prepareAt(truth, i, options) }
  }
  return { id: 0, base: from, options, completions: completions.slice(from, to), truths: chunkTruths }
}

/**
 * Scores many completions; the same results, in the same order, as `scoreToolCall` on each item. Throws
 * (rejects with) ERR_GRPO_INVALID_ARG for malformed items, options or ground truths: for several malformed
 * ground truths, the one of the lowest index.
 */
export async function scoreBatch(items: readonly BatchItem[], options?: BatchOptions): Promise<ScoreResult[]> {
  if (!Array.isArray(items)) invalidArg('an array of {completion, groundTruth} items', 'items', items)
  const resolved = resolveOptions(options)
  const workers = options?.workers
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 0)) {
    invalidArg('a non-negative integer', 'options.workers', workers)
  }
  const n = items.length
  const completions: string[] = new Array(n)
  const truths: unknown[] = new Array(n)
  for (let i = 0; i < n; i++) {
    const item = items[i] as Partial<BatchItem> | null | undefined
    if (typeof item !== 'object' || item === null) invalidArg('a {completion, groundTruth} object', `items[${i}]`, item)
    if (typeof item.completion !== 'string') invalidArg('a string', `items[${i}].completion`, item.completion)
    completions[i] = item.completion
    truths[i] = item.groundTruth
  }
  const results: ScoreResult[] = new Array(n)
  if (workers === 0 || n < INLINE_LIMIT) {
    try {
      await scoreInline(completions, truths, resolved, results, 0, n)
    } catch (error) {
      throw error instanceof InvalidItem ? error.error : error
    }
    return results
  }

  const pool = sharedPool(workers)
  let firstInvalid: InvalidItem | null = null
  const noteInvalid = (invalid: InvalidItem) => {
    if (firstInvalid === null || invalid.index < firstInvalid.index) firstInvalid = invalid
  }
  const chunks: Promise<void>[] = []
  for (let from = 0; from < n; from += CHUNK) {
    const to = Math.min(n, from + CHUNK)
    const chunk = pool.run(() => makeChunk(completions, truths, resolved, from, to)).then(
      (reply: ChunkReply) => {
        if ('results' in reply) {
          for (let i = 0; i < to - from; i++) results[from + i] = decodeResult(reply.results, i)
        } else if ('invalid' in reply) {
          const error = new GrpoError(reply.invalid.message, 'ERR_GRPO_INVALID_ARG')
          noteInvalid(new InvalidItem(reply.invalid.index, error))
        } else {
          return scoreInline(completions, truths, resolved, results, from, to)
        }
      },
      (error: unknown) => {
        if (error instanceof WorkerUnavailable) return scoreInline(completions, truths, resolved, results, from, to)
        throw error
      },
    )
    chunks.push(
      // A chunk reports its first malformed item, so the lowest index over chunks is the batch's first.
      chunk.catch((error: unknown) => {
        if (!(error instanceof InvalidItem)) throw error
        noteInvalid(error)
      }),
    )
  }
  await Promise.all(chunks)
  if (firstInvalid !== null) throw (firstInvalid as InvalidItem).error
  return results
}

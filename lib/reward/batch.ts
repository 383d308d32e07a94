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
/**
 * ...unless their text is larger than this (characters of completions and JSON-text ground truths): a few long
 * items cost as much as many short ones, and scoring them inline would hold the event loop as long.
 */
export const INLINE_CHARS = 256 * 1024
/** Items per worker chunk: about 2 ms of scoring, so replies come often and each costs the main thread little. */
const CHUNK = 128
/** A chunk also ends once it holds this many characters, so long items spread over the workers. */
const CHUNK_CHARS = 1 << 20
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

function aborted(signal: AbortSignal): GrpoError {
  const reason = signal.reason instanceof Error ? `: ${signal.reason.message}` : ''
  return new GrpoError(`Expected the scoring of the batch to finish but it was aborted${reason}`, 'ERR_GRPO_ABORTED', { cause: signal.reason })
}

async function scoreInline(
  completions: string[],
  truths: unknown[],
  options: ResolvedOptions,
  results: ScoreResult[],
  from: number,
  to: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  let sliceStart = performance.now()
  for (let i = from; i < to; i++) {
    if (signal?.aborted) throw aborted(signal)
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
  const signal = options?.signal
  if (signal !== undefined && !(signal instanceof AbortSignal)) invalidArg('an AbortSignal', 'options.signal', signal)
  if (signal?.aborted) throw aborted(signal)
  const n = items.length
  const completions: string[] = new Array(n)
  const truths: unknown[] = new Array(n)
  // Characters per item, to cut chunks by size as well as by count.
  const sizes = new Float64Array(n)
  let chars = 0
  for (let i = 0; i < n; i++) {
    const item = items[i] as Partial<BatchItem> | null | undefined
    if (typeof item !== 'object' || item === null) invalidArg('a {completion, groundTruth} object', `items[${i}]`, item)
    if (typeof item.completion !== 'string') invalidArg('a string', `items[${i}].completion`, item.completion)
    completions[i] = item.completion
    truths[i] = item.groundTruth
    sizes[i] = item.completion.length + (typeof item.groundTruth === 'string' ? item.groundTruth.length : 0)
    chars += sizes[i]!
  }
  const results: ScoreResult[] = new Array(n)
  if (workers === 0 || (n < INLINE_LIMIT && chars <= INLINE_CHARS)) {
    try {
      await scoreInline(completions, truths, resolved, results, 0, n, signal)
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
  for (let from = 0, to = 0; from < n; from = to) {
    let size = 0
    to = from
    while (to < n && to - from < CHUNK && (to === from || size + sizes[to]! <= CHUNK_CHARS)) size += sizes[to++]!
    const chunkEnd = to
    const chunk = pool.run(() => makeChunk(completions, truths, resolved, from, chunkEnd), signal).then(
      (reply: ChunkReply) => {
        if ('results' in reply) {
          for (let i = 0; i < chunkEnd - from; i++) results[from + i] = decodeResult(reply.results, i)
        } else if ('invalid' in reply) {
          const error = new GrpoError(reply.invalid.message, 'ERR_GRPO_INVALID_ARG')
          noteInvalid(new InvalidItem(reply.invalid.index, error))
        } else {
          return scoreInline(completions, truths, resolved, results, from, chunkEnd, signal)
        }
      },
      (error: unknown) => {
        if (error instanceof WorkerUnavailable) return scoreInline(completions, truths, resolved, results, from, chunkEnd, signal)
        if (signal?.aborted) throw aborted(signal)
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
  // Every chunk settles before the batch does (an aborted batch leaves no chunk running on its behalf).
  const settled = await Promise.allSettled(chunks)
  if (signal?.aborted) throw aborted(signal)
  for (const s of settled) if (s.status === 'rejected') throw s.reason
  if (firstInvalid !== null) throw (firstInvalid as InvalidItem).error
  return results
}

/**
 * What travels between the main thread and the scoring workers.
 *
 * Results come back compact: scores in a Float64Array, reason codes as bytes, and each item's calls as lossless
 * JSON text that is parsed only if someone reads `calls`. Building thousands of small call objects on the main
 * thread would cost little CPU but leave them all alive at once, and copying them in the next young-generation
 * GC pause is what would stall the event loop (measured: 13 to 22 ms scavenges for 5,120 eager results).
 */
import { stringify } from 'lossless-json'
import { MAX_JSON_DEPTH, parseLossless } from './json.js'
import type { PreparedTruth, ResolvedOptions } from './score.js'
import { REASONS, type Reason, type ScoreResult, type ToolCall } from './types.js'

export interface ChunkRequest {
  id: number
  /** Index of the chunk's first item in the batch (for error messages). */
  base: number
  options: ResolvedOptions
  completions: string[]
  /** JSON text for the worker to parse, or a ground truth the main thread already prepared. */
  truths: Array<string | { prepared: PreparedTruth }>
}

export interface ChunkResults {
  scores: Float64Array
  reasons: Uint8Array
  /** Lossless JSON text of each item's calls, or null. */
  calls: Array<string | null>
  /** Variant toolrl: each item's format and correctness scores, interleaved (absent for the other variants). */
  parts?: Float64Array
}

export type ChunkReply =
  | { id: number; results: ChunkResults }
  | { id: number; invalid: { index: number; message: string } }
  | { id: number; failed: string }

const reasonCode = new Map<Reason, number>(REASONS.map((reason, code) => [reason, code]))

export function encodeResults(results: ScoreResult[]): ChunkResults {
  const n = results.length
  const out: ChunkResults = { scores: new Float64Array(n), reasons: new Uint8Array(n), calls: new Array(n) }
  for (let i = 0; i < n; i++) {
    const result = results[i]!
    out.scores[i] = result.score
    out.reasons[i] = reasonCode.get(result.reason)!
    out.calls[i] = result.calls === null ? null : (stringify(result.calls) as string)
    if (result.parts) {
      out.parts ??= new Float64Array(2 * n)
      out.parts[2 * i] = result.parts.format
      out.parts[2 * i + 1] = result.parts.correctness
    }
  }
  return out
}

/** A result whose `calls` (an own enumerable property, like the single form's) is parsed on first read. */
export function decodeResult(results: ChunkResults, i: number): ScoreResult {
  const text = results.calls[i]!
  const result = { score: results.scores[i]!, reason: REASONS[results.reasons[i]!]! } as ScoreResult
  if (results.parts) result.parts = { format: results.parts[2 * i]!, correctness: results.parts[2 * i + 1]! }
  let calls: ToolCall[] | null | undefined = text === null ? null : undefined
  Object.defineProperty(result, 'calls', {
    enumerable: true,
    configurable: true,
    // A single call object is wrapped in a list, one level deeper than the completion held it.
    get: () => (calls === undefined ? (calls = parseLossless(text!, MAX_JSON_DEPTH + 1) as ToolCall[]) : calls),
    set: (value: ToolCall[] | null) => {
      calls = value
    },
  })
  return result
}

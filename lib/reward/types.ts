/** Types of the tool-call reward (docs/reward.md). */

/** How a completion is turned into a number; see the table in docs/reward.md. */
export type Variant = 'binary' | 'binary-no-think' | 'partial' | 'partial-name' | 'toolrl'

/** `presence`: `<think>` and `</think>` both occur (the released scorer). `strict`: in order, before the call. */
export type ThinkOrder = 'presence' | 'strict'

/**
 * Why a completion got the score it got: the first condition that failed, in the order extraction, matching,
 * think tags. `ok` means nothing failed (the variant's maximum score).
 *
 * - `no-call`: no `<tool_call>…</tool_call>` block, or the block holds `null`, a number or a boolean
 * - `bad-json`: the last block (or the string it holds) is not strict JSON
 * - `bad-format`: the parsed value is not a list of objects with `name` and `arguments`
 * - `name-mismatch`: the multisets of call names differ
 * - `args-mismatch`: the names agree but some call's arguments do not
 * - `no-think`: the calls match but the think tags are missing (or out of order with `thinkOrder: 'strict'`)
 * - `bad-layout` (variant `toolrl`): the calls match but the reply is not laid out exactly as
 *   `<think>…</think>\n<tool_call>\n…\n</tool_call>` (its format score is 0)
 */
export type Reason = 'ok' | 'no-call' | 'bad-json' | 'bad-format' | 'name-mismatch' | 'args-mismatch' | 'no-think' | 'bad-layout'

/** Every reason code, in a stable order (for counters and logs). */
export const REASONS: readonly Reason[] = Object.freeze([
  'ok',
  'no-call',
  'bad-json',
  'bad-format',
  'name-mismatch',
  'args-mismatch',
  'no-think',
  'bad-layout',
])

export const VARIANTS: readonly Variant[] = Object.freeze(['binary', 'binary-no-think', 'partial', 'partial-name', 'toolrl'])
export const THINK_ORDERS: readonly ThinkOrder[] = Object.freeze(['presence', 'strict'])

export interface ScoreOptions {
  /** Default `binary`. */
  variant?: Variant
  /** Default `presence`. */
  thinkOrder?: ThinkOrder
}

/**
 * One parsed call. Values come from a lossless JSON parse: numbers are `LosslessNumber`s of lossless-json
 * (`String(n)` gives the exact lexeme, `lossless-json`'s `stringify` writes them back unchanged).
 */
export interface ToolCall {
  name: unknown
  arguments: unknown
}

export interface ScoreResult {
  score: number
  reason: Reason
  /** The calls of the last block (the first, for `toolrl`) when it parsed into a well-formed call list, else null. */
  calls: ToolCall[] | null
  /** Variant `toolrl`: the format score (0 or 1) and the correctness score (−3 to 3) that `score` sums. */
  parts?: { format: number; correctness: number }
}

/**
 * The expected calls: a list of `{name, arguments}` objects, a single such object, or JSON text of either
 * (JSON text holding JSON text is parsed twice). In JavaScript values, a `number` that is an integer counts as
 * an integer and any other as a double, a `bigint` is an integer, and a `LosslessNumber` keeps its lexeme; pass
 * JSON text when `5.0` must stay a double.
 */
export type GroundTruth = string | readonly unknown[] | Record<string, unknown>

export interface BatchItem {
  completion: string
  groundTruth: GroundTruth
}

export interface BatchOptions extends ScoreOptions {
  /**
   * Worker threads to use for this batch: 0 scores on the main thread (in slices that yield to the event
   * loop). Default: a shared pool of up to 4 workers (one fewer than the CPU count, at least 1).
   */
  workers?: number
  /**
   * Stops the batch: scoring stops at the next item (inline) or chunk (workers), and the promise rejects with
   * ERR_GRPO_ABORTED. The service gives every request a time budget this way.
   */
  signal?: AbortSignal
}

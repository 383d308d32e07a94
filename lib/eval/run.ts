/**
 * One evaluation: every entry's completion from a source, decoded, checked with BFCL's rules; per-category
 * accuracy, BFCL's summary figures, and the count of every reason.
 */
import { invalidArg } from '../errors.js'
import { oneOfOption, parseOptions, valueOption, type Schema } from '../options.js'
import { type CheckResult, type Reason, REASONS, checkAst, checkRelevance, decodeFailure, sourceFailure } from './checker.js'
import { type BfclEntry, CATEGORIES, type BfclCategory, isRelevanceCategory } from './data.js'
import { type CallFormat, CALL_FORMATS, decodeText } from './decode.js'
import type { Completion, CompletionSource } from './sources.js'
import { checkCategoryScores, checkCompletion, checkEntry, checkResults } from './validate.js'
import { toPlain } from './values.js'

export interface EntryResult extends CheckResult {
  id: string
  category: BfclCategory
  /** The completion's text (null when the source gave only structured calls or failed). */
  completion: string | null
  /** The decoded calls, as plain JSON (null when nothing decoded). */
  calls: { name: string; arguments: unknown }[] | null
  seconds?: number
}

export interface CategoryScore {
  correct: number
  total: number
  accuracy: number
}

/** A summary figure: its accuracy over the categories present, and which of its categories are missing. */
export interface SummaryScore {
  accuracy: number | null
  total: number
  missing: BfclCategory[]
}

export interface BfclSummary {
  /** Unweighted mean of simple, multiple, parallel, parallel_multiple (BFCL's non-live AST figure). */
  nonLive: SummaryScore
  /** The four live AST categories weighted by their entry counts (BFCL's live figure). */
  live: SummaryScore
  /** Unweighted mean of irrelevance and live_irrelevance. */
  irrelevance: SummaryScore
  relevance: SummaryScore
  /** Unweighted mean of the non-live and live figures: BFCL's single-turn overall (its full overall adds multi-turn and agentic). */
  overall: SummaryScore
}

export interface BfclReport {
  source: string
  format: CallFormat
  entries: EntryResult[]
  categories: Partial<Record<BfclCategory, CategoryScore>>
  summary: BfclSummary
  reasons: Partial<Record<Reason, number>>
  /** Entries evaluated / given (fewer when interrupted). */
  evaluated: number
  given: number
  interrupted: boolean
  seconds: number
}

export interface EvaluateBfclOptions {
  /** How completion text is read (default auto). */
  format?: CallFormat
  /** Called after each entry is checked. */
  onProgress?: (done: number, total: number, correct: number) => void
  signal?: AbortSignal
}

const EVALUATE_BFCL_SCHEMA: Schema<EvaluateBfclOptions> = {
  format: oneOfOption(CALL_FORMATS, 'auto'),
  onProgress: valueOption('a function (done, total, correct)', (v) => typeof v === 'function'),
  signal: valueOption('an AbortSignal', (v) => v instanceof AbortSignal),
}

function plainCalls(calls: readonly { name: string; arguments: Map<string, unknown> }[]): EntryResult['calls'] {
  return calls.map((c) => ({ name: c.name, arguments: toPlain(c.arguments as never) }))
}

/** Decodes and checks one entry's completion. */
export function judge(entry: BfclEntry, completion: Completion, format: CallFormat = 'auto'): EntryResult {
  checkEntry(entry)
  checkCompletion(completion)
  const base = { id: entry.id, category: entry.category }
  if (!completion.ok) return { ...base, ...sourceFailure(completion.reason, completion.message), completion: null, calls: null }
  const decoded = completion.decoded ?? decodeText(completion.text ?? '', format)
  const text = completion.text
  const seconds = completion.seconds
  if (isRelevanceCategory(entry.category)) {
    const calls = 'error' in decoded ? null : decoded.calls
    return { ...base, ...checkRelevance(entry.category, calls), completion: text, calls: calls && plainCalls(calls), seconds }
  }
  if ('error' in decoded) return { ...base, ...decodeFailure(decoded.error, decoded.message), completion: text, calls: null, seconds }
  const verdict = checkAst(entry.category, entry.functions, decoded.calls, entry.answer ?? [])
  return { ...base, ...verdict, completion: text, calls: plainCalls(decoded.calls), seconds }
}

function mean(parts: CategoryScore[]): number {
  return parts.reduce((a, p) => a + p.accuracy, 0) / parts.length
}

function summaryOf(categories: Partial<Record<BfclCategory, CategoryScore>>, names: readonly BfclCategory[], weighted: boolean): SummaryScore {
  const present = names.filter((n) => categories[n] !== undefined).map((n) => categories[n]!)
  const missing = names.filter((n) => categories[n] === undefined)
  const total = present.reduce((a, p) => a + p.total, 0)
  if (present.length === 0) return { accuracy: null, total: 0, missing }
  const accuracy = weighted ? present.reduce((a, p) => a + p.correct, 0) / total : mean(present)
  return { accuracy, total, missing }
}

/** BFCL's summary figures from per-category scores (over the categories present; `missing` lists the others). */
export function summarize(categories: Partial<Record<BfclCategory, CategoryScore>>): BfclSummary {
  checkCategoryScores(categories)
  const nonLive = summaryOf(categories, ['simple', 'multiple', 'parallel', 'parallel_multiple'], false)
  const live = summaryOf(categories, ['live_simple', 'live_multiple', 'live_parallel', 'live_parallel_multiple'], true)
  const irrelevance = summaryOf(categories, ['irrelevance', 'live_irrelevance'], false)
  const relevance = summaryOf(categories, ['live_relevance'], false)
  const parts = [nonLive, live].filter((s) => s.accuracy !== null)
  const overall: SummaryScore = {
    accuracy: parts.length === 0 ? null : parts.reduce((a, s) => a + s.accuracy!, 0) / parts.length,
    total: nonLive.total + live.total,
    missing: [...nonLive.missing, ...live.missing],
  }
  return { nonLive, live, irrelevance, relevance, overall }
}

/** Scores per category, the summary and the reason counts of a list of results. */
export function score(results: readonly EntryResult[]): Pick<BfclReport, 'categories' | 'summary' | 'reasons'> {
  checkResults(results)
  const categories: Partial<Record<BfclCategory, CategoryScore>> = {}
  for (const c of CATEGORIES) {
    const mine = results.filter((r) => r.category === c)
    if (mine.length === 0) continue
    const correct = mine.filter((r) => r.valid).length
    categories[c] = { correct, total: mine.length, accuracy: correct / mine.length }
  }
  const reasons: Partial<Record<Reason, number>> = {}
  for (const reason of Object.keys(REASONS) as Reason[]) {
    const n = results.filter((r) => r.reason === reason).length
    if (n > 0) reasons[reason] = n
  }
  return { categories, summary: summarize(categories), reasons }
}

/** Runs `source` on `entries` and checks every completion. */
export async function evaluateBfcl(entries: readonly BfclEntry[], source: CompletionSource, evaluateOptions: EvaluateBfclOptions = {}): Promise<BfclReport> {
  if (!Array.isArray(entries)) invalidArg('an array of BFCL entries', 'entries', entries)
  if (typeof source?.complete !== 'function') invalidArg('a CompletionSource', 'source', source)
  const options = parseOptions(EVALUATE_BFCL_SCHEMA, evaluateOptions, 'evaluateBfcl options')
  const format = options.format!
  const started = performance.now()
  const results: (EntryResult | undefined)[] = new Array(entries.length)
  let done = 0
  let correct = 0
  await source.complete(
    entries,
    (index, completion) => {
      if (!Number.isInteger(index) || index < 0 || index >= entries.length || results[index] !== undefined) return
      const r = judge(entries[index]!, completion, format)
      results[index] = r
      done++
      if (r.valid) correct++
      options.onProgress?.(done, entries.length, correct)
    },
    { signal: options.signal },
  )
  const aborted = options.signal?.aborted ?? false
  if (!aborted) {
    // A source that resolves without answering an entry failed that entry.
    for (let i = 0; i < entries.length; i++) {
      if (results[i] === undefined) results[i] = judge(entries[i]!, { ok: false, reason: 'source-error', message: `${source.description} returned without a completion for this entry` }, format)
    }
  }
  const finished = results.filter((r): r is EntryResult => r !== undefined)
  return {
    source: source.description,
    format,
    entries: finished,
    ...score(finished),
    evaluated: finished.length,
    given: entries.length,
    interrupted: finished.length < entries.length,
    seconds: (performance.now() - started) / 1000,
  }
}

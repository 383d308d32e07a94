/**
 * Structural checks of the records the evaluation exports take from a caller (an entry, a completion, a report,
 * results): enough that a record of the wrong shape is a GrpoError naming the field, never a TypeError from deep
 * inside the checker or the report writer. Records made by this package (readBfcl, evaluateBfcl) always pass.
 */
import { expectArray, expectFields, expectObject, invalidArg } from '../errors.js'

/** A BfclEntry as readBfcl makes it. */
export function checkEntry(entry: unknown, what = 'entry'): void {
  expectFields(entry, what, 'a BFCL entry (see readBfcl)', { id: 'string', category: 'string', turns: 'array', functions: 'array', answer: 'array|null' })
  const { turns } = entry as { turns: unknown[] }
  turns.forEach((turn, i) => expectArray(turn, `${what}.turns[${i}]`, 'an array of messages').forEach((m, j) => expectFields(m, `${what}.turns[${i}][${j}]`, 'a message { role, content }', { role: 'string' })))
}

/** A Completion as a CompletionSource delivers it. */
export function checkCompletion(completion: unknown, what = 'completion'): void {
  const c = expectFields(completion, what, 'a completion { ok, text } or { ok: false, reason, message }', { ok: 'boolean' })
  if (c.ok) {
    if (c.text !== null && c.text !== undefined && typeof c.text !== 'string') invalidArg('a string or null', `${what}.text`, c.text)
    if (c.decoded !== undefined) expectObject(c.decoded, `${what}.decoded`, 'a decode result (see decodeText)')
  } else expectFields(c, what, 'a failed completion { ok: false, reason, message }', { reason: 'string', message: 'string' })
}

/** Per-category scores: { correct, total, accuracy } for each category present. */
export function checkCategoryScores(categories: unknown, what = 'categories'): void {
  for (const [name, s] of Object.entries(expectObject(categories, what, 'scores per category'))) {
    expectFields(s, `${what}.${name}`, 'a category score { correct, total, accuracy }', { correct: 'number', total: 'number', accuracy: 'number' })
  }
}

/** A BfclReport as evaluateBfcl makes it (the fields the report functions read). */
export function checkReport(report: unknown, what = 'report'): void {
  const r = expectFields(report, what, 'a BFCL report (see evaluateBfcl)', { entries: 'array', categories: 'object', summary: 'object', reasons: 'object' })
  checkCategoryScores(r.categories, `${what}.categories`)
  const summary = r.summary as Record<string, unknown>
  for (const key of ['nonLive', 'live', 'irrelevance', 'relevance', 'overall']) {
    const s = expectFields(summary[key], `${what}.summary.${key}`, 'a summary score { accuracy, total, missing }', { total: 'number', missing: 'array' })
    if (s.accuracy !== null && typeof s.accuracy !== 'number') invalidArg('a number or null', `${what}.summary.${key}.accuracy`, s.accuracy)
  }
  for (const [reason, n] of Object.entries(r.reasons as Record<string, unknown>)) if (typeof n !== 'number') invalidArg('a count', `${what}.reasons.${reason}`, n)
}

/** Entry results as judge makes them (the fields score reads). */
export function checkResults(results: unknown, what = 'results'): void {
  expectArray(results, what, 'an array of entry results (see judge)').forEach((r, i) =>
    expectFields(r, `${what}[${i}]`, 'an entry result (see judge)', { category: 'string', valid: 'boolean', reason: 'string' }),
  )
}

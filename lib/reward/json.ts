/**
 * Lossless JSON parsing and the canonical form used to compare tool calls.
 *
 * The released scorer compares values the way Python's `json` module sees them: integers of any size are
 * exact, `5` (int) and `5.0` (float) differ, floats compare by value with `-0.0 ≠ 0.0`. `JSON.parse` folds
 * all of these into one double, so every number is kept as its lexeme (lossless-json) and reduced to a
 * canonical string here.
 */
import { LosslessNumber, isLosslessNumber, parse } from 'lossless-json'

// Python's dict keeps the last value of a repeated key; lossless-json would throw by default.
const parseOptions = { onDuplicateKey: (info: { newValue: unknown }) => info.newValue }

/**
 * The deepest nesting of arrays and objects that is parsed or canonicalized. The parsers and canonical() recurse
 * once per level, and a worker thread's stack is not the main thread's: without a fixed limit a value nested a
 * few thousand levels deep parsed on one and overflowed on the other, so the same completion scored differently
 * inline and in a pooled batch. Python's json module gives up near 1,000 levels; no real tool call nests past a
 * handful.
 */
export const MAX_JSON_DEPTH = 512

/** Thrown for a value nested deeper than MAX_JSON_DEPTH (a SyntaxError, as a parse failure is). */
export class JsonTooDeepError extends SyntaxError {
  constructor() {
    super(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`)
    this.name = 'JsonTooDeepError'
  }
}

/**
 * Whether a JavaScript value nests arrays and objects deeper than `max` levels: an iterative walk (no recursion,
 * so no stack overflow whatever the value), which stops at the first level past `max` (cycles included).
 */
export function valueNestsDeeperThan(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]]
  // The deepest level each object was seen at: a shared object is walked again only from a deeper place, so a
  // wide graph of shared objects costs at most (objects × max) steps instead of exponentially many.
  const seen = new Map<object, number>()
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (typeof v !== 'object' || v === null || isLosslessNumber(v)) continue
    if (depth >= max) return true
    if ((seen.get(v) ?? -1) >= depth) continue
    seen.set(v, depth)
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1])
    }
  }
  return false
}

const QUOTE = 0x22
const BACKSLASH = 0x5c

/** Index just past the string literal that opens at `at` (or text.length for an unterminated one). */
function skipString(text: string, at: number): number {
  let i = at + 1
  for (;;) {
    const q = text.indexOf('"', i)
    if (q < 0) return text.length
    let k = q - 1
    while (k > at && text.charCodeAt(k) === BACKSLASH) k--
    // An even number of backslashes before the quote: it ends the string.
    if ((q - 1 - k) % 2 === 0) return q + 1
    i = q + 1
  }
}

/**
 * Whether the JSON text nests arrays and objects deeper than `max` levels, brackets inside strings aside. One pass,
 * no allocation; malformed text is measured as well as it can be (the parser reports it after).
 */
export function nestsDeeperThan(text: string, max: number = MAX_JSON_DEPTH): boolean {
  let depth = 0
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) i = skipString(text, i) - 1
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

/**
 * Strict JSON (RFC 8259) with numbers as LosslessNumber; throws a SyntaxError on failure, including for a value
 * nested deeper than MAX_JSON_DEPTH (JsonTooDeepError), so the outcome never depends on the thread's stack size.
 */
export function parseLossless(text: string, maxDepth: number = MAX_JSON_DEPTH): unknown {
  if (nestsDeeperThan(text, maxDepth)) throw new JsonTooDeepError()
  return parse(text, undefined, parseOptions)
}

function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i)
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++
    else return i
  }
}

/** Index just past the JSON value that starts at `i` (valid JSON assumed: the text was parsed already). */
function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i)
  if (c === QUOTE) return skipString(text, i)
  if (c === 0x5b || c === 0x7b) {
    let depth = 0
    for (; i < text.length; i++) {
      const d = text.charCodeAt(i)
      if (d === QUOTE) i = skipString(text, i) - 1
      else if (d === 0x5b || d === 0x7b) depth++
      else if ((d === 0x5d || d === 0x7d) && --depth === 0) return i + 1
    }
    return text.length
  }
  // A number, true, false or null: up to the next delimiter.
  while (i < text.length) {
    const d = text.charCodeAt(i)
    if (d === 0x2c || d === 0x5d || d === 0x7d || d === 0x20 || d === 0x0a || d === 0x0d || d === 0x09) break
    i++
  }
  return i
}

/**
 * Where the value of `key` lies in the JSON object `text`: [start, end) of its last occurrence (JSON.parse keeps the
 * last one), or null when the text is not an object or has no such key. For text that JSON.parse accepted (it is
 * not checked again): one pass that skips strings with indexOf, a fraction of the cost of a parse. Callers use it
 * to read the exact lexemes of one field after a fast JSON.parse of the whole text, instead of a second, lossless
 * parse of everything.
 */
function memberSpan(text: string, key: string): [number, number] | null {
  let i = skipSpace(text, 0)
  if (text.charCodeAt(i) !== 0x7b) return null
  i = skipSpace(text, i + 1)
  let found: [number, number] | null = null
  while (i < text.length && text.charCodeAt(i) === QUOTE) {
    const keyEnd = skipString(text, i)
    const name = JSON.parse(text.slice(i, keyEnd)) as string
    i = skipSpace(text, skipSpace(text, keyEnd) + 1) // past the colon
    const valueEnd = skipValue(text, i)
    if (name === key) found = [i, valueEnd]
    i = skipSpace(text, valueEnd)
    if (text.charCodeAt(i) === 0x2c) i = skipSpace(text, i + 1)
  }
  return found
}

/** The source text of the value of `key` in the JSON object `text` (which JSON.parse accepted), or null. */
export function rawMember(text: string, key: string): string | null {
  const span = memberSpan(text, key)
  return span === null ? null : text.slice(span[0], span[1])
}

/**
 * The source texts of the elements of the array at `key` in the JSON object `text` (which JSON.parse accepted), or
 * null when there is no such key or its value is not an array.
 */
export function rawArrayElements(text: string, key: string): string[] | null {
  const span = memberSpan(text, key)
  if (span === null || text.charCodeAt(span[0]) !== 0x5b) return null
  const elements: string[] = []
  const end = span[1] - 1
  let i = skipSpace(text, span[0] + 1)
  while (i < end) {
    const valueEnd = skipValue(text, i)
    elements.push(text.slice(i, valueEnd))
    i = skipSpace(text, valueEnd)
    if (text.charCodeAt(i) === 0x2c) i = skipSpace(text, i + 1)
  }
  return elements
}

// Python's str.isspace() set: str.strip() removes these, which differs from String.prototype.trim
// (Python strips U+001C–U+001F and U+0085 but keeps U+FEFF, and json.loads rejects a leading BOM).
function isPythonSpace(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)
  if (c < 0x85) return false
  return (
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  )
}

/** `s.strip()` as Python does it. */
export function pythonStrip(s: string): string {
  let start = 0
  let end = s.length
  while (start < end && isPythonSpace(s.charCodeAt(start))) start++
  while (end > start && isPythonSpace(s.charCodeAt(end - 1))) end--
  return start === 0 && end === s.length ? s : s.slice(start, end)
}

function isDoubleLexeme(lexeme: string): boolean {
  for (let i = 0; i < lexeme.length; i++) {
    const c = lexeme.charCodeAt(i)
    if (c === 0x2e || c === 0x65 || c === 0x45) return true
  }
  return false
}

/**
 * Canonical text of a JSON number lexeme: `i<digits>` for integers (so `-0` is `0`, as Python's int), `d<value>`
 * for doubles, where the value is the shortest round-trip text of the IEEE double (one text per double;
 * `-0` kept apart from `0`).
 */
export function canonicalNumber(lexeme: string): string {
  if (isDoubleLexeme(lexeme)) {
    const d = Number(lexeme)
    return Object.is(d, -0) ? 'd-0' : 'd' + String(d)
  }
  return lexeme === '-0' ? 'i0' : 'i' + lexeme
}

/** Thrown by `canonical` for a value that JSON cannot hold (only reachable from JavaScript ground truths). */
export class NotJsonError extends Error {
  constructor(readonly value: unknown) {
    super('not a JSON value')
  }
}

function canonicalJsNumber(x: number): string {
  if (Number.isNaN(x)) throw new NotJsonError(x)
  if (Number.isInteger(x)) return 'i' + (x === 0 ? '0' : BigInt(x).toString())
  return 'd' + String(x)
}

/**
 * An injective text for a JSON value: object keys sorted (keys compare as sets), arrays in order, strings as
 * JSON string literals of their exact code units (no normalization). Two values are equal in the sense of
 * docs/reward.md ("When two call lists match") exactly when their canonical texts are equal. Throws
 * NotJsonError for a value JSON cannot hold and JsonTooDeepError past MAX_JSON_DEPTH levels.
 */
export function canonical(value: unknown, depth = 0): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'number':
      return canonicalJsNumber(value)
    case 'bigint':
      return 'i' + value.toString()
    case 'object': {
      if (value === null) return 'null'
      if (isLosslessNumber(value)) return canonicalNumber((value as LosslessNumber).value)
      if (depth >= MAX_JSON_DEPTH) throw new JsonTooDeepError()
      if (Array.isArray(value)) {
        let out = '['
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ','
          out += canonical(value[i], depth + 1)
        }
        return out + ']'
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) throw new NotJsonError(value)
      const keys = Object.keys(value).sort()
      let out = '{'
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!
        if (i > 0) out += ','
        out += JSON.stringify(key) + ':' + canonical((value as Record<string, unknown>)[key], depth + 1)
      }
      return out + '}'
    }
    default:
      throw new NotJsonError(value)
  }
}

export { LosslessNumber, isLosslessNumber }

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

/** Strict JSON (RFC 8259) with numbers as LosslessNumber; throws a SyntaxError (or RangeError) on failure. */
export function parseLossless(text: string): unknown {
  return parse(text, undefined, parseOptions)
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
 * docs/reward.md ("When two call lists match") exactly when their canonical texts are equal.
 */
export function canonical(value: unknown): string {
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
      if (Array.isArray(value)) {
        let out = '['
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ','
          out += canonical(value[i])
        }
        return out + ']'
      }
      if (isLosslessNumber(value)) return canonicalNumber((value as LosslessNumber).value)
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) throw new NotJsonError(value)
      const keys = Object.keys(value).sort()
      let out = '{'
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!
        if (i > 0) out += ','
        out += JSON.stringify(key) + ':' + canonical((value as Record<string, unknown>)[key])
      }
      return out + '}'
    }
    default:
      throw new NotJsonError(value)
  }
}

export { LosslessNumber, isLosslessNumber }

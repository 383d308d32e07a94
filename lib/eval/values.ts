/**
 * Values as the BFCL checker sees them: Python objects. The released checker compares what `json.loads` (or
 * Python's `ast`) produced, so the distinctions Python makes must survive parsing here:
 *
 * - `int` and `float` are different types (`5` vs `5.0`), yet equal as numbers (`5 == 5.0`, `True == 1`);
 * - `list` and `tuple` are different types and never equal to each other;
 * - `dict` keys are compared as sets, values with `==`.
 *
 * Representation: `null` (None), `boolean` (bool), `bigint` (int, any size), `number` (float), `string` (str),
 * `PyValue[]` (list), `PyTuple` (tuple), `PyDict` (dict: a Map, insertion-ordered like Python's dict, and safe
 * for any key such as `__proto__`).
 */
import { isLosslessNumber } from 'lossless-json'
import { GrpoError, expectString, invalidArg } from '../errors.js'
import { parseLossless } from '../reward/json.js'

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

export type PyDict = Map<string, PyValue>
export type PyValue = null | boolean | bigint | number | string | PyValue[] | PyTuple | PyDict

export type PyTypeName = 'NoneType' | 'bool' | 'int' | 'float' | 'str' | 'list' | 'tuple' | 'dict'

/** `type(value).__name__`. */
export function pyType(value: PyValue): PyTypeName {
  if (value === null) return 'NoneType'
  switch (typeof value) {
    case 'boolean':
      return 'bool'
    case 'bigint':
      return 'int'
    case 'number':
      return 'float'
    case 'string':
      return 'str'
  }
  if (Array.isArray(value)) return 'list'
  if (value instanceof PyTuple) return 'tuple'
  return 'dict'
}

export function isDict(value: PyValue): value is PyDict {
  return value instanceof Map
}

/** A numeric view for `==` across bool, int and float: bigint for bool and int, number for float. */
function numeric(value: PyValue): bigint | number | undefined {
  if (typeof value === 'boolean') return value ? 1n : 0n
  if (typeof value === 'bigint' || typeof value === 'number') return value
  return undefined
}

function numbersEqual(a: bigint | number, b: bigint | number): boolean {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a === b
  if (typeof a === 'number' && typeof b === 'number') return a === b
  // int == float: exact, as Python compares them (no rounding of the int to a double).
  const [i, f] = typeof a === 'bigint' ? [a, b as number] : [b as bigint, a as number]
  return Number.isInteger(f) && BigInt(f) === i
}

/** Python's `a == b` for these values. */
export function pyEquals(a: PyValue, b: PyValue): boolean {
  const na = numeric(a)
  const nb = numeric(b)
  if (na !== undefined || nb !== undefined) return na !== undefined && nb !== undefined && numbersEqual(na, nb)
  if (a === null || b === null) return a === b
  if (typeof a === 'string' || typeof b === 'string') return a === b
  if (Array.isArray(a)) return Array.isArray(b) && sequencesEqual(a, b)
  if (a instanceof PyTuple) return b instanceof PyTuple && sequencesEqual(a.items, b.items)
  if (!(a instanceof Map) || !(b instanceof Map)) return false
  if (a.size !== b.size) return false
  for (const [key, value] of a) {
    if (!b.has(key) || !pyEquals(value, b.get(key)!)) return false
  }
  return true
}

function sequencesEqual(a: readonly PyValue[], b: readonly PyValue[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (!pyEquals(a[i]!, b[i]!)) return false
  return true
}

/** Python's `value in options` for a list. */
export function pyIn(value: PyValue, options: readonly PyValue[]): boolean {
  return options.some((option) => pyEquals(option, value))
}

/**
 * Python's `len(x)` and `x[j]` for the sequence-like values the checker indexes: lists and tuples by item,
 * strings by code point (Python's str is a sequence of code points). Other values: undefined.
 */
export function pySequence(value: PyValue): readonly PyValue[] | undefined {
  if (Array.isArray(value)) return value
  if (value instanceof PyTuple) return value.items
  if (typeof value === 'string') return Array.from(value)
  return undefined
}

/**
 * The checker's string normalization: drop spaces and the characters `,./-_*^`, lowercase, and turn single
 * quotes into double quotes (so "April 1, 2024" and "april 1 2024" compare equal).
 */
export function standardizeString(text: string): string {
  return expectString(text, 'text').replace(/[ ,./\-_*^]/g, '').toLowerCase().replaceAll("'", '"')
}

/** A value parsed from JSON (LosslessNumbers from lossless-json, or plain JavaScript values) as a PyValue. */
export function fromJson(value: unknown): PyValue {
  return pyFromJson(value, 0)
}

function pyFromJson(value: unknown, depth: number): PyValue {
  if (depth > MAX_DEPTH) invalidArg(`a JSON value nested at most ${MAX_DEPTH} levels deep`, 'value', value)
  if (value === null || typeof value === 'boolean' || typeof value === 'string' || typeof value === 'bigint') return value
  if (typeof value === 'number') {
    // A plain JavaScript number cannot say whether it was written 5 or 5.0: integers count as int.
    return Number.isInteger(value) ? BigInt(value) : value
  }
  if (isLosslessNumber(value)) return numberFromLexeme(String(value))
  // Already Python values.
  if (value instanceof Map || value instanceof PyTuple) return value as PyValue
  if (Array.isArray(value)) return value.map((v) => pyFromJson(v, depth + 1))
  if (typeof value === 'object') {
    const map: PyDict = new Map()
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) map.set(k, pyFromJson(v, depth + 1))
    return map
  }
  return invalidArg('a JSON value', 'value', value)
}

/** `json.loads` of a number lexeme: an int unless it has a fraction or an exponent. */
export function numberFromLexeme(lexeme: string): bigint | number {
  return /[.eE]/.test(lexeme) ? Number(lexeme) : BigInt(lexeme)
}

/** `json.loads(text)` as a PyValue; malformed JSON is a GrpoError (ERR_GRPO_INVALID_ARG) with the parser's message. */
export function parseJsonValue(text: string): PyValue {
  expectString(text, 'text')
  let parsed: unknown
  try {
    parsed = parseLossless(text)
  } catch (cause) {
    if (cause instanceof GrpoError) throw cause
    throw new GrpoError(`Expected JSON text for text but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
  return fromJson(parsed)
}

/** How deep the PyValue helpers follow nested lists and dicts (BFCL's values are a few levels deep). */
const MAX_DEPTH = 1000

/** The container's children one level down, or a GrpoError past MAX_DEPTH (a cyclic or absurdly deep value). */
function deeper(depth: number, value: unknown): number {
  if (depth >= MAX_DEPTH) invalidArg(`a value nested at most ${MAX_DEPTH} levels deep`, 'value', value)
  return depth + 1
}

/** The value as plain JSON-able JavaScript (for results.json): ints as numbers when safe, else strings. */
export function toPlain(value: PyValue): unknown {
  return plainAt(value, 0)
}

function plainAt(value: PyValue, depth: number): unknown {
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString()
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value)
  if (Array.isArray(value)) {
    const d = deeper(depth, value)
    return value.map((v) => plainAt(v, d))
  }
  if (value instanceof PyTuple) return value.items.map((v) => plainAt(v, deeper(depth, value)))
  if (value instanceof Map) {
    const d = deeper(depth, value)
    const out: Record<string, unknown> = {}
    for (const [k, v] of value) Object.defineProperty(out, k, { value: plainAt(v, d), enumerable: true, writable: true, configurable: true })
    return out
  }
  return value
}

function floatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan'
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf'
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0'
  // Python's repr: the shortest round-trip digits, positional for exponents in [-4, 16), else d.ddde±XX.
  const [mantissa, expText] = x.toExponential().split('e') as [string, string]
  const exp = Number(expText)
  if (exp >= -4 && exp < 16) {
    const fixed = x.toFixed(Math.max(0, (mantissa.split('.')[1]?.length ?? 0) - exp))
    return fixed.includes('.') ? fixed : fixed + '.0'
  }
  return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`
}

function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'"
  let out = quote
  for (const ch of s) {
    if (ch === quote || ch === '\\') out += '\\' + ch
    else if (ch === '\n') out += '\\n'
    else if (ch === '\r') out += '\\r'
    else if (ch === '\t') out += '\\t'
    else if (ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f) out += '\\x' + ch.charCodeAt(0).toString(16).padStart(2, '0')
    else out += ch
  }
  return out + quote
}

/** Python's `repr(value)`, for messages that read like the released checker's. */
export function pyRepr(value: PyValue): string {
  return reprAt(value, 0)
}

function reprAt(value: PyValue, depth: number): string {
  if (value === null) return 'None'
  switch (typeof value) {
    case 'boolean':
      return value ? 'True' : 'False'
    case 'bigint':
      return value.toString()
    case 'number':
      return floatRepr(value)
    case 'string':
      return strRepr(value)
  }
  if (!Array.isArray(value) && !(value instanceof PyTuple) && !(value instanceof Map)) return invalidArg('a Python value (null, boolean, bigint, number, string, array, PyTuple or Map)', 'value', value)
  const d = deeper(depth, value)
  if (Array.isArray(value)) return '[' + value.map((v) => reprAt(v, d)).join(', ') + ']'
  if (value instanceof PyTuple) return '(' + value.items.map((v) => reprAt(v, d)).join(', ') + (value.items.length === 1 ? ',)' : ')')
  return '{' + [...value].map(([k, v]) => `${strRepr(k)}: ${reprAt(v, d)}`).join(', ') + '}'
}

/**
 * JSON text of a value as Python's `json.dumps` writes it: ints as digits, floats always with a fraction or an
 * exponent (`5.0`), so reading it back gives the same types. Tuples become lists.
 */
export function toJsonText(value: PyValue): string {
  return jsonTextAt(value, 0)
}

function jsonTextAt(value: PyValue, depth: number): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false'
    case 'bigint':
      return value.toString()
    case 'number':
      if (!Number.isFinite(value)) invalidArg('a finite float for JSON', 'value', value)
      return floatRepr(value)
    case 'string':
      return JSON.stringify(value)
  }
  if (!Array.isArray(value) && !(value instanceof PyTuple) && !(value instanceof Map)) return invalidArg('a Python value (null, boolean, bigint, number, string, array, PyTuple or Map)', 'value', value)
  const d = deeper(depth, value)
  if (Array.isArray(value)) return '[' + value.map((v) => jsonTextAt(v, d)).join(', ') + ']'
  if (value instanceof PyTuple) return '[' + value.items.map((v) => jsonTextAt(v, d)).join(', ') + ']'
  return '{' + [...value].map(([k, v]) => `${JSON.stringify(k)}: ${jsonTextAt(v, d)}`).join(', ') + '}'
}

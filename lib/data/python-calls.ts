/**
 * A parser for the Python-style call lists of ToolACE: `[Tide Times(port="Le Havre (north)", days=2), f(x=[1,
 * {"a": None}])]`. Function names may hold spaces and punctuation; arguments must be keywords; values are
 * Python literals (strings with every quote and escape form, numbers, True/False/None, lists, tuples, dicts).
 * JSON's true/false/null are read as well, since hand-written records mix the two.
 *
 * Real tool names also hold the characters of the syntax around them (`Vehicle Identification Number (VIN)
 * Lookup`, `Get Agent's Active Listings`). Given the record's own tool names, the parser reads a name as the
 * longest of them that stands at the call's start followed by `(`, and falls back to the plain rule (up to the
 * first bracket, quote, comma or `=`) for names the list lacks.
 *
 * Numbers keep their lexical type, as in the reward: an integer stays an integer of any size and a float a
 * double (as LosslessNumber lexemes in JSON form, so `5.` becomes `5.0` and `0x1F` becomes `31`).
 */
import { LosslessNumber } from 'lossless-json'
import { GrpoError, describe } from '../errors.js'

export interface PythonCall {
  name: string
  arguments: Record<string, unknown>
}

export type CallSyntaxKind = 'syntax' | 'positional-argument' | 'duplicate-argument'

/** A call list that does not parse; `kind` tells a positional argument apart from other errors. */
export class CallSyntaxError extends GrpoError {
  constructor(
    message: string,
    readonly kind: CallSyntaxKind,
    readonly position: number,
  ) {
    super(message, 'ERR_GRPO_INVALID_ARG')
  }
}

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v'
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9'
}

function isIdentifierStart(c: string | undefined): boolean {
  return c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c > '\u007f')
}

function isIdentifierPart(c: string | undefined): boolean {
  return isIdentifierStart(c) || isDigit(c)
}

// Characters that cannot be part of a function name: they would make the name ambiguous with the syntax around.
const NOT_IN_NAME = new Set(['(', ')', '[', ']', '{', '}', ',', '=', '"', "'", '\n', '\r'])

const SIMPLE_ESCAPES: Record<string, string> = {
  '\\': '\\',
  "'": "'",
  '"': '"',
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
}

const RADIX_PREFIX: Record<string, number | undefined> = { x: 16, o: 8, b: 2 }

function setKey(target: Record<string, unknown>, key: string, value: unknown): void {
  // A plain assignment to "__proto__" would change the prototype instead of adding a key.
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true })
}

export interface ParseCallsOptions {
  /** The tool names of the record: a name holding `(`, `'` and the like is read whole when it is one of these. */
  names?: Iterable<string>
}

class Parser {
  private i = 0
  /** Known names, longest first, so that `Get Agent's Active Listings` wins over a tool named `Get`. */
  private readonly names: string[]

  constructor(
    private readonly s: string,
    names: Iterable<string> = [],
  ) {
    this.names = [...new Set(names)].filter((n) => typeof n === 'string' && n.trim() !== '').sort((a, b) => b.length - a.length)
  }

  /** The known name that starts at the current position and is followed by `(` (after spaces), if any. */
  private knownName(): string | null {
    for (const name of this.names) {
      if (!this.s.startsWith(name, this.i)) continue
      let j = this.i + name.length
      while (isSpace(this.s[j])) j++
      if (this.s[j] === '(') return name
    }
    return null
  }

  private fail(expected: string, what: string, kind: CallSyntaxKind = 'syntax', at = this.i): never {
    const received = at >= this.s.length ? 'the end of the text' : describe(this.s.slice(at, at + 24))
    throw new CallSyntaxError(`Expected ${expected} for ${what} at position ${at} but received ${received}`, kind, at)
  }

  private skipSpace(): void {
    while (isSpace(this.s[this.i])) this.i++
  }

  parseCalls(): PythonCall[] {
    const calls: PythonCall[] = []
    this.skipSpace()
    if (this.s[this.i] === '[') {
      this.i++
      this.skipSpace()
      if (this.s[this.i] === ']') this.i++
      else {
        for (;;) {
          calls.push(this.parseCall())
          this.skipSpace()
          if (this.s[this.i] === ',') {
            this.i++
            this.skipSpace()
            if (this.s[this.i] !== ']') continue
          } else if (this.s[this.i] !== ']') this.fail('"," or "]"', 'the call list')
          this.i++
          break
        }
      }
    } else {
      calls.push(this.parseCall())
    }
    this.skipSpace()
    if (this.i < this.s.length) this.fail('the end of the call list', 'the call list')
    return calls
  }

  private parseCall(): PythonCall {
    const known = this.knownName()
    let name: string
    if (known !== null) {
      this.i += known.length
      this.skipSpace()
      name = known.trim()
    } else {
      const start = this.i
      while (this.i < this.s.length && !NOT_IN_NAME.has(this.s[this.i]!)) this.i++
      name = this.s.slice(start, this.i).trim()
    }
    if (name === '' || this.s[this.i] !== '(') this.fail('a function name followed by "("', 'a call')
    this.i++
    const args: Record<string, unknown> = {}
    const what = `call ${JSON.stringify(name)}`
    this.skipSpace()
    if (this.s[this.i] === ')') {
      this.i++
      return { name, arguments: args }
    }
    for (;;) {
      this.skipSpace()
      const keyStart = this.i
      if (isIdentifierStart(this.s[this.i])) {
        this.i++
        while (isIdentifierPart(this.s[this.i])) this.i++
      }
      const key = this.s.slice(keyStart, this.i)
      this.skipSpace()
      if (key === '' || this.s[this.i] !== '=' || this.s[this.i + 1] === '=') {
        this.fail('a keyword argument (name=value)', what, 'positional-argument', keyStart)
      }
      this.i++
      const value = this.parseValue(`argument ${JSON.stringify(key)} of ${what}`)
      if (Object.prototype.hasOwnProperty.call(args, key)) {
        this.fail('each argument once', what, 'duplicate-argument', keyStart)
      }
      setKey(args, key, value)
      this.skipSpace()
      if (this.s[this.i] === ',') {
        this.i++
        this.skipSpace()
        if (this.s[this.i] !== ')') continue
      } else if (this.s[this.i] !== ')') this.fail('"," or ")"', what)
      this.i++
      return { name, arguments: args }
    }
  }

  private parseValue(what: string): unknown {
    this.skipSpace()
    const c = this.s[this.i]
    if (c === '"' || c === "'") return this.parseString(false, what)
    if ((c === 'r' || c === 'R' || c === 'u' || c === 'U') && (this.s[this.i + 1] === '"' || this.s[this.i + 1] === "'")) {
      this.i++
      return this.parseString(c === 'r' || c === 'R', what)
    }
    if (c === '[') return this.parseSequence(']', what)
    if (c === '(') return this.parseTuple(what)
    if (c === '{') return this.parseDict(what)
    if (isDigit(c) || ((c === '-' || c === '+' || c === '.') && (isDigit(this.s[this.i + 1]) || this.s[this.i + 1] === '.'))) {
      return this.parseNumber(what)
    }
    if (isIdentifierStart(c)) {
      const start = this.i
      while (isIdentifierPart(this.s[this.i])) this.i++
      const word = this.s.slice(start, this.i)
      switch (word) {
        case 'True':
        case 'true':
          return true
        case 'False':
        case 'false':
          return false
        case 'None':
        case 'null':
          return null
      }
      this.skipSpace()
      const found = this.s[this.i] === '(' ? 'a literal value (a nested call cannot be evaluated)' : 'a literal value'
      this.fail(found, what, 'syntax', start)
    }
    return this.fail('a value', what)
  }

  private parseString(raw: boolean, what: string): string {
    const s = this.s
    const quote = s[this.i]!
    const triple = s.startsWith(quote.repeat(3), this.i)
    const open = this.i
    this.i += triple ? 3 : 1
    let out = ''
    let segment = this.i
    for (;;) {
      if (this.i >= s.length) this.fail(`a closing ${quote}`, `the string of ${what}`, 'syntax', open)
      const c = s[this.i]!
      if (c === quote && (!triple || s.startsWith(quote.repeat(3), this.i))) {
        out += s.slice(segment, this.i)
        this.i += triple ? 3 : 1
        return out
      }
      if (c !== '\\') {
        this.i++
        continue
      }
      out += s.slice(segment, this.i)
      if (raw) {
        // In a raw string a backslash stays, and only keeps the next character from ending the string.
        out += s.slice(this.i, this.i + 2)
        this.i += 2
      } else {
        out += this.parseEscape(what)
      }
      segment = this.i
    }
  }

  private parseEscape(what: string): string {
    const s = this.s
    const at = this.i
    const e = s[this.i + 1]
    this.i += 2
    if (e === undefined) return this.fail('an escape after the backslash', `the string of ${what}`, 'syntax', at)
    if (e === '\n') return ''
    const simple = SIMPLE_ESCAPES[e]
    if (simple !== undefined) return simple
    if (e >= '0' && e <= '7') {
      let end = this.i
      while (end < this.i + 2 && s[end]! >= '0' && s[end]! <= '7') end++
      const code = parseInt(s.slice(this.i - 1, end), 8)
      this.i = end
      return String.fromCharCode(code)
    }
    const width = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0
    if (width > 0) {
      const hex = s.slice(this.i, this.i + width)
      if (hex.length !== width || !/^[0-9a-fA-F]+$/.test(hex)) {
        this.fail(`${width} hexadecimal digits after \\${e}`, `the string of ${what}`, 'syntax', at)
      }
      const code = parseInt(hex, 16)
      if (code > 0x10ffff) this.fail('a code point up to 10FFFF', `the string of ${what}`, 'syntax', at)
      this.i += width
      return String.fromCodePoint(code)
    }
    if (e === 'N') return this.fail('an escape other than \\N{…}', `the string of ${what}`, 'syntax', at)
    // Python keeps an unknown escape as written (with a warning).
    return '\\' + e
  }

  private parseNumber(what: string): LosslessNumber {
    const s = this.s
    const start = this.i
    let negative = false
    if (s[this.i] === '-' || s[this.i] === '+') negative = s[this.i++] === '-'
    const radix = s[this.i] === '0' ? RADIX_PREFIX[(s[this.i + 1] ?? '').toLowerCase()] : undefined
    let lexeme: string
    if (radix !== undefined) {
      this.i += 2
      const digitsStart = this.i
      while (/[0-9a-fA-F_]/.test(s[this.i] ?? '')) this.i++
      const digits = s.slice(digitsStart, this.i).replaceAll('_', '')
      const valid = digits !== '' && [...digits].every((d) => parseInt(d, 16) < radix)
      if (!valid) this.fail(`digits of base ${radix}`, what, 'syntax', start)
      const value = BigInt((radix === 16 ? '0x' : radix === 8 ? '0o' : '0b') + digits)
      lexeme = (negative && value !== 0n ? '-' : '') + value.toString()
    } else {
      const readDigits = () => {
        const from = this.i
        while (isDigit(s[this.i]) || (s[this.i] === '_' && isDigit(s[this.i + 1]))) this.i++
        return s.slice(from, this.i).replaceAll('_', '')
      }
      let whole = readDigits()
      let fraction: string | null = null
      let exponent: string | null = null
      if (s[this.i] === '.') {
        this.i++
        fraction = readDigits()
      }
      if (whole === '' && !fraction) this.fail('a number', what, 'syntax', start)
      if (s[this.i] === 'e' || s[this.i] === 'E') {
        const at = this.i++
        let sign = ''
        if (s[this.i] === '+' || s[this.i] === '-') sign = s[this.i++] === '-' ? '-' : ''
        const digits = readDigits()
        if (digits === '') this.fail('the digits of an exponent', what, 'syntax', at)
        exponent = sign + digits
      }
      whole = whole.replace(/^0+(?=\d)/, '') || '0'
      if (fraction === null && exponent === null) {
        lexeme = (negative && /[1-9]/.test(whole) ? '-' : '') + whole
      } else {
        lexeme = (negative ? '-' : '') + whole + (fraction !== null ? '.' + (fraction || '0') : '') + (exponent !== null ? 'e' + exponent : '')
      }
    }
    if (isIdentifierPart(s[this.i]) || s[this.i] === '.') this.fail('a number', what, 'syntax', start)
    return new LosslessNumber(lexeme)
  }

  private parseItems(close: string, what: string): { items: unknown[]; trailingComma: boolean } {
    this.i++
    const items: unknown[] = []
    let trailingComma = false
    this.skipSpace()
    while (this.s[this.i] !== close) {
      items.push(this.parseValue(`${what}[${items.length}]`))
      this.skipSpace()
      trailingComma = false
      if (this.s[this.i] === ',') {
        this.i++
        this.skipSpace()
        trailingComma = true
      } else if (this.s[this.i] !== close) this.fail(`"," or "${close}"`, what)
    }
    this.i++
    return { items, trailingComma }
  }

  private parseSequence(close: string, what: string): unknown[] {
    return this.parseItems(close, what).items
  }

  // `(x)` is x in parentheses; `(x,)`, `(x, y)` and `()` are tuples, written as JSON lists.
  private parseTuple(what: string): unknown {
    const { items, trailingComma } = this.parseItems(')', what)
    return items.length === 1 && !trailingComma ? items[0] : items
  }

  private parseDict(what: string): Record<string, unknown> {
    this.i++
    const dict: Record<string, unknown> = {}
    this.skipSpace()
    while (this.s[this.i] !== '}') {
      const keyAt = this.i
      const key = this.parseValue(`a key of ${what}`)
      let text: string
      if (typeof key === 'string') text = key
      // json.dumps turns int, bool and None keys into strings; other keys have no JSON form.
      else if (key instanceof LosslessNumber && /^-?\d+$/.test(key.value)) text = key.value
      else if (key === true || key === false || key === null) text = String(key)
      else return this.fail('a string, integer, boolean or None key', what, 'syntax', keyAt)
      this.skipSpace()
      if (this.s[this.i] !== ':') this.fail('":" after the key', what)
      this.i++
      setKey(dict, text, this.parseValue(`${what}[${JSON.stringify(text)}]`))
      this.skipSpace()
      if (this.s[this.i] === ',') {
        this.i++
        this.skipSpace()
      } else if (this.s[this.i] !== '}') this.fail('"," or "}"', what)
    }
    this.i++
    return dict
  }
}

/**
 * Parses a Python-style call list (`[f(a=1), g(b="x")]`, or one bare call `f(a=1)`). Throws a CallSyntaxError
 * (code ERR_GRPO_INVALID_ARG) with the position and, in `kind`, whether an argument was positional. With
 * `names` (the record's tools), names holding brackets or quotes are read whole.
 */
export function parsePythonCalls(text: string, options: ParseCallsOptions = {}): PythonCall[] {
  if (typeof text !== 'string') {
    throw new CallSyntaxError(`Expected a string for the call list but received ${describe(text)}`, 'syntax', 0)
  }
  if (typeof options !== 'object' || options === null) {
    throw new CallSyntaxError(`Expected an options object for parsePythonCalls but received ${describe(options)}`, 'syntax', 0)
  }
  const names = options.names
  if (names !== undefined && (typeof names !== 'object' || names === null || typeof (names as Iterable<string>)[Symbol.iterator] !== 'function')) {
    throw new CallSyntaxError(`Expected an iterable of strings for options.names but received ${describe(names)}`, 'syntax', 0)
  }
  try {
    return new Parser(text, names).parseCalls()
  } catch (error) {
    if (error instanceof CallSyntaxError) throw error
    // Only a stack overflow on absurdly deep nesting gets here.
    throw new CallSyntaxError(`Expected values nested less deeply for the call list but received ${describe(text)}`, 'syntax', 0)
  }
}

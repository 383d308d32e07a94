/**
 * Streaming record readers: a file (or any stream of text) holding either one JSON array of records or one
 * record per line (JSONL), split into record texts without holding the file in memory. The format is told by
 * the first character that is not whitespace: `[` for an array, anything else for lines.
 *
 * Nothing in the input stops the reading: a malformed record is passed on as it is (its own parse reports it), and
 * what cannot be a record at all (an unclosed array, a record over the size limit) comes out as a RecordError in
 * its place, with its line number, while the records around it still come out.
 */
import { createReadStream } from 'node:fs'
import { StringDecoder } from 'node:string_decoder'
import { expectString, fileCall, invalidArg } from '../errors.js'

export interface RecordText {
  /** Position of the record in the file, from 0. */
  index: number
  /** The line (from 1) where the record starts. */
  line: number
  /** The record's text; '' for a blank line kept with `keepBlankLines`. */
  text: string
  error?: undefined
}

/** Something in the input that cannot be a record, in the place where a record was expected. */
export interface RecordError {
  index: number
  line: number
  text?: undefined
  /** "Expected X for Y but received Z". */
  error: string
}

export type RecordItem = RecordText | RecordError

export interface ReadOptions {
  /** JSONL only: blank lines come out as records with text '' (so outputs can stay line-aligned). Default false. */
  keepBlankLines?: boolean
  /** The longest record, in characters (default 64 Mi): a longer one becomes a RecordError and is not held. */
  maxRecordChars?: number
}

export type TextSource = string | AsyncIterable<string | Uint8Array>

export const DEFAULT_MAX_RECORD_CHARS = 64 * 1024 * 1024

const enum State {
  Detect,
  BeforeElement,
  Element,
  Done,
  Lines,
}

const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const COMMA = 0x2c
const QUOTE = 0x22
const BACKSLASH = 0x5c
const NEWLINE = 0x0a

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09
}

/**
 * Splits text, pushed in chunks of any size, into record texts. In array mode it tracks the open brackets and the
 * string state, enough to find the commas between top-level elements; each element is parsed later, so a
 * malformed record is reported on its own instead of failing the file. A closing bracket that does not match the
 * innermost open one closes up to the one it matches (`[1, 2}` in an element ends at the `}`), and a stray one is
 * left in the element, so one broken element does not swallow the ones after it.
 */
export class RecordSplitter {
  private state = State.Detect
  /** Open brackets of the current element (their character codes). */
  private open: number[] = []
  private inString = false
  private escaped = false
  private pieces: string[] = []
  private pendingChars = 0
  private oversized = false
  private index = 0
  private line = 1
  private recordLine = 1
  /** Elements read after the closing ] (junk at the end): no unclosed-array error at the end for those. */
  private afterClose = false
  private readonly keepBlankLines: boolean
  private readonly maxRecordChars: number

  constructor(
    private readonly name = 'the input',
    options: ReadOptions = {},
  ) {
    expectString(name, 'name')
    if (typeof options !== 'object' || options === null) invalidArg('an options object', 'RecordSplitter options', options)
    const { keepBlankLines = false, maxRecordChars = DEFAULT_MAX_RECORD_CHARS } = options
    if (typeof keepBlankLines !== 'boolean') invalidArg('a boolean', 'keepBlankLines', keepBlankLines)
    if (!Number.isSafeInteger(maxRecordChars) || maxRecordChars < 1) invalidArg('a positive integer', 'maxRecordChars', maxRecordChars)
    this.keepBlankLines = keepBlankLines
    this.maxRecordChars = maxRecordChars
  }

  push(chunk: string): RecordItem[] {
    expectString(chunk, 'chunk')
    const out: RecordItem[] = []
    let i = 0
    const n = chunk.length
    let start = 0
    while (i < n) {
      switch (this.state) {
        case State.Detect: {
          const c = chunk.charCodeAt(i)
          if (isJsonSpace(c) || c === 0xfeff) {
            if (c === NEWLINE) this.line++
            i++
            break
          }
          if (c === OPEN_BRACKET) {
            this.state = State.BeforeElement
            i++
          } else {
            this.state = State.Lines
            this.recordLine = this.line
            start = i
          }
          break
        }
        case State.BeforeElement: {
          const c = chunk.charCodeAt(i)
          if (isJsonSpace(c)) {
            if (c === NEWLINE) this.line++
            i++
          } else if (c === CLOSE_BRACKET) {
            this.state = State.Done
            i++
          } else {
            start = this.beginElement(i)
          }
          break
        }
        case State.Element: {
          // The hot loop: one pass over the record's characters.
          for (; i < n; i++) {
            const c = chunk.charCodeAt(i)
            if (c === NEWLINE) this.line++
            if (this.inString) {
              if (this.escaped) this.escaped = false
              else if (c === BACKSLASH) this.escaped = true
              else if (c === QUOTE) this.inString = false
            } else if (c === QUOTE) this.inString = true
            else if (c === OPEN_BRACE || c === OPEN_BRACKET) this.open.push(c)
            else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
              if (this.open.length > 0) this.close(c === CLOSE_BRACE ? OPEN_BRACE : OPEN_BRACKET)
              else if (c === CLOSE_BRACKET) {
                this.endElement(out, chunk.slice(start, i))
                this.state = State.Done
                i++
                break
              }
            } else if (c === COMMA && this.open.length === 0) {
              this.endElement(out, chunk.slice(start, i))
              this.state = State.BeforeElement
              i++
              break
            }
          }
          if (this.state === State.Element) this.hold(chunk.slice(start, n))
          break
        }
        case State.Done: {
          const c = chunk.charCodeAt(i)
          if (isJsonSpace(c)) {
            if (c === NEWLINE) this.line++
            i++
          } else {
            // Text after the closing ]: a stray bracket ended the array early, or the file has junk at its end.
            // Either way it is read as more elements, each reported on its own.
            this.afterClose = true
            start = this.beginElement(i)
          }
          break
        }
        default: {
          // Lines (JSONL): a line may end in \r\n.
          const newline = chunk.indexOf('\n', i)
          if (newline < 0) {
            this.hold(chunk.slice(start, n))
            i = n
            break
          }
          this.hold(chunk.slice(start, newline))
          this.emitLine(out)
          this.line++
          this.recordLine = this.line
          i = start = newline + 1
        }
      }
    }
    return out
  }

  private beginElement(at: number): number {
    this.state = State.Element
    this.open.length = 0
    this.inString = false
    this.escaped = false
    this.recordLine = this.line
    return at
  }

  /** Pops the open brackets up to the innermost `opener`; a closer that matches nothing open is left alone. */
  private close(opener: number): void {
    const at = this.open.lastIndexOf(opener)
    if (at >= 0) this.open.length = at
  }

  /** Keeps a piece of the current record, or only counts it once the record is over the size limit. */
  private hold(piece: string): void {
    if (this.oversized) return
    this.pendingChars += piece.length
    if (this.pendingChars > this.maxRecordChars) {
      this.oversized = true
      this.pieces = []
    } else if (piece !== '') this.pieces.push(piece)
  }

  /** The held record: its text, or a RecordError when it was over the size limit. */
  private take(last: string, trim: (text: string) => string): RecordItem {
    this.hold(last)
    const item: RecordItem = this.oversized
      ? {
          index: this.index++,
          line: this.recordLine,
          error: `Expected a record of at most ${this.maxRecordChars} characters for line ${this.recordLine} of ${this.name} but received ${this.pendingChars}`,
        }
      : { index: this.index++, line: this.recordLine, text: trim(this.pieces.join('')) }
    this.pieces = []
    this.pendingChars = 0
    this.oversized = false
    return item
  }

  private endElement(out: RecordItem[], last: string): void {
    out.push(this.take(last, (text) => text.trim()))
  }

  private emitLine(out: RecordItem[]): void {
    const item = this.take('', (text) => text.trim())
    if (item.text === '' && !this.keepBlankLines) this.index-- // a skipped blank line takes no index
    else out.push(item)
  }

  /** Records still held at the end of the input, and a RecordError when a JSON array is not closed. */
  end(): RecordItem[] {
    const out: RecordItem[] = []
    if (this.state === State.Lines) {
      if (this.pieces.length > 0 || this.oversized) this.emitLine(out)
    } else if (this.state === State.BeforeElement || this.state === State.Element) {
      if (this.state === State.Element) this.endElement(out, '')
      if (!this.afterClose) {
        const error = `Expected the closing ] of the array for ${this.name} but received the end of the input (line ${this.line})`
        out.push({ index: this.index++, line: this.line, error })
      }
      this.state = State.Done
    }
    return out
  }
}

/** A path, or an async iterable of text or bytes (ERR_GRPO_INVALID_ARG otherwise). */
export function checkTextSource(source: unknown, what: string): asserts source is TextSource {
  if (typeof source === 'string') return
  if (typeof source !== 'object' || source === null || typeof (source as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function') {
    invalidArg('a file path or an async iterable of strings or bytes', what, source)
  }
}

async function* chunksOf(source: TextSource): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8')
  if (typeof source === 'string') {
    // A file that cannot be read (missing, a folder, no permission) is a GrpoError naming the path.
    // A path Node refuses outright (a NUL byte in it) throws at once: the same GrpoError.
    const stream = await fileCall('a readable file', source, async () => createReadStream(source, { highWaterMark: 1 << 20 }))
    const chunks = stream[Symbol.asyncIterator]()
    for (;;) {
      const next = await fileCall('a readable file', source, () => chunks.next())
      if (next.done) break
      yield decoder.write(next.value as Buffer)
    }
  } else {
    for await (const chunk of source) {
      if (typeof chunk === 'string') yield chunk
      else if (chunk instanceof Uint8Array) yield decoder.write(chunk as Buffer)
      else invalidArg('strings or bytes (Uint8Array)', 'the chunks of the input', chunk)
    }
  }
  const rest = decoder.end()
  if (rest) yield rest
}

/**
 * The records of a file path (or a stream of text or bytes), one at a time, in file order: texts, and RecordErrors
 * where the input holds something that cannot be a record.
 */
export async function* readRecordTexts(source: TextSource, name?: string, options?: ReadOptions): AsyncGenerator<RecordItem> {
  checkTextSource(source, 'source')
  if (name !== undefined) expectString(name, 'name')
  const splitter = new RecordSplitter(name ?? (typeof source === 'string' ? source : 'the input'), options)
  for await (const chunk of chunksOf(source)) yield* splitter.push(chunk)
  yield* splitter.end()
}

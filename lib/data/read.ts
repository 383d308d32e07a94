/**
 * Streaming record readers: a file (or any stream of text) holding either one JSON array of records or one
 * record per line (JSONL), split into record texts without holding the file in memory. The format is told by
 * the first character that is not whitespace: `[` for an array, anything else for lines.
 */
import { createReadStream } from 'node:fs'
import { StringDecoder } from 'node:string_decoder'
import { GrpoError, describe } from '../errors.js'

export interface RecordText {
  /** Position of the record in the file, from 0. */
  index: number
  text: string
}

export type TextSource = string | AsyncIterable<string | Uint8Array>

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
 * Splits text, pushed in chunks of any size, into record texts. In array mode it tracks only nesting depth and
 * string state, enough to find the commas between top-level elements; each element is parsed later, so a
 * malformed record is reported on its own instead of failing the file.
 */
export class RecordSplitter {
  private state = State.Detect
  private depth = 0
  private inString = false
  private escaped = false
  private pieces: string[] = []
  private index = 0
  private offset = 0

  constructor(private readonly name = 'the input') {}

  push(chunk: string): RecordText[] {
    const out: RecordText[] = []
    let i = 0
    const n = chunk.length
    let start = 0
    while (i < n) {
      switch (this.state) {
        case State.Detect: {
          const c = chunk.charCodeAt(i)
          if (isJsonSpace(c) || c === 0xfeff) {
            i++
            break
          }
          if (c === OPEN_BRACKET) {
            this.state = State.BeforeElement
            i++
          } else {
            this.state = State.Lines
            start = i
          }
          break
        }
        case State.BeforeElement: {
          const c = chunk.charCodeAt(i)
          if (isJsonSpace(c)) i++
          else if (c === CLOSE_BRACKET) {
            this.state = State.Done
            i++
          } else {
            this.state = State.Element
            this.depth = 0
            start = i
          }
          break
        }
        case State.Element: {
          // The hot loop: one pass over the record's characters.
          for (; i < n; i++) {
            const c = chunk.charCodeAt(i)
            if (this.inString) {
              if (this.escaped) this.escaped = false
              else if (c === BACKSLASH) this.escaped = true
              else if (c === QUOTE) this.inString = false
            } else if (c === QUOTE) this.inString = true
            else if (c === OPEN_BRACE || c === OPEN_BRACKET) this.depth++
            else if (c === CLOSE_BRACE || (c === CLOSE_BRACKET && this.depth > 0)) this.depth--
            else if (this.depth <= 0 && (c === COMMA || c === CLOSE_BRACKET)) {
              this.pieces.push(chunk.slice(start, i))
              out.push({ index: this.index++, text: this.pieces.join('').trim() })
              this.pieces = []
              this.state = c === COMMA ? State.BeforeElement : State.Done
              i++
              break
            }
          }
          if (this.state === State.Element) this.pieces.push(chunk.slice(start, n))
          break
        }
        case State.Done: {
          const c = chunk.charCodeAt(i)
          if (!isJsonSpace(c)) {
            throw new GrpoError(
              `Expected nothing after the closing ] of the array for ${this.name} but received ${describe(chunk.slice(i, i + 20))} at character ${this.offset + i}`,
              'ERR_GRPO_INVALID_ARG',
            )
          }
          i++
          break
        }
        default: {
          // Lines (JSONL): blank lines are skipped; a line may end in \r\n.
          const newline = chunk.indexOf('\n', i)
          if (newline < 0) {
            this.pieces.push(chunk.slice(start, n))
            i = n
            break
          }
          this.pieces.push(chunk.slice(start, newline))
          this.emitLine(out)
          i = start = newline + 1
        }
      }
    }
    this.offset += n
    return out
  }

  private emitLine(out: RecordText[]): void {
    const line = this.pieces.join('').trim()
    this.pieces = []
    if (line !== '') out.push({ index: this.index++, text: line })
  }

  /** Records still held at the end of the input; throws when a JSON array is not closed. */
  end(): RecordText[] {
    const out: RecordText[] = []
    if (this.state === State.Lines) this.emitLine(out)
    else if (this.state === State.BeforeElement || this.state === State.Element) {
      throw new GrpoError(
        `Expected the closing ] of the array for ${this.name} but received the end of the input`,
        'ERR_GRPO_INVALID_ARG',
      )
    }
    return out
  }
}

async function* chunksOf(source: TextSource): AsyncGenerator<string> {
  const iterable = typeof source === 'string' ? createReadStream(source, { highWaterMark: 1 << 20 }) : source
  const decoder = new StringDecoder('utf8')
  for await (const chunk of iterable) yield typeof chunk === 'string' ? chunk : decoder.write(chunk as Buffer)
  const rest = decoder.end()
  if (rest) yield rest
}

/** The record texts of a file path (or a stream of text or bytes), one at a time, in file order. */
export async function* readRecordTexts(source: TextSource, name?: string): AsyncGenerator<RecordText> {
  const splitter = new RecordSplitter(name ?? (typeof source === 'string' ? source : 'the input'))
  for await (const chunk of chunksOf(source)) yield* splitter.push(chunk)
  yield* splitter.end()
}

/**
 * Reading calls out of completions. A decoder turns what a model answered into DecodedCall[] (BFCL's
 * `[{name: {arguments}}]`), or says why it cannot: `decode-failed` (nothing that reads as calls) or
 * `wrong-format` (it reads, but not as a list of named calls with keyword arguments).
 *
 * Formats:
 * - `tool-call`: `<tool_call>…</tool_call>` blocks holding JSON, a list of `{"name", "arguments"}` objects (the
 *   Tool-N1 format) or one object per block (Qwen and Hermes templates); every block after the last `</think>`
 *   counts, in order.
 * - `python`: BFCL's prompting format, a Python list of calls with keyword arguments: `[f(a=1), g(b='x')]`.
 * - `json`: a bare JSON list (or object) of `{"name", "arguments"}` calls.
 * - `auto`: `tool-call` when the text has a `<tool_call>` tag, else `json` when it reads as JSON, else `python`.
 * OpenAI `tool_calls` and BFCL's own result files (`[{"name": "{json}"}]`) have decoders of their own.
 */
import { parsePythonCalls } from '../data/python-calls.js'
import { expectString, invalidArg } from '../errors.js'
import { parseLossless, pythonStrip } from '../reward/json.js'
import type { DecodedCall } from './checker.js'
import { type PyDict, type PyValue, fromJson, isDict } from './values.js'

export type CallFormat = 'tool-call' | 'python' | 'json' | 'auto'
export const CALL_FORMATS: readonly CallFormat[] = Object.freeze(['tool-call', 'python', 'json', 'auto'])

export type DecodeResult = { calls: DecodedCall[] } | { error: 'decode-failed' | 'wrong-format'; message: string }

const OPEN = '<tool_call>'
const CLOSE = '</tool_call>'
const THINK_END = '</think>'

const failed = (message: string): DecodeResult => ({ error: 'decode-failed', message })
const wrongFormat = (message: string): DecodeResult => ({ error: 'wrong-format', message })

function short(text: string): string {
  return JSON.stringify(text.length > 80 ? text.slice(0, 80) + '…' : text)
}

/** `{"name": string, "arguments": {…}}` objects as calls; anything else is the wrong format. */
function callsFromObjects(value: PyValue, where: string): DecodeResult {
  const list = Array.isArray(value) ? value : [value]
  const calls: DecodedCall[] = []
  for (const [i, item] of list.entries()) {
    if (!isDict(item)) return wrongFormat(`Expected {"name", "arguments"} objects in ${where} but item ${i} is not an object`)
    const name = item.get('name')
    const args = item.get('arguments')
    if (typeof name !== 'string') return wrongFormat(`Expected a string "name" in item ${i} of ${where}`)
    if (args === undefined || !isDict(args)) return wrongFormat(`Expected an "arguments" object in call ${name} of ${where}`)
    calls.push({ name, arguments: args })
  }
  return { calls }
}

function parseJsonText(text: string): PyValue {
  let value = fromJson(parseLossless(text))
  // Some models write the list as a JSON string holding JSON.
  if (typeof value === 'string') value = fromJson(parseLossless(value))
  return value
}

/** A JavaScript value (parsed JSON) holding `{"name", "arguments"}` objects. */
export function decodeJsonValue(value: unknown): DecodeResult {
  let v: PyValue
  try {
    v = fromJson(value)
  } catch (error) {
    return failed(`Expected JSON calls but ${(error as Error).message}`)
  }
  return callsFromObjects(v, 'the calls')
}

/** `<tool_call>` blocks after the last `</think>`, in order. */
export function decodeToolCallBlocks(text: string): DecodeResult {
  expectString(text, 'text')
  const cut = text.lastIndexOf(THINK_END)
  const body = cut >= 0 ? text.slice(cut + THINK_END.length) : text
  const calls: DecodedCall[] = []
  let from = 0
  let blocks = 0
  for (;;) {
    const open = body.indexOf(OPEN, from)
    if (open < 0) break
    const close = body.indexOf(CLOSE, open + OPEN.length)
    if (close < 0) break
    blocks++
    const content = pythonStrip(body.slice(open + OPEN.length, close))
    from = close + CLOSE.length
    let value: PyValue
    try {
      value = parseJsonText(content)
    } catch {
      return failed(`Expected JSON in <tool_call> block ${blocks} but received ${short(content)}`)
    }
    if (value === null) continue
    const r = callsFromObjects(value, `<tool_call> block ${blocks}`)
    if ('error' in r) return r
    calls.push(...r.calls)
  }
  if (blocks === 0) {
    const open = body.indexOf(OPEN, from)
    if (open >= 0) return failed(`Expected </tool_call> after the <tool_call> at offset ${open} but the completion ends inside the block`)
    return failed(`Expected a <tool_call>…</tool_call> block but received ${short(body)}`)
  }
  return { calls }
}

/** A bare JSON list or object of calls. */
export function decodeJsonCalls(text: string): DecodeResult {
  expectString(text, 'text')
  const body = pythonStrip(text.replace(/^```(?:json)?\s*|\s*```$/g, ''))
  let value: PyValue
  try {
    value = parseJsonText(body)
  } catch {
    return failed(`Expected a JSON list of calls but received ${short(body)}`)
  }
  return callsFromObjects(value, 'the JSON')
}

/**
 * BFCL's prompting format. As BFCL does: code fences and surrounding quotes are dropped, and a missing outer
 * `[`/`]` is added. Differences (the parser is the data pipeline's): tuples are read as lists, and positional
 * arguments, nested calls and bare names fail to decode (BFCL ignores, converts or stringifies them).
 */
export function decodePythonCalls(text: string): DecodeResult {
  expectString(text, 'text')
  let body = text.replace(/^[`\n ]+|[`\n ]+$/g, '')
  if (!body.startsWith('[')) body = '[' + body
  if (!body.endsWith(']')) body = body + ']'
  body = pythonStrip(body).replace(/^'+|'+$/g, '')
  try {
    const parsed = parsePythonCalls(body)
    return { calls: parsed.map((c) => ({ name: c.name, arguments: fromJson(c.arguments) as PyDict })) }
  } catch (error) {
    return failed(`Expected a Python list of calls but ${(error as Error).message}`)
  }
}

export function decodeText(text: string, format: CallFormat = 'auto'): DecodeResult {
  expectString(text, 'text')
  if (!(CALL_FORMATS as readonly unknown[]).includes(format)) invalidArg(`one of ${CALL_FORMATS.join(', ')}`, 'format', format)
  switch (format) {
    case 'tool-call':
      return decodeToolCallBlocks(text)
    case 'python':
      return decodePythonCalls(text)
    case 'json':
      return decodeJsonCalls(text)
    default: {
      if (text.includes(OPEN)) return decodeToolCallBlocks(text)
      const json = decodeJsonCalls(text)
      if (!('error' in json) || json.error === 'wrong-format') return json
      return decodePythonCalls(text)
    }
  }
}

/** OpenAI `tool_calls` (`[{type: "function", function: {name, arguments: "<json>"}}]`); `names` maps sent names back. */
export function decodeOpenAIToolCalls(toolCalls: unknown, names?: ReadonlyMap<string, string>): DecodeResult {
  if (!Array.isArray(toolCalls)) return wrongFormat('Expected tool_calls to be a list')
  const calls: DecodedCall[] = []
  for (const [i, tc] of toolCalls.entries()) {
    const fn = (tc as { function?: { name?: unknown; arguments?: unknown } } | null)?.function
    if (typeof fn?.name !== 'string') return wrongFormat(`Expected a function name in tool_calls[${i}]`)
    let args: PyValue
    try {
      args = typeof fn.arguments === 'string' ? parseJsonText(fn.arguments === '' ? '{}' : fn.arguments) : fromJson(fn.arguments ?? {})
    } catch {
      return failed(`Expected JSON arguments in tool_calls[${i}] (${fn.name}) but received ${short(String(fn.arguments))}`)
    }
    if (!isDict(args)) return wrongFormat(`Expected an arguments object in tool_calls[${i}] (${fn.name})`)
    calls.push({ name: names?.get(fn.name) ?? fn.name, arguments: args })
  }
  return { calls }
}

/**
 * A BFCL result's `result` field: text (decoded with `format`), or the function-calling models' list of
 * `{name: arguments}` objects whose arguments are an object or JSON text of one.
 */
export function decodeBfclResult(result: unknown, format: CallFormat = 'auto'): DecodeResult {
  if (typeof result === 'string') return decodeText(result, format)
  if (!Array.isArray(result)) return wrongFormat('Expected a result string or a list of {name: arguments} objects')
  const calls: DecodedCall[] = []
  for (const [i, item] of result.entries()) {
    const entries = typeof item === 'object' && item !== null && !Array.isArray(item) ? Object.entries(item) : []
    if (entries.length !== 1) return wrongFormat(`Expected one {name: arguments} pair in result[${i}]`)
    const [name, raw] = entries[0]!
    let args: PyValue
    try {
      args = typeof raw === 'string' ? parseJsonText(raw) : fromJson(raw)
    } catch {
      return failed(`Expected JSON arguments for ${name} in result[${i}]`)
    }
    if (!isDict(args)) return wrongFormat(`Expected an arguments object for ${name} in result[${i}]`)
    calls.push({ name, arguments: args })
  }
  return { calls }
}

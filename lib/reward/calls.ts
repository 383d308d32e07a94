/** Parsing the content of a `<tool_call>` block into calls (docs/reward.md, "Finding and parsing the calls"). */
import { expectString } from '../errors.js'
import { isLosslessNumber, parseLossless, pythonStrip } from './json.js'
import type { Reason, ToolCall } from './types.js'

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isLosslessNumber(value)
}

const hasOwn = Object.prototype.hasOwnProperty

export type Extracted = { reason: Reason; calls: null } | { reason: null; calls: ToolCall[] }

/**
 * Steps 2 to 4 of docs/reward.md ("Finding and parsing the calls") on the block's content. Never throws for a string.
 * `argumentsKeys` are the keys that may hold a call's arguments, the first present one wins (the ToolRL variant
 * also reads ToolRL's own `parameters`).
 */
export function extractCalls(content: string, argumentsKeys: readonly string[] = ['arguments']): Extracted {
  expectString(content, 'content')
  let value: unknown
  try {
    value = parseLossless(pythonStrip(content))
    if (typeof value === 'string') value = parseLossless(value)
  } catch {
    // SyntaxError for malformed JSON, RangeError for nesting deeper than the stack: both mean no call.
    return { reason: 'bad-json', calls: null }
  }
  if (value === null || typeof value === 'boolean' || isLosslessNumber(value)) return { reason: 'no-call', calls: null }
  const list = Array.isArray(value) ? value : [value]
  const calls: ToolCall[] = new Array(list.length)
  for (let i = 0; i < list.length; i++) {
    const element: unknown = list[i]
    if (!isPlainObject(element) || !hasOwn.call(element, 'name')) return { reason: 'bad-format', calls: null }
    let key: string | undefined
    for (let k = 0; k < argumentsKeys.length && key === undefined; k++) if (hasOwn.call(element, argumentsKeys[k]!)) key = argumentsKeys[k]
    if (key === undefined) return { reason: 'bad-format', calls: null }
    calls[i] = { name: element.name, arguments: element[key] }
  }
  return { reason: null, calls }
}

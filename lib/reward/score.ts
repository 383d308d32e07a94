/**
 * The Tool-N1 tool-call reward for one completion (docs/reward.md). Runs on the main thread for single calls
 * and small batches, and inside the scoring workers for large ones.
 */
import { GrpoError, expectString, invalidArg } from '../errors.js'
import { extractCalls } from './calls.js'
import { JsonTooDeepError, MAX_JSON_DEPTH, NotJsonError, canonical, isLosslessNumber, parseLossless } from './json.js'
import { prepareToolrlTruth, scoreToolrl, type ToolrlTruth } from './toolrl.js'
import {
  THINK_ORDERS,
  VARIANTS,
  type GroundTruth,
  type Reason,
  type ScoreOptions,
  type ScoreResult,
  type ThinkOrder,
  type ToolCall,
  type Variant,
} from './types.js'

const ASSISTANT_MARKER = '<|im_start|>assistant'
const OPEN = '<tool_call>'
const CLOSE = '</tool_call>'

/** The ground truth reduced to what matching needs: sorted canonical calls and sorted canonical names. */
export interface PreparedTruth {
  calls: string[]
  names: string[]
  /** The calls as the toolrl variant compares them (filled in when that variant asks). */
  toolrl?: ToolrlTruth
}

export interface ResolvedOptions {
  variant: Variant
  thinkOrder: ThinkOrder
}

export function resolveOptions(options: ScoreOptions | undefined): ResolvedOptions {
  if (options === undefined || options === null) return { variant: 'binary', thinkOrder: 'presence' }
  if (typeof options !== 'object') invalidArg('an options object', 'options', options)
  const variant = options.variant ?? 'binary'
  if (!VARIANTS.includes(variant)) invalidArg(`one of ${VARIANTS.join(', ')}`, 'options.variant', variant)
  const thinkOrder = options.thinkOrder ?? 'presence'
  if (!THINK_ORDERS.includes(thinkOrder)) {
    invalidArg(`one of ${THINK_ORDERS.join(', ')}`, 'options.thinkOrder', thinkOrder)
  }
  return { variant, thinkOrder }
}

/** The text that is scored: what follows the last assistant marker, when there is one. */
export function scoredText(completion: string): string {
  expectString(completion, 'completion')
  // Most completions hold no marker at all: a forward search (much faster in V8 than lastIndexOf) rules it out.
  if (completion.indexOf(ASSISTANT_MARKER) < 0) return completion
  return completion.slice(completion.lastIndexOf(ASSISTANT_MARKER) + ASSISTANT_MARKER.length)
}

/**
 * Start index and content of the last `<tool_call>(.*?)</tool_call>` match. Walks the matches left to right as
 * the regular expression does, because the last match is not always the last closing tag's block
 * (`<tool_call>a<tool_call>b</tool_call>` has one match whose content is `a<tool_call>b`).
 */
export function lastBlock(text: string): { start: number; content: string } | null {
  expectString(text, 'text')
  let from = 0
  let start = -1
  let contentStart = 0
  let contentEnd = 0
  for (;;) {
    const open = text.indexOf(OPEN, from)
    if (open < 0) break
    const close = text.indexOf(CLOSE, open + OPEN.length)
    if (close < 0) break
    start = open
    contentStart = open + OPEN.length
    contentEnd = close
    from = close + CLOSE.length
  }
  return start < 0 ? null : { start, content: text.slice(contentStart, contentEnd) }
}

function hasThinkTags(text: string, thinkOrder: ThinkOrder, blockStart: number): boolean {
  if (thinkOrder === 'presence') return text.includes('<think>') && text.includes('</think>')
  const open = text.indexOf('<think>')
  if (open < 0) return false
  const close = text.indexOf('</think>', open + '<think>'.length)
  return close >= 0 && close + '</think>'.length <= blockStart
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isLosslessNumber(value)
}

const hasOwn = Object.prototype.hasOwnProperty

function prepareList(list: readonly unknown[], what: string, toolrl: boolean): PreparedTruth {
  const calls: string[] = new Array(list.length)
  const names: string[] = new Array(list.length)
  for (let i = 0; i < list.length; i++) {
    const element: unknown = list[i]
    if (!isPlainObject(element) || !hasOwn.call(element, 'name') || !hasOwn.call(element, 'arguments')) {
      invalidArg('an object with keys "name" and "arguments"', `${what}[${i}]`, element)
    }
    if (typeof element.name !== 'string') invalidArg('a string', `${what}[${i}].name`, element.name)
    let args: string
    try {
      args = canonical(element.arguments)
    } catch (error) {
      if (error instanceof NotJsonError) invalidArg('JSON values only', `${what}[${i}].arguments`, error.value)
      invalidArg('a JSON value nested less deeply', `${what}[${i}].arguments`, element.arguments)
    }
    const name = JSON.stringify(element.name)
    names[i] = name
    calls[i] = name + '\u0000' + args
  }
  const prepared: PreparedTruth = { calls: calls.sort(), names: names.sort() }
  // The toolrl variant keeps the calls in their order (it matches them greedily, expected call by expected call).
  if (toolrl) prepared.toolrl = prepareToolrlTruth(list as Record<string, unknown>[], what)
  return prepared
}

function prepareValue(value: unknown, what: string, toolrl: boolean): PreparedTruth {
  if (Array.isArray(value)) return prepareList(value, what, toolrl)
  if (isPlainObject(value)) return prepareList([value], what, toolrl)
  return invalidArg('a list of {name, arguments} objects, one such object, or JSON text of either', what, value)
}

/**
 * The longest ground truth accepted as JSON text, in characters. A tool-call ground truth is a few hundred bytes;
 * parsing tens of megabytes losslessly costs seconds and twenty times the text in memory.
 */
export const MAX_TRUTH_CHARS = 1 << 20

function parseTruthText(text: string, what: string): unknown {
  if (text.length > MAX_TRUTH_CHARS) {
    throw new GrpoError(`Expected JSON text of at most ${MAX_TRUTH_CHARS} characters for ${what} but received ${text.length} characters`, 'ERR_GRPO_INVALID_ARG')
  }
  let value: unknown
  try {
    value = parseLossless(text)
    if (typeof value === 'string') value = parseLossless(value)
  } catch (error) {
    if (error instanceof JsonTooDeepError) invalidArg(`JSON text nested at most ${MAX_JSON_DEPTH} levels deep`, what, text)
    invalidArg('JSON text of a list of {name, arguments} objects', what, text)
  }
  return value
}

// Ground truths repeat across the completions of one prompt (5 per prompt in Tool-N1), so the canonical form of
// JSON text is cached by value. Objects are not cached: a caller may mutate one between calls.
const TEXT_CACHE_LIMIT = 4096
const textCache = new Map<string, PreparedTruth>()

/**
 * Validates and canonicalizes a ground truth; throws ERR_GRPO_INVALID_ARG when it is malformed. `toolrl` also
 * prepares what the toolrl variant compares (and requires every call's arguments to be an object).
 */
export function prepareTruth(groundTruth: GroundTruth | unknown, what = 'groundTruth', toolrl = false): PreparedTruth {
  if (typeof groundTruth === 'string') {
    let prepared = textCache.get(groundTruth)
    if (prepared === undefined || (toolrl && prepared.toolrl === undefined)) {
      prepared = prepareValue(parseTruthText(groundTruth, what), what, toolrl)
      if (textCache.size >= TEXT_CACHE_LIMIT) textCache.clear()
      textCache.set(groundTruth, prepared)
    }
    return prepared
  }
  if (typeof groundTruth === 'object' && groundTruth !== null) return prepareValue(groundTruth, what, toolrl)
  return invalidArg('a list of {name, arguments} objects, one such object, or JSON text of either', what, groundTruth)
}

function sameSorted(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Compares parsed calls with a prepared ground truth: [names match, calls match]. Never throws. */
function match(calls: ToolCall[], truth: PreparedTruth): [boolean, boolean] {
  if (calls.length !== truth.calls.length) return [false, false]
  const names: string[] = new Array(calls.length)
  const keys: string[] = new Array(calls.length)
  try {
    // Names first: arguments are canonicalized only when the names can match.
    for (let i = 0; i < calls.length; i++) names[i] = canonical(calls[i]!.name)
    const sortedNames = names.slice().sort()
    if (!sameSorted(sortedNames, truth.names)) return [false, false]
    for (let i = 0; i < calls.length; i++) keys[i] = names[i] + '\u0000' + canonical(calls[i]!.arguments)
  } catch {
    // Unreachable for parsed completions (parseLossless caps the depth below canonical()'s limit); kept so that
    // a result never depends on anything but the text.
    return [false, false]
  }
  keys.sort()
  return [true, sameSorted(keys, truth.calls)]
}

/** Scores one completion against a prepared ground truth with resolved options. Never throws. */
export function scorePrepared(completion: string, truth: PreparedTruth, options: ResolvedOptions): ScoreResult {
  if (options.variant === 'toolrl') {
    if (truth.toolrl === undefined) invalidArg('a ground truth prepared for the toolrl variant', 'truth', truth)
    return scoreToolrl(completion, truth.toolrl)
  }
  const text = scoredText(completion)
  const block = lastBlock(text)
  let reason: Reason | null = null
  let calls: ToolCall[] | null = null
  let namesMatch = false
  let callsMatch = false
  if (block === null) {
    reason = 'no-call'
  } else {
    const extracted = extractCalls(block.content)
    reason = extracted.reason
    calls = extracted.calls
    if (calls !== null) {
      ;[namesMatch, callsMatch] = match(calls, truth)
      if (!namesMatch) reason = 'name-mismatch'
      else if (!callsMatch) reason = 'args-mismatch'
    }
  }
  const variant = options.variant
  const checkThink = variant !== 'binary-no-think'
  const think = checkThink && hasThinkTags(text, options.thinkOrder, block === null ? text.length : block.start)
  if (reason === null) reason = checkThink && !think ? 'no-think' : 'ok'

  let score: number
  if (variant === 'binary') score = callsMatch && think ? 1 : 0
  else if (variant === 'binary-no-think') score = callsMatch ? 1 : 0
  else {
    // Tenths, so that the sums are exactly 0, 0.2, 0.4, 0.8 and 1 rather than 0.2 + 0.2 in floating point.
    let tenths = (think ? 2 : 0) + (callsMatch ? 8 : 0)
    if (variant === 'partial-name' && namesMatch && !callsMatch) tenths += 2
    score = tenths / 10
  }
  return { score, reason, calls }
}

/**
 * The Tool-N1 reward of one completion. Throws ERR_GRPO_INVALID_ARG for a malformed ground truth or options,
 * or a completion that is not a string; never for anything the completion's text contains.
 */
export function scoreToolCall(completion: string, groundTruth: GroundTruth, options?: ScoreOptions): ScoreResult {
  if (typeof completion !== 'string') invalidArg('a string', 'completion', completion)
  const resolved = resolveOptions(options)
  return scorePrepared(completion, prepareTruth(groundTruth, 'groundTruth', resolved.variant === 'toolrl'), resolved)
}

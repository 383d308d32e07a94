/**
 * The ToolRL reward (Qian et al., "ToolRL: Reward is All Tool Learning Needs", arXiv 2504.13958), variant
 * `toolrl` of the tool-call reward (docs/reward.md, "The ToolRL variant"). Written from the paper's definitions
 * and its released scorer's default configuration (no schedule, no length term, fine-grained matching):
 *
 *   score = format + correctness,   format ∈ {0, 1},   correctness ∈ [−3, 3]
 *
 * - format is 1 when the reply is exactly `<think>…</think>\n<tool_call>\n…\n</tool_call>` with one block
 *   (a reply to a request that expects no call: `<think>…</think>`, optionally `\n<response>…</response>`);
 * - correctness gives partial credit: a frequency-aware IoU of the tool names, then for each expected call (in
 *   order) the best still unused predicted call of the same name, worth the IoU of the two sets of argument names
 *   plus one point per expected argument whose value is equal; the sum S is normalized to
 *   6·S / S_max − 3 with S_max = 1 + Σ_calls (1 + number of expected arguments). Unparsable calls score −3.
 *
 * Values compare as Python's `==` compares what `json.loads` returns, which is what the released scorer does:
 * numbers by value (`5 == 5.0`), `true == 1`, `false == 0`, object keys as sets, arrays in order.
 */
import { invalidArg } from '../errors.js'
import { isLosslessNumber, pythonStrip } from './json.js'
import { extractCalls } from './calls.js'
import type { Reason, ScoreResult, ToolCall } from './types.js'

const ASSISTANT_MARKER = '<|im_start|>assistant'
const END_OF_TURN = '<|im_end|>'
const OPEN = '<tool_call>'
const CLOSE = '</tool_call>'
/** Where a call's arguments may be: node-grpo's (and Tool-N1's) `arguments`, or ToolRL's `parameters`. */
const ARGUMENT_KEYS = ['arguments', 'parameters']

export const TOOLRL_FORMAT_MAX = 1
export const TOOLRL_CORRECTNESS_MAX = 3
export const TOOLRL_CORRECTNESS_MIN = -3

/** One expected call, reduced to what ToolRL compares: its name's key and each argument's name and value key. */
export interface ToolrlCall {
  name: string
  args: [string, string][]
}

/** The ground truth as ToolRL reads it (built by prepareTruth when the variant asks for it). */
export type ToolrlTruth = ToolrlCall[]

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isLosslessNumber(value)
}

function numberKey(x: number): string {
  if (Number.isNaN(x)) return 'nan'
  // Python compares an int and a float exactly: 10**20 == 1e20, so an integral double is keyed as its integer.
  if (Number.isInteger(x)) return 'n' + BigInt(x).toString()
  return 'd' + String(x)
}

/** The double (or integer) that a JSON number lexeme denotes, as Python's json module reads it. */
function lexemeKey(lexeme: string): string {
  if (/[.eE]/.test(lexeme)) return numberKey(Number(lexeme))
  return 'n' + BigInt(lexeme).toString()
}

/**
 * A text that two JSON values share exactly when Python's `==` holds between them: `True == 1 == 1.0`,
 * `-0.0 == 0`, dicts by key set and values, lists in order. Throws for a value JSON cannot hold.
 */
export function pythonValueKey(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return 's' + JSON.stringify(value)
    case 'boolean':
      return value ? 'n1' : 'n0'
    case 'number':
      return numberKey(value)
    case 'bigint':
      return 'n' + value.toString()
    case 'object': {
      if (value === null) return 'null'
      if (isLosslessNumber(value)) return lexemeKey(String(value))
      if (Array.isArray(value)) return '[' + value.map(pythonValueKey).join(',') + ']'
      const keys = Object.keys(value).sort()
      return '{' + keys.map((k) => JSON.stringify(k) + ':' + pythonValueKey((value as Record<string, unknown>)[k])).join(',') + '}'
    }
    default:
      throw new TypeError(`not a JSON value: ${typeof value}`)
  }
}

/** The expected calls as ToolRL compares them; `list` is already validated as {name, arguments} objects. */
export function prepareToolrlTruth(list: readonly Record<string, unknown>[], what: string): ToolrlTruth {
  return list.map((call, i) => {
    const args = call.arguments
    if (!isPlainObject(args)) invalidArg('an object of arguments (the toolrl variant compares argument names)', `${what}[${i}].arguments`, args)
    return { name: pythonValueKey(call.name), args: Object.keys(args).map((k): [string, string] => [k, pythonValueKey(args[k])]) }
  })
}

/**
 * The frequency-aware IoU of two lists: |A ∩ B| / (|A| + |B| − |A ∩ B|) counting repeats, 1 for two empty
 * lists and 0 when only one is empty.
 */
export function multisetIou(a: readonly string[], b: readonly string[]): number {
  if (a.length === 0 && b.length === 0) return 1
  if (a.length === 0 || b.length === 0) return 0
  const counts = new Map<string, number>()
  for (const x of a) counts.set(x, (counts.get(x) ?? 0) + 1)
  let common = 0
  for (const x of b) {
    const n = counts.get(x) ?? 0
    if (n > 0) {
      common++
      counts.set(x, n - 1)
    }
  }
  return common / (a.length + b.length - common)
}

/** The reply the released scorer reads: after the last assistant marker, up to the end of that turn, stripped. */
export function toolrlReply(completion: string): string {
  let text = completion
  const marker = text.lastIndexOf(ASSISTANT_MARKER)
  if (marker >= 0) text = text.slice(marker + ASSISTANT_MARKER.length)
  const end = text.indexOf(END_OF_TURN)
  if (end >= 0) text = text.slice(0, end)
  return pythonStrip(text)
}

function count(text: string, piece: string): number {
  let n = 0
  for (let at = text.indexOf(piece); at >= 0; at = text.indexOf(piece, at + piece.length)) n++
  return n
}

/** `^<think>.*?</think>` followed by `tail`, the pattern's lazy middle spanning anything (re.DOTALL). */
function thinkThen(reply: string, tailStart: number): boolean {
  const close = '</think>'
  return reply.startsWith('<think>') && tailStart - close.length >= '<think>'.length && reply.startsWith(close, tailStart - close.length)
}

/** The format score: 1 for the exact layout the released scorer asks for, else 0. */
export function toolrlFormat(reply: string, expectsCalls: boolean): number {
  if (expectsCalls) {
    // <think>…</think>\n<tool_call>\n…\n</tool_call>, with exactly one opening and one closing tag.
    if (count(reply, OPEN) !== 1 || count(reply, CLOSE) !== 1) return 0
    const open = reply.indexOf(OPEN)
    const tail = '\n' + CLOSE
    const ok =
      thinkThen(reply, open - 1) &&
      reply[open - 1] === '\n' &&
      reply[open + OPEN.length] === '\n' &&
      reply.endsWith(tail) &&
      reply.length - tail.length >= open + OPEN.length + 1
    return ok ? 1 : 0
  }
  // <think>…</think> alone, or followed by \n<response>…</response> with one of each response tag.
  if (reply.endsWith('</think>') && thinkThen(reply, reply.length)) return 1
  if (count(reply, '<response>') !== 1 || count(reply, '</response>') !== 1 || !reply.endsWith('</response>')) return 0
  const response = reply.indexOf('\n<response>')
  return response >= 0 && thinkThen(reply, response) ? 1 : 0
}

/**
 * The text the released scorer reads as the predicted calls: after the first `<tool_call>`, up to the next
 * `</tool_call>` or `<tool_call>`, whichever comes first (its `split(OPEN)[1].split(CLOSE)[0]`); null unless the
 * reply holds both tags somewhere (its two asserts).
 */
function firstBlock(reply: string): string | null {
  const open = reply.indexOf(OPEN)
  if (open < 0 || !reply.includes(CLOSE)) return null
  const start = open + OPEN.length
  const nextOpen = reply.indexOf(OPEN, start)
  const close = reply.indexOf(CLOSE, start)
  let end = nextOpen < 0 ? reply.length : nextOpen
  if (close >= 0 && close < end) end = close
  return reply.slice(start, end)
}

/** The calls of a block: a JSON list (node-grpo's layout) or one JSON object per line (ToolRL's own). */
function blockCalls(content: string): { reason: Reason; calls: null } | { reason: null; calls: ToolCall[] } {
  const whole = extractCalls(content, ARGUMENT_KEYS)
  if (whole.reason !== 'bad-json') return whole
  const lines = pythonStrip(content).split('\n')
  const calls: ToolCall[] = []
  for (const line of lines) {
    const one = extractCalls(line, ARGUMENT_KEYS)
    if (one.reason !== null || one.calls.length !== 1) return whole
    calls.push(one.calls[0]!)
  }
  return { reason: null, calls }
}

class Unscorable extends Error {}

/** A predicted call's argument names and value keys; arguments that are not an object make the reply unscorable. */
function predictedArgs(call: ToolCall): Map<string, string> {
  const args = call.arguments
  if (!isPlainObject(args)) throw new Unscorable()
  const out = new Map<string, string>()
  for (const k of Object.keys(args)) out.set(k, pythonValueKey(args[k]))
  return out
}

/**
 * S and S_max of the released scorer's `compute_tool_call_reward`. Its exact-match shortcut is left out: an exact
 * match gets S = S_max here too (each expected call finds an identical, unused predicted call, worth 1 + its
 * argument count), so the result is the same.
 */
function correctnessSum(truth: ToolrlTruth, calls: readonly ToolCall[]): { score: number; max: number; namesMatch: boolean } {
  const predictedNames = calls.map((c) => pythonValueKey(c.name))
  const truthNames = truth.map((c) => c.name)
  let score = multisetIou(truthNames, predictedNames)
  let max = 1
  const used = new Set<number>()
  const argsOf = new Map<number, Map<string, string>>()
  for (const expected of truth) {
    max += 1 + expected.args.length
    let best = -1
    let bestScore = 0
    for (let i = 0; i < calls.length; i++) {
      if (used.has(i) || predictedNames[i] !== expected.name) continue
      let args = argsOf.get(i)
      if (args === undefined) argsOf.set(i, (args = predictedArgs(calls[i]!)))
      const keyScore = multisetIou(
        expected.args.map(([k]) => k),
        [...args.keys()],
      )
      let values = 0
      for (const [k, v] of expected.args) if (args.get(k) === v) values += 1
      const total = keyScore + values
      if (total > bestScore) {
        bestScore = total
        best = i
      }
    }
    if (best >= 0) {
      used.add(best)
      score += bestScore
    }
  }
  const sorted = (a: string[]) => a.slice().sort().join('\u0000')
  return { score, max, namesMatch: truthNames.length === predictedNames.length && sorted(truthNames) === sorted(predictedNames) }
}

/** Scores one completion with the ToolRL reward. Never throws. */
export function scoreToolrl(completion: string, truth: ToolrlTruth): ScoreResult {
  const reply = toolrlReply(completion)
  const expectsCalls = truth.length > 0
  const format = toolrlFormat(reply, expectsCalls)
  const block = firstBlock(reply)
  const extracted = block === null ? null : blockCalls(block)
  const calls = extracted?.calls ?? null
  if (!expectsCalls) {
    // The released scorer gives a reply to a request that expects no call a correctness of 0, calls or not.
    const reason: Reason = calls !== null && calls.length > 0 ? 'name-mismatch' : format === 1 ? 'ok' : 'bad-layout'
    return { score: format, reason, calls, parts: { format, correctness: 0 } }
  }
  const span = TOOLRL_CORRECTNESS_MAX - TOOLRL_CORRECTNESS_MIN
  let correctness = TOOLRL_CORRECTNESS_MIN
  let reason: Reason
  if (extracted === null) {
    reason = 'no-call'
  } else if (extracted.reason !== null) {
    reason = extracted.reason
  } else {
    try {
      const { score, max, namesMatch } = correctnessSum(truth, extracted.calls)
      // The scorer's own expression, in its order of operations (so the doubles agree): (max − min) · S / S_max + min.
      correctness = (span * score) / max + TOOLRL_CORRECTNESS_MIN
      reason = score === max ? (format === 1 ? 'ok' : 'bad-layout') : namesMatch ? 'args-mismatch' : 'name-mismatch'
    } catch (error) {
      if (!(error instanceof Unscorable)) throw error
      reason = 'bad-format'
    }
  }
  return { score: format + correctness, reason, calls: reason === 'no-call' || reason === 'bad-json' ? null : calls, parts: { format, correctness } }
}

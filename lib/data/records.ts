/**
 * The paper's preprocessing (its §4.1; docs/reward.md, "The data") of one xLAM or ToolACE record: tools and calls parsed into
 * structured objects, records with a call that fails to parse or names a tool absent from the record's tools
 * dropped with a reason, and each multi-turn conversation split into one instance per assistant call.
 */
import { GrpoError, describe, expectString, invalidArg } from '../errors.js'
import { buildToolPrompt, type ChatMessage, type ConversationTurn, type PromptToolCall } from '../prompt.js'
import { isLosslessNumber, parseLossless } from '../reward/json.js'
import { CallSyntaxError, parsePythonCalls } from './python-calls.js'

/** A training instance: the prompt's messages, the record's tools, and the expected calls. */
export interface TrainingInstance {
  messages: ChatMessage[]
  tools: unknown[]
  answer: PromptToolCall[]
}

export type DropReason =
  | 'bad-record-json'
  | 'bad-record'
  | 'no-tools'
  | 'tools-parse-error'
  | 'call-parse-error'
  | 'positional-argument'
  | 'unknown-tool'
  | 'no-calls'

export const DROP_REASONS: readonly DropReason[] = Object.freeze([
  'bad-record-json',
  'bad-record',
  'no-tools',
  'tools-parse-error',
  'call-parse-error',
  'positional-argument',
  'unknown-tool',
  'no-calls',
])

export type RecordOutcome = { instances: TrainingInstance[] } | { drop: { reason: DropReason; detail: string } }

/** Why a record cannot be used; the record functions turn it into a drop, `extractToolaceTools` throws it. */
export class RecordDropped extends GrpoError {
  constructor(
    readonly reason: DropReason,
    readonly detail: string,
  ) {
    super(`${typeof reason === 'string' ? reason : describe(reason)}: ${typeof detail === 'string' ? detail : describe(detail)}`, 'ERR_GRPO_INVALID_ARG')
  }
}
const Drop = RecordDropped

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isLosslessNumber(value)
}

function snippet(text: string): string {
  return JSON.stringify(text.length > 80 ? text.slice(0, 80) + '…' : text)
}

/** The tools of a record, each an object with a string name (OpenAI `{type, function}` wrappers accepted). */
function checkTools(value: unknown): { tools: unknown[]; names: Set<string> } {
  if (!Array.isArray(value)) throw new Drop('tools-parse-error', 'the tools are not a JSON list')
  const names = new Set<string>()
  value.forEach((tool, i) => {
    const inner = isObject(tool) && tool.type === 'function' && isObject(tool.function) ? tool.function : tool
    if (!isObject(inner) || typeof inner.name !== 'string') {
      throw new Drop('tools-parse-error', `tool ${i} is not an object with a string name`)
    }
    names.add(inner.name)
  })
  return { tools: value, names }
}

function checkNames(calls: readonly PromptToolCall[], names: Set<string>): void {
  for (const call of calls) {
    if (!names.has(call.name)) throw new Drop('unknown-tool', `the call ${JSON.stringify(call.name)} names no tool of the record`)
  }
}

function parseJsonField(value: unknown, reason: DropReason, field: string): unknown {
  if (typeof value !== 'string') return value
  try {
    return parseLossless(value)
  } catch (error) {
    throw new Drop(reason, `${field} is not JSON (${(error as Error).message})`)
  }
}

function outcome(build: () => TrainingInstance[]): RecordOutcome {
  try {
    return { instances: build() }
  } catch (error) {
    if (error instanceof RecordDropped) return { drop: { reason: error.reason, detail: error.detail } }
    throw error
  }
}

/**
 * Parses the text of one record. JSON.parse is several times faster than a lossless parse, so the record is
 * parsed again, losslessly, only when `exact` says that a field holding numbers is not JSON text (JSON text is
 * parsed losslessly later, so its numbers stay exact either way).
 */
export function parseRecordText(
  text: string,
  exact: (record: Record<string, unknown>) => boolean = () => false,
): { record: Record<string, unknown> } | { drop: { reason: DropReason; detail: string } } {
  expectString(text, 'text')
  if (typeof exact !== 'function') invalidArg('a function', 'exact', exact)
  let record: unknown
  try {
    record = JSON.parse(text)
    if (isObject(record) && exact(record)) record = parseLossless(text)
  } catch (error) {
    return { drop: { reason: 'bad-record-json', detail: (error as Error).message } }
  }
  if (!isObject(record)) return { drop: { reason: 'bad-record', detail: 'the record is not a JSON object' } }
  return { record }
}

/** Whether an xLAM record needs a lossless parse: its tools or answers are structured rather than JSON text. */
export function xlamNeedsExactParse(record: Record<string, unknown>): boolean {
  return typeof record.tools !== 'string' || typeof record.answers !== 'string'
}

/** xLAM: `{id, query, tools, answers}`, with `tools` and `answers` as JSON text. */
export function prepareXlamRecord(record: unknown): RecordOutcome {
  return outcome(() => {
    if (!isObject(record)) throw new Drop('bad-record', 'the record is not a JSON object')
    if (typeof record.query !== 'string' || record.query === '') throw new Drop('bad-record', 'the record has no query text')
    if (record.tools === undefined) throw new Drop('no-tools', 'the record has no tools')
    if (record.answers === undefined) throw new Drop('call-parse-error', 'the record has no answers')
    const { tools, names } = checkTools(parseJsonField(record.tools, 'tools-parse-error', 'tools'))
    const answers = parseJsonField(record.answers, 'call-parse-error', 'answers')
    if (!Array.isArray(answers)) throw new Drop('call-parse-error', 'the answers are not a JSON list')
    const answer: PromptToolCall[] = answers.map((call, i) => {
      if (!isObject(call) || typeof call.name !== 'string' || !isObject(call.arguments)) {
        throw new Drop('call-parse-error', `answer ${i} is not a {name, arguments} object with object arguments`)
      }
      return { name: call.name, arguments: call.arguments }
    })
    checkNames(answer, names)
    return [{ messages: buildToolPrompt(tools, [{ role: 'user', content: record.query }]), tools, answer }]
  })
}

export const TOOLACE_TOOLS_MARKER = 'Here is a list of functions in JSON format that you can invoke:'

/** The JSON list of tools that follows the marker sentence in a ToolACE system prompt. */
export function extractToolaceTools(system: string): unknown[] {
  expectString(system, 'system')
  const at = system.indexOf(TOOLACE_TOOLS_MARKER)
  if (at < 0) throw new Drop('no-tools', 'the system prompt has no list of functions')
  let start = at + TOOLACE_TOOLS_MARKER.length
  while (start < system.length && /\s/.test(system[start]!)) start++
  if (system[start] !== '[') throw new Drop('tools-parse-error', `no JSON list after the marker: ${snippet(system.slice(start))}`)
  // Find the list's closing bracket (text follows it in the system prompt), minding brackets inside strings.
  let depth = 0
  let inString = false
  let end = -1
  for (let i = start; i < system.length && end < 0; i++) {
    const c = system[i]
    if (inString) {
      if (c === '\\') i++
      else if (c === '"') inString = false
    } else if (c === '"') inString = true
    else if (c === '[' || c === '{') depth++
    else if (c === ']' || c === '}') {
      depth--
      if (depth === 0) end = i + 1
    }
  }
  if (end < 0) throw new Drop('tools-parse-error', 'the list of functions is not closed')
  let tools: unknown
  try {
    tools = parseLossless(system.slice(start, end))
  } catch (error) {
    throw new Drop('tools-parse-error', `the list of functions is not JSON (${(error as Error).message})`)
  }
  return checkTools(tools).tools
}

const ROLES: Record<string, ConversationTurn['role'] | undefined> = {
  user: 'user',
  human: 'user',
  assistant: 'assistant',
  gpt: 'assistant',
  tool: 'tool',
  function: 'tool',
  observation: 'tool',
}

/** The start of a Python-style call list whose first name is one of `names` (which may hold `(` and `'`). */
function startsWithKnownCall(trimmed: string, names: Iterable<string>): boolean {
  if (!trimmed.startsWith('[')) return false
  let i = 1
  while (/\s/.test(trimmed[i] ?? '')) i++
  for (const name of names) {
    if (typeof name !== 'string' || name === '' || !trimmed.startsWith(name, i)) continue
    let j = i + name.length
    while (/\s/.test(trimmed[j] ?? '')) j++
    if (trimmed[j] === '(') return true
  }
  return false
}

/**
 * Whether an assistant turn is a call list rather than prose: `[`, a name, `(` … `]`, where the name is either
 * plain (no brackets, quotes, commas, `=` or `:`) or one of the record's tool `names` (`[Get Agent's Active
 * Listings(…)]`). A turn that looks like one and does not parse drops the record (a silent fallback to prose
 * would train on a broken call).
 */
export function looksLikeCalls(text: string, names: Iterable<string> = []): boolean {
  expectString(text, 'text')
  if (typeof names !== 'object' || names === null || typeof (names as Iterable<string>)[Symbol.iterator] !== 'function') {
    invalidArg('an iterable of tool names', 'names', names)
  }
  const trimmed = text.trim()
  if (!trimmed.endsWith(']')) return false
  return /^\[\s*[^\s[\]{}()'",=:][^[\]{}()'",=:\n]*\(/.test(trimmed) || startsWithKnownCall(trimmed, names)
}

/**
 * The calls of a ShareGPT `function_call` turn: JSON text of one `{name, arguments}` object or of a list of them;
 * `arguments` may itself be JSON text (glaive-style records), and is `{}` when absent.
 */
function parseJsonCalls(text: string, turn: number): PromptToolCall[] {
  let value: unknown
  try {
    value = parseLossless(text.trim())
  } catch (error) {
    throw new Drop('call-parse-error', `turn ${turn}: the function call is not JSON (${(error as Error).message})`)
  }
  const list = Array.isArray(value) ? value : [value]
  if (list.length === 0) throw new Drop('call-parse-error', `turn ${turn}: the function call is an empty list`)
  return list.map((call, k) => {
    if (!isObject(call) || typeof call.name !== 'string') {
      throw new Drop('call-parse-error', `turn ${turn}: call ${k} is not a {name, arguments} object with a string name`)
    }
    let args: unknown = call.arguments ?? {}
    if (typeof args === 'string') {
      try {
        args = parseLossless(args)
      } catch (error) {
        throw new Drop('call-parse-error', `turn ${turn}: the arguments of call ${k} are not JSON (${(error as Error).message})`)
      }
    }
    if (!isObject(args)) throw new Drop('call-parse-error', `turn ${turn}: the arguments of call ${k} are not an object`)
    return { name: call.name, arguments: args }
  })
}

/**
 * ToolACE and the ShareGPT layout, one instance per call turn (earlier turns become its context):
 *
 * - ToolACE: `{system, conversations: [{from, value}]}`; the tools are the JSON list in the system text, the calls
 *   Python-style in assistant turns (`[Tide Times(port="x")]`), their names resolved against those tools.
 * - ShareGPT as LLaMA-Factory and many published tool datasets write it: `{conversations, tools, system?}` with
 *   `tools` a JSON list (or its text), calls in `function_call` turns as JSON (`{"name", "arguments"}` or a list),
 *   results in `observation` turns, roles `human`/`gpt`.
 *
 * Turns may use `role`/`content` instead of `from`/`value`, and the list may be called `messages`; `system` turns
 * are not part of the conversation (the prompt template writes its own system message).
 */
export function prepareToolaceRecord(record: unknown): RecordOutcome {
  return outcome(() => {
    if (!isObject(record)) throw new Drop('bad-record', 'the record is not a JSON object')
    const turns = record.conversations ?? record.messages
    if (record.system !== undefined && record.system !== null && typeof record.system !== 'string') {
      throw new Drop('bad-record', 'the record has a system field that is not text')
    }
    const hasTools = record.tools !== undefined && record.tools !== null && record.tools !== ''
    if (!hasTools && typeof record.system !== 'string') throw new Drop('bad-record', 'the record has no system text')
    if (!Array.isArray(turns)) throw new Drop('bad-record', 'the record has no conversations list')
    const tools = hasTools ? checkTools(parseJsonField(record.tools, 'tools-parse-error', 'tools')).tools : extractToolaceTools(record.system as string)
    const names = checkTools(tools).names
    const context: ConversationTurn[] = []
    const instances: TrainingInstance[] = []
    turns.forEach((turn: unknown, i: number) => {
      const from = isObject(turn) ? (turn.from ?? turn.role) : undefined
      const value = isObject(turn) ? (turn.value ?? turn.content) : undefined
      if (typeof value !== 'string' || typeof from !== 'string') {
        throw new Drop('bad-record', `turn ${i} is not a {from, value} object of strings`)
      }
      if (from === 'system') return
      let calls: PromptToolCall[]
      if (from === 'function_call') {
        calls = parseJsonCalls(value, i)
      } else {
        const role = ROLES[from]
        if (role === undefined) throw new Drop('bad-record', `turn ${i} has the unknown role ${JSON.stringify(from)}`)
        if (role !== 'assistant' || !looksLikeCalls(value, names)) {
          context.push({ role, content: value })
          return
        }
        try {
          calls = parsePythonCalls(value.trim(), { names })
        } catch (error) {
          const e = error as CallSyntaxError
          throw new Drop(e.kind === 'positional-argument' ? 'positional-argument' : 'call-parse-error', `turn ${i}: ${e.message}`)
        }
      }
      checkNames(calls, names)
      instances.push({ messages: buildToolPrompt(tools, context), tools, answer: calls })
      context.push({ role: 'assistant', calls })
    })
    if (instances.length === 0) throw new Drop('no-calls', 'no assistant turn makes a call')
    return instances
  })
}

/**
 * Running the calls of a model turn: each with a timeout, none able to crash the step. A tool that throws, rejects,
 * hangs past the timeout, or returns what JSON cannot hold gives an error result (`{"error": "…"}`) that the
 * model reads in the next turn, as TRL and verl do; a result longer than the limit is cut.
 */
import { pythonJson } from '../prompt.js'
import { isLosslessNumber } from '../reward/json.js'
import type { ToolCall } from '../reward/index.js'
import type { ToolCallRecord, ToolFunction, TrainerPrompt } from './types.js'

export interface ToolRunSettings {
  /** Milliseconds a call may take. */
  timeout: number
  /** Longest result text, in characters (UTF-16 code units); longer ones are cut and marked. */
  maxResponseChars: number
}

const hasOwn = Object.prototype.hasOwnProperty

/** Whether `tools` has a tool of this name (own keys only: `toString` is not a tool). */
export function hasTool(tools: Readonly<Record<string, ToolFunction>>, name: unknown): name is string {
  return typeof name === 'string' && hasOwn.call(tools, name) && typeof tools[name] === 'function'
}

/** A parsed call's arguments as plain JavaScript values: lossless numbers become numbers. */
export function plainValue(value: unknown): unknown {
  if (isLosslessNumber(value)) return Number(String(value))
  if (Array.isArray(value)) return value.map(plainValue)
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = plainValue(v)
    return out
  }
  return value
}

/** An error result, in the layout of the other results (Python's json.dumps separators). */
const errorText = (message: string) => `{"error": ${JSON.stringify(message)}}`

class ToolTimeout extends Error {}

/** A thrown value's message; anything can be thrown, even an object whose toString throws. */
function errorMessage(error: unknown): string {
  try {
    return error instanceof Error ? error.message : String(error)
  } catch {
    return 'a value that cannot be shown'
  }
}

/**
 * The text of a tool's return value: a string as it is, anything else as JSON the way JSON.stringify sees it
 * (toJSON, undefined members dropped), written with Python's json.dumps separators as the prompt's JSON is; an
 * error when JSON cannot hold it (a cycle, a BigInt, a function).
 */
function resultText(name: string, value: unknown): { text: string; ok: boolean } {
  if (typeof value === 'string') return { text: value, ok: true }
  let json: string | undefined
  try {
    json = JSON.stringify(value === undefined ? null : value)
  } catch (error) {
    return { text: errorText(`tool ${name} returned a value that is not JSON (${errorMessage(error)})`), ok: false }
  }
  if (json === undefined) return { text: errorText(`tool ${name} returned a value that is not JSON (a ${typeof value})`), ok: false }
  return { text: pythonJson(JSON.parse(json)), ok: true }
}

function cut(text: string, max: number): { text: string; truncated: boolean } {
  if (text.length <= max) return { text, truncated: false }
  return { text: `${text.slice(0, max)}… [truncated ${text.length - max} characters]`, truncated: true }
}

/** Runs one call. Never throws: every failure is a record with an error result. */
export async function runToolCall(
  tools: Readonly<Record<string, ToolFunction>>,
  call: ToolCall,
  prompt: TrainerPrompt,
  settings: ToolRunSettings,
): Promise<ToolCallRecord> {
  const start = performance.now()
  const name = typeof call.name === 'string' ? call.name : JSON.stringify(plainValue(call.name)) ?? 'null'
  let args: unknown
  try {
    args = plainValue(call.arguments)
  } catch {
    // Nested deeper than the stack allows (the parser accepted it): no tool could use it.
    args = null
  }
  const done = (status: ToolCallRecord['status'], text: string): ToolCallRecord => {
    const { text: result, truncated } = cut(text, settings.maxResponseChars)
    return { name, arguments: args, result, status, truncated, ms: performance.now() - start }
  }
  if (!hasTool(tools, call.name)) return done('unknown-tool', errorText(`unknown tool ${JSON.stringify(name)}`))
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  try {
    const value = await Promise.race([
      // A tool that throws synchronously rejects this promise like an async one that rejects.
      Promise.resolve().then(() => tools[name]!(args as Record<string, unknown>, { prompt, signal: controller.signal })),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ToolTimeout()), settings.timeout)
      }),
    ])
    const { text, ok } = resultText(name, value)
    return done(ok ? 'ok' : 'error', text)
  } catch (error) {
    if (error instanceof ToolTimeout) {
      controller.abort()
      return done('timeout', errorText(`tool ${name} timed out after ${settings.timeout} ms`))
    }
    return done('error', errorText(`tool ${name} failed: ${errorMessage(error)}`))
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Where completions come from. A CompletionSource answers a list of BFCL entries, one completion per entry,
 * reported as each finishes (so a progress bar can follow). A failure of one entry (a timeout, an HTTP error
 * after the retries, a response that is not a completion, no line for the entry in a file) is that entry's
 * Completion with a reason, never an exception: the evaluation counts it as a failed entry and goes on.
 *
 * - policySource: a Policy of ours (LogLinearPolicy, or any Policy with a tokenizer), greedy by default, in
 *   batches, prompts rendered by a PromptTemplate.
 * - JsonlSource: completions produced elsewhere, one JSON object a line keyed by entry id (our format, BFCL's
 *   result files, or OpenAI messages).
 * - openAISource: any OpenAI-compatible server, `/v1/chat/completions` with `tools` or `/v1/completions` with the
 *   rendered prompt, with a concurrency limit, retries with backoff, and a per-request timeout.
 */
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify as losslessStringify } from 'lossless-json'
import { invalidArg } from '../errors.js'
import { booleanOption, counterOption, integerOption, numberOption, oneOfOption, parseOptions, temperature, valueOption, type Schema } from '../options.js'
import type { Policy } from '../policy.js'
import { parseLossless } from '../reward/json.js'
import type { BfclEntry, DataProblem } from './data.js'
import { numberedLines } from './data.js'
import { type DecodeResult, decodeBfclResult, decodeJsonValue, decodeOpenAIToolCalls } from './decode.js'
import { type PromptTemplate, entryMessages, entryPrompt, openAITools, toJsonSchemaTools, toolN1Template } from './prompt.js'

export type SourceFailure = 'source-timeout' | 'source-error' | 'source-bad-response' | 'no-completion'

export type Completion =
  | {
      ok: true
      /** The completion's text (null when the source gave structured calls only). */
      text: string | null
      /** Calls the source already gave in structured form (OpenAI tool_calls, BFCL function-calling results). */
      decoded?: DecodeResult
      /** Seconds the source took for this entry, when it knows. */
      seconds?: number
    }
  | { ok: false; reason: SourceFailure; message: string }

export interface CompleteOptions {
  /** Aborting stops the source: entries not yet answered are not reported. */
  signal?: AbortSignal
}

export interface CompletionSource {
  /** What the source is, for reports ("policy runs/x", "http://…/v1/chat/completions (model m)"). */
  readonly description: string
  /** Answers every entry through `onCompletion(index, completion)`, in any order; resolves when all are answered. */
  complete(entries: readonly BfclEntry[], onCompletion: (index: number, completion: Completion) => void, options?: CompleteOptions): Promise<void>
}

const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v)
const isFunction = (v: unknown) => typeof v === 'function'
const isString = (v: unknown) => typeof v === 'string'
const templateOption = valueOption<PromptTemplate>('a PromptTemplate function ({messages, tools}) => prompt text', isFunction)

// ---------------------------------------------------------------------------------------------------------
// A Policy

/** Text to token ids and back: what a policy source (and the model server) needs from a tokenizer. */
export interface TextTokenizer {
  encode(text: string): ArrayLike<number>
  decode(tokens: ArrayLike<number>): string
}

export interface PolicySourceOptions {
  policy: Policy
  tokenizer: TextTokenizer
  /** Token ids that end a completion (the tokenizer's end-of-sequence). */
  stop?: readonly number[]
  /** Default: the Tool-N1 template. */
  template?: PromptTemplate
  /** Default 256. */
  maxNewTokens?: number
  /** Entries per Policy.sample call (default 64). */
  batchSize?: number
  /** Argmax decoding (default true); otherwise sampling at `temperature` with `seed`. */
  greedy?: boolean
  temperature?: number
  seed?: number
  /** For reports. */
  name?: string
}

const POLICY_SOURCE_SCHEMA: Schema<PolicySourceOptions> = {
  policy: valueOption('a Policy (with sample)', (v) => isObject(v) && isFunction((v as Policy).sample)),
  tokenizer: valueOption('a tokenizer with encode and decode', (v) => isObject(v) && isFunction((v as TextTokenizer).encode) && isFunction((v as TextTokenizer).decode)),
  stop: valueOption('an array of token ids', (v) => Array.isArray(v) && v.every((t) => Number.isSafeInteger(t) && t >= 0)),
  template: templateOption,
  maxNewTokens: integerOption(1, 256),
  batchSize: integerOption(1, 64),
  greedy: booleanOption(true),
  temperature,
  seed: counterOption(0),
  name: valueOption('a string', isString),
}

/** Completions from a Policy of ours. A failed sampling call fails the entries of its batch (source-error). */
export function policySource(sourceOptions: PolicySourceOptions): CompletionSource {
  const options = parseOptions(POLICY_SOURCE_SCHEMA, sourceOptions, 'policySource options')
  if (options.policy === undefined) invalidArg('a Policy (with sample)', 'policy', undefined)
  if (options.tokenizer === undefined) invalidArg('a tokenizer with encode and decode', 'tokenizer', undefined)
  const maxNewTokens = options.maxNewTokens!
  const batchSize = options.batchSize!
  const template = options.template ?? toolN1Template
  const { policy, tokenizer } = options
  return {
    description: `policy ${options.name ?? policy.constructor.name}`,
    async complete(entries, onCompletion, completeOptions = {}) {
      for (let from = 0; from < entries.length; from += batchSize) {
        if (completeOptions.signal?.aborted) return
        const chunk = entries.slice(from, from + batchSize)
        const started = performance.now()
        let texts: string[]
        try {
          const prompts = chunk.map((e) => tokenizer.encode(entryPrompt(e, template)))
          const samples = await policy.sample(prompts, {
            greedy: options.greedy,
            temperature: options.temperature,
            seed: options.seed,
            maxNewTokens,
            stop: options.stop,
          })
          texts = samples.map((s) => tokenizer.decode(s.tokens))
        } catch (error) {
          chunk.forEach((_, i) => onCompletion(from + i, { ok: false, reason: 'source-error', message: `the policy failed: ${(error as Error).message}` }))
          continue
        }
        const seconds = (performance.now() - started) / 1000 / chunk.length
        texts.forEach((text, i) => onCompletion(from + i, { ok: true, text, seconds }))
      }
    },
  }
}

// ---------------------------------------------------------------------------------------------------------
// A file of completions

/**
 * One line: `{"id": …}` and one of
 * - `"completion"` / `"text"` / `"output"`: the completion's text (decoded with the evaluation's format);
 * - `"result"`: a BFCL result (text, or the function-calling models' `[{name: arguments}]`);
 * - `"tool_calls"`: OpenAI tool calls; `"message"`: an OpenAI assistant message (`content`, `tool_calls`);
 * - `"calls"`: a list of `{"name", "arguments"}` objects;
 * - `"error"`: the completion failed where it was produced (counted as source-error).
 */
export class JsonlSource implements CompletionSource {
  readonly description: string
  /** Lines skipped, with their file and line number. */
  readonly problems: DataProblem[]
  readonly #completions: Map<string, Completion>

  private constructor(description: string, completions: Map<string, Completion>, problems: DataProblem[]) {
    this.description = description
    this.#completions = completions
    this.problems = problems
  }

  /** Reads a JSONL file, or every .json / .jsonl file of a folder (BFCL's result folder, for example). */
  static async open(path: string): Promise<JsonlSource> {
    if (typeof path !== 'string' || path === '') invalidArg('a completions file or folder', 'path', path)
    let info
    try {
      info = await stat(path)
    } catch {
      return invalidArg('an existing completions file or folder', 'the completions path', path)
    }
    const files = info.isDirectory() ? (await readdir(path)).filter((f) => /\.jsonl?$/.test(f)).sort().map((f) => join(path, f)) : [path]
    const completions = new Map<string, Completion>()
    const problems: DataProblem[] = []
    for (const file of files) {
      for (const { line, text } of numberedLines(await readFile(file, 'utf8'))) {
        const problem = (message: string) => problems.push({ file, line, message })
        let value: Record<string, unknown>
        try {
          const parsed = parseLossless(text)
          if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new SyntaxError('not an object')
          value = parsed as Record<string, unknown>
        } catch (error) {
          problem(`not a JSON object (${(error as Error).message})`)
          continue
        }
        if (typeof value.id !== 'string') {
          problem('Expected a string "id"')
          continue
        }
        if (completions.has(value.id)) {
          problem(`duplicate id ${JSON.stringify(value.id)} (the first one is kept)`)
          continue
        }
        const completion = completionOfLine(value)
        if (typeof completion === 'string') problem(completion)
        else completions.set(value.id, completion)
      }
    }
    return new JsonlSource(`completions ${path}`, completions, problems)
  }

  /** Ids with a completion. */
  get ids(): string[] {
    return [...this.#completions.keys()]
  }

  async complete(entries: readonly BfclEntry[], onCompletion: (index: number, completion: Completion) => void): Promise<void> {
    entries.forEach((e, i) => {
      onCompletion(i, this.#completions.get(e.id) ?? { ok: false, reason: 'no-completion', message: `Expected a line with id ${JSON.stringify(e.id)} in the completions file but found none` })
    })
  }
}

function completionOfLine(value: Record<string, unknown>): Completion | string {
  for (const key of ['completion', 'text', 'output']) {
    if (key in value) return typeof value[key] === 'string' ? { ok: true, text: value[key] as string } : `Expected "${key}" to be a string`
  }
  if ('result' in value) {
    const result = value.result
    return typeof result === 'string' ? { ok: true, text: result } : { ok: true, text: null, decoded: decodeBfclResult(result) }
  }
  if ('tool_calls' in value) return { ok: true, text: null, decoded: decodeOpenAIToolCalls(value.tool_calls) }
  if ('message' in value) {
    const m = value.message as { content?: unknown; tool_calls?: unknown } | null
    if (typeof m !== 'object' || m === null) return 'Expected "message" to be an object'
    const text = typeof m.content === 'string' ? m.content : null
    const hasCalls = Array.isArray(m.tool_calls) && m.tool_calls.length > 0
    return hasCalls ? { ok: true, text, decoded: decodeOpenAIToolCalls(m.tool_calls) } : { ok: true, text: text ?? '' }
  }
  if ('calls' in value) return { ok: true, text: null, decoded: decodeJsonValue(value.calls) }
  if ('error' in value) return { ok: false, reason: 'source-error', message: `the completion failed where it was produced: ${String(value.error)}` }
  return 'Expected one of "completion", "text", "output", "result", "tool_calls", "message", "calls" or "error"'
}

// ---------------------------------------------------------------------------------------------------------
// An OpenAI-compatible server

export interface OpenAISourceOptions {
  /** The server's base URL: `http://host:port` or `http://host:port/v1`. */
  endpoint: string
  /** `chat` (default): /v1/chat/completions with `tools`; `completions`: /v1/completions with the rendered prompt. */
  api?: 'chat' | 'completions'
  /** The model name to send; default: the first model of /v1/models. */
  model?: string
  apiKey?: string
  /** The prompt of the completions API (default: the Tool-N1 template). */
  template?: PromptTemplate
  /** Default 256. */
  maxTokens?: number
  /** Default 0 (greedy). */
  temperature?: number
  /** Requests in flight at once (default 8). */
  concurrency?: number
  /** Further attempts after a timeout, a network error, a 429 or a 5xx (default 2). */
  retries?: number
  /** Per request, in milliseconds (default 60000). */
  timeoutMs?: number
  /** First backoff in milliseconds, doubled per retry (default 250). */
  backoffMs?: number
  headers?: Record<string, string>
}

const OPENAI_SOURCE_SCHEMA: Schema<OpenAISourceOptions> = {
  endpoint: valueOption('an http(s) URL such as http://127.0.0.1:8000', isString),
  api: oneOfOption(['chat', 'completions'], 'chat'),
  model: valueOption('a string', isString),
  apiKey: valueOption('a string', isString),
  template: templateOption,
  maxTokens: integerOption(1, 256),
  temperature: numberOption('a number >= 0', (v) => v >= 0, 0) as Schema<OpenAISourceOptions>['temperature'],
  concurrency: integerOption(1, 8),
  retries: integerOption(0, 2),
  timeoutMs: integerOption(1, 60_000),
  backoffMs: integerOption(0, 250),
  headers: valueOption('an object of header strings', (v) => isObject(v) && Object.values(v as object).every(isString)),
}

/** The base URL ending in /v1, without a trailing slash. */
export function apiBase(endpoint: string): string {
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    return invalidArg('an http(s) URL such as http://127.0.0.1:8000', 'endpoint', endpoint)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') invalidArg('an http(s) URL', 'endpoint', endpoint)
  const path = url.pathname.replace(/\/+$/, '')
  url.pathname = path.endsWith('/v1') ? path : `${path}/v1`
  return url.toString().replace(/\/+$/, '')
}

class AttemptError extends Error {
  constructor(
    readonly reason: SourceFailure,
    message: string,
    readonly retry: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(message)
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true })
  })

export function openAISource(sourceOptions: OpenAISourceOptions): CompletionSource {
  if (typeof sourceOptions !== 'object' || sourceOptions === null) invalidArg('an options object with endpoint', 'openAISource options', sourceOptions)
  const options = parseOptions(OPENAI_SOURCE_SCHEMA, sourceOptions, 'openAISource options') as Required<Omit<OpenAISourceOptions, 'model' | 'apiKey' | 'template' | 'headers'>> & OpenAISourceOptions
  const base = apiBase(options.endpoint)
  const { api, concurrency, retries, timeoutMs, backoffMs, maxTokens, temperature } = options
  const template = options.template ?? toolN1Template
  const url = `${base}/${api === 'chat' ? 'chat/completions' : 'completions'}`
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}), ...options.headers }
  let model = options.model

  const resolveModel = async (signal?: AbortSignal): Promise<string> => {
    if (model !== undefined) return model
    try {
      const res = await fetch(`${base}/models`, { headers, signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(signal ? [signal] : [])]) })
      const body = (await res.json()) as { data?: { id?: unknown }[] }
      const id = body.data?.[0]?.id
      model = typeof id === 'string' ? id : 'default'
    } catch {
      model = 'default'
    }
    return model
  }

  const attempt = async (body: string, names: Map<string, string> | null, signal?: AbortSignal): Promise<Completion> => {
    let res: Response
    const timeout = AbortSignal.timeout(timeoutMs)
    try {
      res = await fetch(url, { method: 'POST', headers, body, signal: signal ? AbortSignal.any([timeout, signal]) : timeout })
    } catch (error) {
      if (timeout.aborted) throw new AttemptError('source-timeout', `no answer within ${timeoutMs} ms`, true)
      throw new AttemptError('source-error', `the request failed: ${(error as Error).message}${(error as { cause?: Error }).cause ? ` (${(error as { cause: Error }).cause.message})` : ''}`, true)
    }
    let text: string
    try {
      text = await res.text()
    } catch (error) {
      if (timeout.aborted) throw new AttemptError('source-timeout', `the answer did not finish within ${timeoutMs} ms`, true)
      throw new AttemptError('source-error', `the answer broke off: ${(error as Error).message}`, true)
    }
    if (!res.ok) {
      const retryAfter = Number(res.headers.get('retry-after'))
      const retry = res.status === 429 || res.status >= 500
      throw new AttemptError('source-error', `HTTP ${res.status}: ${text.slice(0, 300)}`, retry, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined)
    }
    let json: { choices?: { text?: unknown; message?: { content?: unknown; tool_calls?: unknown } }[] }
    try {
      json = JSON.parse(text)
    } catch {
      throw new AttemptError('source-bad-response', `Expected a JSON answer but received ${JSON.stringify(text.slice(0, 120))}`, false)
    }
    const choice = Array.isArray(json?.choices) ? json.choices[0] : undefined
    if (api === 'completions') {
      if (typeof choice?.text !== 'string') throw new AttemptError('source-bad-response', `Expected choices[0].text in the answer but received ${JSON.stringify(text.slice(0, 120))}`, false)
      return { ok: true, text: choice.text }
    }
    const message = choice?.message
    if (typeof message !== 'object' || message === null) throw new AttemptError('source-bad-response', `Expected choices[0].message in the answer but received ${JSON.stringify(text.slice(0, 120))}`, false)
    const content = typeof message.content === 'string' ? message.content : null
    // Arguments come as JSON text inside the JSON answer: they are parsed again, losslessly, by the decoder.
    if (Array.isArray(message.tool_calls) && message.tool_calls.length > 0) return { ok: true, text: content, decoded: decodeOpenAIToolCalls(message.tool_calls, names ?? undefined) }
    return { ok: true, text: content ?? '' }
  }

  const request = async (entry: BfclEntry, signal?: AbortSignal): Promise<Completion> => {
    const name = await resolveModel(signal)
    let body: string
    let names: Map<string, string> | null = null
    if (api === 'chat') {
      const tools = openAITools(entry.functions)
      names = tools.names
      const messages = entryMessages(entry).map((m) => ({ role: m.role, content: m.content }))
      body = losslessStringify({ model: name, messages, tools: tools.tools, max_tokens: maxTokens, temperature }) as string
    } else {
      const prompt = template({ messages: entryMessages(entry), tools: toJsonSchemaTools(entry.functions) })
      body = losslessStringify({ model: name, prompt, max_tokens: maxTokens, temperature }) as string
    }
    const started = performance.now()
    let last: AttemptError | null = null
    for (let k = 0; k <= retries; k++) {
      if (signal?.aborted) break
      try {
        const completion = await attempt(body, names, signal)
        return completion.ok ? { ...completion, seconds: (performance.now() - started) / 1000 } : completion
      } catch (error) {
        last = error instanceof AttemptError ? error : new AttemptError('source-error', (error as Error).message, false)
        if (!last.retry || k === retries) break
        await sleep(Math.min(last.retryAfterMs ?? backoffMs * 2 ** k, 10_000), signal)
      }
    }
    const tries = last?.retry ? ` (after ${retries + 1} attempts)` : ''
    return { ok: false, reason: last?.reason ?? 'source-error', message: `${url}: ${last?.message ?? 'interrupted'}${tries}` }
  }

  return {
    get description() {
      return `${url}${model ? ` (model ${model})` : ''}`
    },
    async complete(entries, onCompletion, completeOptions = {}) {
      const signal = completeOptions.signal
      let next = 0
      const worker = async () => {
        while (next < entries.length && !signal?.aborted) {
          const i = next++
          const completion = await request(entries[i]!, signal)
          if (!signal?.aborted) onCompletion(i, completion)
        }
      }
      await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker))
    },
  }
}

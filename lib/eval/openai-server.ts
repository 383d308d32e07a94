/**
 * The OpenAI-compatible generation API of a loaded model, so a trained policy can be evaluated over HTTP by
 * this tool or any other (BFCL's OpenAI handler, lm-eval, a chat UI):
 *
 *   GET  /v1/models
 *   POST /v1/completions        {prompt: text | [text] | [token ids], max_tokens, temperature, top_p, n, stop,
 *                                seed, logprobs: k, stream, stream_options: {include_usage}}
 *   POST /v1/chat/completions   {messages, tools, tool_choice, max_tokens | max_completion_tokens, temperature,
 *                                top_p, n, stop, seed, logprobs: bool, top_logprobs: k, stream, stream_options}
 *
 * Chat messages and tools are rendered by the model's PromptTemplate (the Tool-N1 template for the log-linear
 * policy); `<tool_call>` blocks in the reply come back as `tool_calls` when the request has tools. Temperature 0
 * is greedy decoding, and greedy requests that arrive together are generated in one batch; log-probs are then
 * those of the temperature-1 distribution. Each sampled token's log-prob comes from the sampler; `top_logprobs`
 * from one extra forward pass over the completion. `stream: true` answers with server-sent events (one chunk
 * per token, then `data: [DONE]`); the policy generates the whole completion first, so the stream starts when
 * generation ends. Unsupported settings that would change the result (echo, best_of > 1, logit_bias,
 * presence or frequency penalties) are refused with a 400 rather than ignored.
 */
import { randomBytes, randomInt } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { GrpoError, describe } from '../errors.js'
import { integerOption, parseOptions, valueOption, type Schema } from '../options.js'
import type { SampledCompletion } from '../policy.js'
import { isLosslessNumber, parseLossless } from '../reward/json.js'
import { decodeToolCallBlocks } from './decode.js'
import type { LoadedModel } from './model.js'
import type { PromptMessage } from './prompt.js'
import { toJsonText } from './values.js'

export interface OpenAIHandlerOptions {
  model: LoadedModel
  /** Greedy requests generated together, at most (default 64 prompts). */
  maxBatch?: number
  /** The largest max_tokens accepted (default 4096). */
  maxTokensLimit?: number
  /** The largest request body, in bytes (default 16 MiB). */
  maxBodyBytes?: number
}

const OPENAI_HANDLER_SCHEMA: Schema<OpenAIHandlerOptions> = {
  model: valueOption('a LoadedModel (loadModel, modelFromPolicy)', (v) => {
    const m = v as Partial<LoadedModel> | null
    return typeof m === 'object' && m !== null && typeof m.policy?.sample === 'function' && typeof m.tokenizer?.encode === 'function'
  }),
  maxBatch: integerOption(1, 64),
  maxTokensLimit: integerOption(1, 4096),
  maxBodyBytes: integerOption(1, 16 * 1024 * 1024),
}

export interface OpenAIHandler {
  /** Answers a request under /v1/; false when the path is not one of its routes (the caller answers it). */
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>
  /** Requests waiting for or in generation. */
  readonly pending: number
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly type = 'invalid_request_error',
  ) {
    super(message)
  }
}

const bad = (expected: string, param: string, received: unknown): never => {
  throw new ApiError(400, `Expected ${expected} for ${param} but received ${describe(received)}`, param)
}

// ---------------------------------------------------------------------------------------------------------
// Generation queue: one policy call at a time; greedy requests that wait together share a call.

interface GenerationRequest {
  prompts: Int32Array[]
  n: number
  greedy: boolean
  temperature: number
  topP: number
  maxNewTokens: number
  seed: number
}

interface Job extends GenerationRequest {
  resolve: (samples: SampledCompletion[]) => void
  reject: (error: unknown) => void
}

class GenerationQueue {
  #jobs: Job[] = []
  #running = false
  constructor(
    private readonly model: LoadedModel,
    private readonly maxBatch: number,
  ) {}

  get pending(): number {
    return this.#jobs.length + (this.#running ? 1 : 0)
  }

  run(request: GenerationRequest): Promise<SampledCompletion[]> {
    return new Promise((resolve, reject) => {
      this.#jobs.push({ ...request, resolve, reject })
      if (!this.#running) void this.#drain()
    })
  }

  async #drain(): Promise<void> {
    this.#running = true
    try {
      while (this.#jobs.length > 0) {
        const first = this.#jobs.shift()!
        const batch = [first]
        if (first.greedy) {
          let rows = first.prompts.length
          for (let i = 0; i < this.#jobs.length; ) {
            const j = this.#jobs[i]!
            if (j.greedy && j.topP === first.topP && rows + j.prompts.length <= this.maxBatch) {
              batch.push(j)
              rows += j.prompts.length
              this.#jobs.splice(i, 1)
            } else i++
          }
        }
        await this.#generate(batch)
      }
    } finally {
      this.#running = false
    }
  }

  async #generate(batch: Job[]): Promise<void> {
    const { policy, stop } = this.model
    try {
      if (batch.length === 1 && !batch[0]!.greedy) {
        const j = batch[0]!
        j.resolve(await policy.sample(j.prompts, { n: j.n, temperature: j.temperature, topP: j.topP, maxNewTokens: j.maxNewTokens, seed: j.seed, stop }))
        return
      }
      // Greedy: one row per prompt (n copies are the same), the longest limit of the batch, then each job's own.
      const prompts = batch.flatMap((j) => j.prompts)
      const maxNewTokens = Math.max(...batch.map((j) => j.maxNewTokens))
      const samples = await policy.sample(prompts, { greedy: true, temperature: 1, topP: batch[0]!.topP, maxNewTokens, stop })
      let row = 0
      for (const j of batch) {
        const mine: SampledCompletion[] = []
        j.prompts.forEach((_, p) => {
          const s = samples[row++]!
          const cut = s.tokens.length > j.maxNewTokens
          const c = cut ? { ...s, tokens: s.tokens.slice(0, j.maxNewTokens), logprobs: s.logprobs.slice(0, j.maxNewTokens), finishReason: 'length' as const } : s
          for (let k = 0; k < j.n; k++) mine.push({ ...c, prompt: p, sample: k })
        })
        j.resolve(mine)
      }
    } catch (error) {
      for (const j of batch) j.reject(error)
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Request fields

interface Common {
  maxNewTokens: number
  greedy: boolean
  temperature: number
  topP: number
  n: number
  seed: number
  stop: string[]
  stream: boolean
  includeUsage: boolean
}

function num(body: Record<string, unknown>, key: string): number | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v)) bad('a number', key, v)
  return v as number
}

function common(body: Record<string, unknown>, maxTokensKey: string[], limits: { maxTokens: number; defaultTokens: number }): Common {
  for (const key of ['echo', 'suffix']) if (body[key] !== undefined && body[key] !== null && body[key] !== false && body[key] !== '') throw new ApiError(400, `${key} is not supported`, key)
  if ((num(body, 'best_of') ?? 1) > 1) throw new ApiError(400, 'best_of > 1 is not supported', 'best_of')
  for (const key of ['presence_penalty', 'frequency_penalty']) if ((num(body, key) ?? 0) !== 0) throw new ApiError(400, `${key} is not supported (only 0)`, key)
  const bias = body.logit_bias
  if (bias !== undefined && bias !== null && (typeof bias !== 'object' || Object.keys(bias).length > 0)) throw new ApiError(400, 'logit_bias is not supported', 'logit_bias')
  let maxNewTokens = limits.defaultTokens
  for (const key of maxTokensKey) {
    const v = num(body, key)
    if (v === undefined) continue
    if (!Number.isSafeInteger(v) || v < 1 || v > limits.maxTokens) bad(`an integer from 1 to ${limits.maxTokens}`, key, v)
    maxNewTokens = v
  }
  const temperature = num(body, 'temperature') ?? 1
  if (temperature < 0 || temperature > 100) bad('a number from 0 to 100', 'temperature', temperature)
  const topP = num(body, 'top_p') ?? 1
  if (!(topP > 0 && topP <= 1)) bad('a number in (0, 1]', 'top_p', topP)
  const n = num(body, 'n') ?? 1
  if (!Number.isSafeInteger(n) || n < 1 || n > 16) bad('an integer from 1 to 16', 'n', n)
  const seedValue = num(body, 'seed')
  if (seedValue !== undefined && (!Number.isSafeInteger(seedValue) || seedValue < 0)) bad('a non-negative integer', 'seed', seedValue)
  const stopValue = body.stop ?? []
  const stop = typeof stopValue === 'string' ? [stopValue] : stopValue
  if (!Array.isArray(stop) || stop.length > 4 || stop.some((s) => typeof s !== 'string' || s === '')) bad('a non-empty string or a list of up to 4', 'stop', stopValue)
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') bad('a boolean', 'stream', body.stream)
  const options = body.stream_options as { include_usage?: unknown } | undefined | null
  return {
    maxNewTokens,
    greedy: temperature === 0,
    temperature: temperature === 0 ? 1 : temperature,
    topP,
    n,
    seed: seedValue ?? randomInt(2 ** 47),
    stop: stop as string[],
    stream: body.stream === true,
    includeUsage: options?.include_usage === true,
  }
}

// ---------------------------------------------------------------------------------------------------------
// Completions into text, pieces and log-probs

interface TokenInfo {
  text: string
  logprob: number
  top: { text: string; logprob: number }[] | null
  offset: number
}

interface Choice {
  text: string
  tokens: TokenInfo[]
  finishReason: 'stop' | 'length'
  completionTokens: number
}

/** Log-softmax(logits / T) of each completion position and its top k, from one forward pass. */
async function topLogprobs(model: LoadedModel, prompt: Int32Array, tokens: Int32Array, k: number, temperature: number): Promise<{ id: number; logprob: number }[][]> {
  const logits = await model.policy.logits({ prompts: [prompt], completions: [tokens], length: tokens.length })
  let values: Float32Array
  try {
    values = (await logits.toArray()) as Float32Array
  } finally {
    logits.dispose()
  }
  const V = model.policy.vocabSize
  const out: { id: number; logprob: number }[][] = []
  for (let l = 0; l < tokens.length; l++) {
    const row = values.subarray(l * V, (l + 1) * V)
    let max = -Infinity
    for (let v = 0; v < V; v++) max = Math.max(max, row[v]! / temperature)
    let sum = 0
    for (let v = 0; v < V; v++) sum += Math.exp(row[v]! / temperature - max)
    const lse = max + Math.log(sum)
    const best: { id: number; logprob: number }[] = []
    for (let v = 0; v < V; v++) {
      const lp = row[v]! / temperature - lse
      if (best.length < k || lp > best[best.length - 1]!.logprob) {
        best.push({ id: v, logprob: lp })
        best.sort((a, b) => b.logprob - a.logprob)
        if (best.length > k) best.pop()
      }
    }
    out.push(best)
  }
  return out
}

async function toChoice(model: LoadedModel, prompt: Int32Array, sample: SampledCompletion, stop: readonly string[], topK: number, temperature: number): Promise<Choice> {
  const { tokenizer } = model
  let tokens = sample.tokens
  let logprobs = sample.logprobs
  let finishReason = sample.finishReason
  // The end-of-sequence token ends the completion but is not part of its text.
  if (finishReason === 'stop' && tokens.length > 0 && model.stop.includes(tokens[tokens.length - 1]!)) {
    tokens = tokens.subarray(0, tokens.length - 1)
    logprobs = logprobs.subarray(0, logprobs.length - 1)
  }
  // Each token's text as the difference of decoded prefixes (right for tokenizers whose tokens split characters).
  const pieces: string[] = []
  let previous = ''
  for (let i = 0; i < tokens.length; i++) {
    const text = tokenizer.decode(tokens.subarray(0, i + 1))
    pieces.push(text.startsWith(previous) ? text.slice(previous.length) : tokenizer.tokenText(tokens[i]!))
    previous = text
  }
  let text = pieces.join('')
  let keep = tokens.length
  let cutAt = -1
  for (const s of stop) {
    const at = text.indexOf(s)
    if (at >= 0 && (cutAt < 0 || at < cutAt)) cutAt = at
  }
  if (cutAt >= 0) {
    text = text.slice(0, cutAt)
    finishReason = 'stop'
    let offset = 0
    keep = 0
    while (keep < pieces.length && offset < cutAt) offset += pieces[keep++]!.length
  }
  const top = topK > 0 && keep > 0 ? await topLogprobs(model, prompt, sample.tokens.subarray(0, keep), topK, temperature) : null
  const infos: TokenInfo[] = []
  let offset = 0
  for (let i = 0; i < keep; i++) {
    const piece = i === keep - 1 && cutAt >= 0 ? text.slice(offset) : pieces[i]!
    infos.push({ text: piece, logprob: logprobs[i]!, top: top ? top[i]!.map((t) => ({ text: tokenizer.tokenText(t.id), logprob: t.logprob })) : null, offset })
    offset += piece.length
  }
  return { text, tokens: infos, finishReason, completionTokens: keep }
}

function completionLogprobs(tokens: TokenInfo[], promptLength: number) {
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.some((t) => t.top) ? tokens.map((t) => Object.fromEntries((t.top ?? []).map((x) => [x.text, x.logprob]))) : null,
    text_offset: tokens.map((t) => promptLength + t.offset),
  }
}

const bytes = (text: string) => [...Buffer.from(text, 'utf8')]

function chatLogprobs(tokens: TokenInfo[]) {
  return {
    content: tokens.map((t) => ({
      token: t.text,
      logprob: t.logprob,
      bytes: bytes(t.text),
      top_logprobs: (t.top ?? []).map((x) => ({ token: x.text, logprob: x.logprob, bytes: bytes(x.text) })),
    })),
  }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP plumbing

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let failed = false
    req.on('data', (chunk: Buffer) => {
      if (failed) return
      size += chunk.length
      if (size > limit) {
        failed = true
        reject(new ApiError(413, `Expected a request body of at most ${limit} bytes but received more`))
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => failed || resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', (error) => {
      failed = true
      reject(error)
    })
  })
}

function parseBody(text: string): { plain: Record<string, unknown>; exact: Record<string, unknown> } {
  let plain: unknown
  try {
    plain = JSON.parse(text)
  } catch (error) {
    throw new ApiError(400, `Expected a JSON request body but received invalid JSON (${(error as Error).message})`)
  }
  if (typeof plain !== 'object' || plain === null || Array.isArray(plain)) bad('a JSON object', 'the request body', plain)
  // Messages and tools are read losslessly: a tool's default of 1.0 prints as 1.0 in the prompt, as written.
  return { plain: plain as Record<string, unknown>, exact: parseLossless(text) as Record<string, unknown> }
}

const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`

class SseWriter {
  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' })
  }
  send(data: unknown): void {
    if (!this.res.destroyed) this.res.write(`data: ${JSON.stringify(data)}\n\n`)
  }
  end(): void {
    if (!this.res.destroyed) this.res.end('data: [DONE]\n\n')
  }
}

// ---------------------------------------------------------------------------------------------------------
// Routes

function promptTokens(model: LoadedModel, value: unknown): Int32Array[] {
  const V = model.policy.vocabSize
  const ids = (a: unknown[], what: string) => {
    a.forEach((t, i) => {
      if (!Number.isSafeInteger(t) || (t as number) < 0 || (t as number) >= V) bad(`a token id in [0, ${V})`, `${what}[${i}]`, t)
    })
    return Int32Array.from(a as number[])
  }
  if (typeof value === 'string') return [Int32Array.from(model.tokenizer.encode(value))]
  if (!Array.isArray(value) || value.length === 0) return bad('a string, a list of strings, or token ids', 'prompt', value)
  if (value.every((v) => typeof v === 'number')) return [ids(value, 'prompt')]
  return value.map((v, i) => {
    if (typeof v === 'string') return Int32Array.from(model.tokenizer.encode(v))
    if (Array.isArray(v)) return ids(v, `prompt[${i}]`)
    return bad('a string or a list of token ids', `prompt[${i}]`, v)
  })
}

function textOf(content: unknown, what: string): string | null {
  if (content === null || content === undefined) return null
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content
      .map((part, i) => {
        const p = part as { type?: unknown; text?: unknown }
        if (p?.type !== 'text' || typeof p.text !== 'string') bad('text parts ({type: "text", text})', `${what}[${i}]`, part)
        return p.text as string
      })
      .join('')
  }
  return bad('a string, null, or a list of text parts', what, content)
}

function chatMessages(value: unknown): PromptMessage[] {
  if (!Array.isArray(value) || value.length === 0) bad('a non-empty list of messages', 'messages', value)
  return (value as unknown[]).map((m, i) => {
    const r = m as { role?: unknown; content?: unknown; tool_calls?: unknown }
    if (typeof r !== 'object' || r === null) bad('a message object', `messages[${i}]`, m)
    const role = r.role === 'developer' ? 'system' : r.role
    if (role !== 'system' && role !== 'user' && role !== 'assistant' && role !== 'tool') bad('"system", "user", "assistant" or "tool"', `messages[${i}].role`, r.role)
    const content = textOf(r.content, `messages[${i}].content`)
    if (role !== 'assistant' && content === null) bad('a string', `messages[${i}].content`, r.content)
    const message: PromptMessage = { role: role as PromptMessage['role'], content }
    if (role === 'assistant' && Array.isArray(r.tool_calls) && r.tool_calls.length > 0) {
      message.calls = r.tool_calls.map((tc, k) => {
        const fn = (tc as { function?: { name?: unknown; arguments?: unknown } })?.function
        if (typeof fn?.name !== 'string') bad('a function name', `messages[${i}].tool_calls[${k}].function.name`, fn?.name)
        let args: unknown = fn!.arguments ?? {}
        if (typeof args === 'string') {
          try {
            args = parseLossless(args)
          } catch {
            bad('JSON text', `messages[${i}].tool_calls[${k}].function.arguments`, args)
          }
        }
        return { name: fn!.name as string, arguments: args }
      })
    }
    return message
  })
}

export function createOpenAIHandler(handlerOptions: OpenAIHandlerOptions): OpenAIHandler {
  const options = parseOptions(OPENAI_HANDLER_SCHEMA, handlerOptions, 'OpenAI handler options') as Required<OpenAIHandlerOptions>
  const model = options.model
  if (model === undefined) throw new GrpoError('Expected a LoadedModel (loadModel, modelFromPolicy) for model but received undefined', 'ERR_GRPO_INVALID_ARG')
  const maxBatch = options.maxBatch
  const limits = { maxTokens: options.maxTokensLimit, defaultTokens: Math.min(model.maxNewTokens, options.maxTokensLimit) }
  const maxBody = options.maxBodyBytes
  const queue = new GenerationQueue(model, maxBatch)

  const generate = async (prompts: Int32Array[], c: Common) =>
    queue.run({ prompts, n: c.n, greedy: c.greedy, temperature: c.temperature, topP: c.topP, maxNewTokens: c.maxNewTokens, seed: c.seed })

  async function completions(body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    const c = common(body, ['max_tokens'], limits)
    const k = num(body, 'logprobs')
    if (k !== undefined && (!Number.isSafeInteger(k) || k < 0 || k > 20)) bad('an integer from 0 to 20', 'logprobs', k)
    const prompts = promptTokens(model, body.prompt)
    const samples = await generate(prompts, c)
    const choices = await Promise.all(samples.map((s) => toChoice(model, prompts[s.prompt]!, s, c.stop, k ?? 0, c.temperature)))
    const promptTexts = prompts.map((p) => model.tokenizer.decode(p))
    const usage = {
      prompt_tokens: prompts.reduce((a, p) => a + p.length, 0),
      completion_tokens: choices.reduce((a, ch) => a + ch.completionTokens, 0),
      total_tokens: 0,
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    const head = { id: newId('cmpl'), object: 'text_completion', created: Math.floor(Date.now() / 1000), model: model.name }
    const logprobsOf = (ch: Choice, i: number) => (k === undefined ? null : completionLogprobs(ch.tokens, promptTexts[samples[i]!.prompt]!.length))
    if (!c.stream) {
      return sendJson(res, 200, { ...head, choices: choices.map((ch, i) => ({ index: i, text: ch.text, logprobs: logprobsOf(ch, i), finish_reason: ch.finishReason })), usage })
    }
    const sse = new SseWriter(res)
    choices.forEach((ch, i) => {
      const base = promptTexts[samples[i]!.prompt]!.length
      for (const t of ch.tokens) {
        sse.send({ ...head, choices: [{ index: i, text: t.text, logprobs: k === undefined ? null : completionLogprobs([t], base), finish_reason: null }] })
      }
      sse.send({ ...head, choices: [{ index: i, text: '', logprobs: null, finish_reason: ch.finishReason }] })
    })
    if (c.includeUsage) sse.send({ ...head, choices: [], usage })
    sse.end()
  }

  async function chat(body: Record<string, unknown>, exact: Record<string, unknown>, res: ServerResponse): Promise<void> {
    const c = common(body, ['max_tokens', 'max_completion_tokens'], limits)
    if (body.logprobs !== undefined && body.logprobs !== null && typeof body.logprobs !== 'boolean') bad('a boolean', 'logprobs', body.logprobs)
    const k = num(body, 'top_logprobs')
    if (k !== undefined && (!Number.isSafeInteger(k) || k < 0 || k > 20)) bad('an integer from 0 to 20', 'top_logprobs', k)
    if (k !== undefined && k > 0 && body.logprobs !== true) throw new ApiError(400, 'top_logprobs needs logprobs: true', 'top_logprobs')
    const wantLogprobs = body.logprobs === true
    const messages = chatMessages(exact.messages)
    const toolsValue = exact.tools ?? []
    if (!Array.isArray(toolsValue)) bad('a list of tools', 'tools', toolsValue)
    ;(toolsValue as unknown[]).forEach((tool, i) => {
      if (typeof tool !== 'object' || tool === null || Array.isArray(tool) || isLosslessNumber(tool)) bad('a tool object', `tools[${i}]`, tool)
    })
    const toolChoice = body.tool_choice
    const tools = toolChoice === 'none' ? [] : (toolsValue as unknown[])
    let prompt: Int32Array
    try {
      prompt = Int32Array.from(model.tokenizer.encode(model.template({ messages, tools })))
    } catch (error) {
      if (error instanceof GrpoError) throw new ApiError(400, error.message)
      throw error
    }
    const samples = await generate([prompt], c)
    const choices = await Promise.all(samples.map((s) => toChoice(model, prompt, s, c.stop, wantLogprobs ? (k ?? 0) : 0, c.temperature)))
    const usage = { prompt_tokens: prompt.length, completion_tokens: choices.reduce((a, ch) => a + ch.completionTokens, 0), total_tokens: 0 }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    const head = { id: newId('chatcmpl'), object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: model.name }
    const shaped = choices.map((ch) => {
      // With tools, <tool_call> blocks become tool_calls and the content is the text before the first of them.
      if (tools.length > 0) {
        const decoded = decodeToolCallBlocks(ch.text)
        if (!('error' in decoded) && decoded.calls.length > 0) {
          const think = ch.text.lastIndexOf('</think>')
          const first = ch.text.indexOf('<tool_call>', think < 0 ? 0 : think)
          const content = ch.text.slice(0, first).trimEnd()
          const toolCalls = decoded.calls.map((call, i) => ({ index: i, id: `call_${randomBytes(8).toString('hex')}`, type: 'function' as const, function: { name: call.name, arguments: toJsonText(call.arguments) } }))
          return { choice: ch, content: content === '' ? null : content, toolCalls, finish: ch.finishReason === 'stop' ? 'tool_calls' : ch.finishReason }
        }
      }
      return { choice: ch, content: ch.text, toolCalls: null, finish: ch.finishReason }
    })
    if (!c.stream) {
      return sendJson(res, 200, {
        ...head,
        choices: shaped.map((s, i) => ({
          index: i,
          message: { role: 'assistant', content: s.content, ...(s.toolCalls ? { tool_calls: s.toolCalls.map(({ index: _, ...tc }) => tc) } : {}) },
          logprobs: wantLogprobs ? chatLogprobs(s.choice.tokens) : null,
          finish_reason: s.finish,
        })),
        usage,
      })
    }
    const chunk = { ...head, object: 'chat.completion.chunk' }
    const sse = new SseWriter(res)
    shaped.forEach((s, i) => {
      sse.send({ ...chunk, choices: [{ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] })
      // Content tokens stream one by one; with tool calls, only those before the first call's block.
      const limit = s.content?.length ?? 0
      let sent = 0
      for (const t of s.choice.tokens) {
        if (s.toolCalls && t.offset >= limit) break
        const text = s.toolCalls ? t.text.slice(0, limit - t.offset) : t.text
        sent += text.length
        sse.send({ ...chunk, choices: [{ index: i, delta: { content: text }, logprobs: wantLogprobs ? chatLogprobs([t]) : null, finish_reason: null }] })
      }
      if (s.toolCalls) {
        if (sent < limit) sse.send({ ...chunk, choices: [{ index: i, delta: { content: s.content!.slice(sent) }, logprobs: null, finish_reason: null }] })
        sse.send({ ...chunk, choices: [{ index: i, delta: { tool_calls: s.toolCalls }, logprobs: null, finish_reason: null }] })
      }
      sse.send({ ...chunk, choices: [{ index: i, delta: {}, logprobs: null, finish_reason: s.finish }] })
    })
    if (c.includeUsage) sse.send({ ...chunk, choices: [], usage })
    sse.end()
  }

  const routes: Record<string, string> = { '/v1/models': 'GET', '/v1/completions': 'POST', '/v1/chat/completions': 'POST' }

  return {
    get pending() {
      return queue.pending
    },
    async handle(req, res) {
      const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '')
      const method = routes[path]
      if (method === undefined) return false
      try {
        if (req.method !== method) {
          res.setHeader('allow', method)
          throw new ApiError(405, `Expected ${method} for ${path} but received ${req.method}`)
        }
        if (path === '/v1/models') {
          sendJson(res, 200, { object: 'list', data: [{ id: model.name, object: 'model', created: 0, owned_by: 'node-grpo' }] })
          return true
        }
        const { plain, exact } = parseBody(await readBody(req, maxBody))
        if (path === '/v1/completions') await completions(plain, res)
        else await chat(plain, exact, res)
      } catch (error) {
        if (error instanceof ApiError) {
          sendJson(res, error.status, { error: { message: error.message, type: error.type, param: error.param, code: null } })
        } else if (error instanceof GrpoError && error.code === 'ERR_GRPO_INVALID_ARG') {
          sendJson(res, 400, { error: { message: error.message, type: 'invalid_request_error', param: null, code: error.code } })
        } else {
          const e = error as { code?: string; message?: string }
          sendJson(res, 500, { error: { message: String(e?.message ?? error), type: 'server_error', param: null, code: e?.code ?? null } })
        }
      }
      return true
    },
  }
}

/** An HTTP server with only the OpenAI routes (`node-grpo serve --model` adds them to the reward service). */
export function createOpenAIServer(options: OpenAIHandlerOptions): Server {
  const handler = createOpenAIHandler(options)
  return createServer((req, res) => {
    handler.handle(req, res).then((handled) => {
      if (!handled) sendJson(res, 404, { error: { message: `Expected one of /v1/models, /v1/completions, /v1/chat/completions but received ${describe(req.url)}`, type: 'invalid_request_error', param: null, code: null } })
    })
  })
}

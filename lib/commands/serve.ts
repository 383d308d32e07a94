/**
 * `node-grpo serve`: the reward as an HTTP service, speaking the remote reward model protocol of OpenRLHF
 * (`--remote_rm_url http://127.0.0.1:5000/get_reward`), plus group-relative advantages through the ops.
 *
 *   POST /get_reward  {"query": [text], "prompts": [text]?, "labels": [ground truth]}
 *                  →  {"rewards": [n], "scores": [n], "reasons": [code], "extra_logs": {"reason/<code>": [0|1]}}
 *   POST /advantages  {"rewards": [n|null], "group_size": n | "group_ids": [n], "baseline"?, "scale"?, "eps"?,
 *                      "non_finite"?}
 *                  →  {"advantages": [n], "group_ids": [n], "group_mean": [n], "group_std": [n],
 *                      "zero_std_fraction": n}
 *   GET  /health      → {"status": "ok"}
 *
 * With `--model <dir>`, the model's OpenAI-compatible generation API too (lib/eval/openai-server.ts):
 * GET /v1/models, POST /v1/completions, POST /v1/chat/completions (non-streaming and streaming, with logprobs).
 *
 * `query` holds whole texts (prompt and response); the response part is scored: the text after the last
 * `<|im_start|>assistant` marker when there is one, else the query less its prompt when it starts with it.
 * `labels` are the ground truths, JSON text (as OpenRLHF sends dataset labels) or lists of calls.
 * `extra_logs` has, for every reason code, a 0/1 indicator per item: OpenRLHF logs the batch mean of each, so
 * the logs show the share of completions per reason (reason/ok is the share of full rewards).
 *
 * A bad request gets a 400 with {"error": {"code", "message"}}; bodies over the size limit a 413; a request whose
 * scoring takes longer than the time budget a 503 (ERR_TIME_BUDGET; the rest of its work is dropped); /advantages
 * answers 503 (ERR_GRPO_BINDING_LOAD) when the native addon cannot load, while /get_reward, which needs no
 * native code, keeps working. The service binds to 127.0.0.1 unless --host says otherwise.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import { GrpoError, describe, invalidArg } from '../errors.js'
import { rawArrayElements } from '../reward/json.js'
import { closeScoringPool } from '../reward/pool.js'
import { scoreBatch } from '../reward/batch.js'
import { REASONS, THINK_ORDERS, VARIANTS, type BatchItem, type ThinkOrder, type Variant } from '../reward/types.js'
import type { OpenAIHandler } from '../eval/openai-server.js'

type Ops = Pick<typeof import('../ops.js'), 'groupAdvantages'>

export interface ServeOptions {
  variant?: Variant
  thinkOrder?: ThinkOrder
  /** The largest request body accepted, in bytes (default 64 MiB). */
  maxBodyBytes?: number
  /** The longest the scoring of one /get_reward request may take, in milliseconds (default 60 s); then 503. */
  timeBudgetMs?: number
  /** How the ops are loaded (default: the package's ops module, imported on the first /advantages request). */
  loadOps?: () => Promise<Ops>
  /** Answers /v1/… (a model's OpenAI-compatible API: createOpenAIHandler in lib/eval). */
  openai?: OpenAIHandler
}

const ASSISTANT_MARKER = '<|im_start|>assistant'
const DEFAULT_MAX_BODY = 64 * 1024 * 1024
const DEFAULT_TIME_BUDGET_MS = 60_000

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

const CLIENT_ERRORS = new Set(['ERR_GRPO_INVALID_ARG', 'ERR_GRPO_SHAPE', 'ERR_GRPO_DTYPE', 'ERR_GRPO_NONFINITE'])

function send(res: ServerResponse, status: number, body: unknown, close = false): void {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...(close ? { connection: 'close' } : {}),
  })
  res.end(text)
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new HttpError(413, 'ERR_BODY_TOO_LARGE', `Expected a request body of at most ${limit} bytes for ${req.url} but received more`)
    const declared = Number(req.headers['content-length'])
    if (declared > limit) {
      req.resume()
      return reject(tooLarge())
    }
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    req.on('data', (chunk: Buffer) => {
      if (done) return
      size += chunk.length
      if (size > limit) {
        done = true
        chunks.length = 0
        return reject(tooLarge())
      }
      chunks.push(chunk)
    })
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks).toString('utf8'))
    })
    req.on('error', (error) => {
      done = true
      reject(error)
    })
  })
}

/**
 * The body, parsed once by JSON.parse (fast, and it never recurses, so no nesting can overflow it). Whatever needs
 * exact number lexemes reads them from the text afterwards (labelsOf).
 */
function parseJsonBody(text: string): Record<string, unknown> {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (error) {
    throw new HttpError(400, 'ERR_GRPO_INVALID_ARG', `Expected a JSON request body but received invalid JSON (${(error as Error).message})`)
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) invalidArg('a JSON object', 'the request body', body)
  return body as Record<string, unknown>
}

/**
 * The ground truths of a /get_reward body. Text labels (what OpenRLHF sends) are used as they are. A structured
 * label carries numbers whose lexical type matters (5 vs 5.0), which JSON.parse has lost: such a label becomes
 * its own source text, cut out of the body by one scan, and the scorer parses it losslessly (with its depth and
 * size limits, on a worker for large batches). Nothing re-parses the whole body.
 */
function labelsOf(text: string, labels: unknown[]): unknown[] {
  if (labels.every((label) => typeof label === 'string')) return labels
  const raw = rawArrayElements(text, 'labels')
  /* c8 ignore next */
  if (raw === null || raw.length !== labels.length) throw new Error('the labels of the parsed body and of its text differ')
  return labels.map((label, i) => (typeof label === 'string' ? label : raw[i]!))
}

function checkKeys(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) invalidArg(`one of ${allowed.join(', ')}`, 'a key of the request body', key)
  }
}

function stringList(value: unknown, what: string, length?: number): string[] {
  if (!Array.isArray(value)) invalidArg('a list of strings', what, value)
  if (length !== undefined && value.length !== length) invalidArg(`a list of ${length} items (one per query)`, what, value)
  value.forEach((v, i) => {
    if (typeof v !== 'string') invalidArg('a string', `${what}[${i}]`, v)
  })
  return value as string[]
}

/** The response part of a query: the text after the last assistant marker, or the query less its prompt. */
export function responseOf(query: string, prompt: string | undefined): string {
  if (query.includes(ASSISTANT_MARKER)) return query
  if (prompt !== undefined && query.startsWith(prompt)) return query.slice(prompt.length)
  return query
}

async function getReward(text: string, options: ServeOptions, budgetMs: number): Promise<unknown> {
  const body = parseJsonBody(text)
  checkKeys(body, ['query', 'prompts', 'labels'])
  const query = stringList(body.query, 'query')
  const prompts = body.prompts === undefined || body.prompts === null ? undefined : stringList(body.prompts, 'prompts', query.length)
  if (!Array.isArray(body.labels) || body.labels.length !== query.length) {
    invalidArg(`a list of ${query.length} ground truths (one per query)`, 'labels', body.labels)
  }
  const labels = labelsOf(text, body.labels)
  const items = query.map((q, i) => ({ completion: responseOf(q, prompts?.[i]), groundTruth: labels[i] })) as BatchItem[]
  let results
  try {
    results = await scoreBatch(items, { variant: options.variant, thinkOrder: options.thinkOrder, signal: AbortSignal.timeout(budgetMs) })
  } catch (error) {
    if (error instanceof GrpoError && error.code === 'ERR_GRPO_ABORTED') {
      throw new HttpError(503, 'ERR_TIME_BUDGET', `Expected the request to be scored within its time budget of ${budgetMs} ms but it took longer`)
    }
    // Name the request's field rather than scoreBatch's items.
    if (error instanceof GrpoError) throw new GrpoError(error.message.replace(/items\[(\d+)\]\.groundTruth/, 'labels[$1]'), error.code)
    throw error
  }
  const rewards = results.map((r) => r.score)
  const extraLogs: Record<string, number[]> = {}
  for (const reason of REASONS) extraLogs[`reason/${reason}`] = results.map((r) => (r.reason === reason ? 1 : 0))
  return { rewards, scores: rewards, reasons: results.map((r) => r.reason), extra_logs: extraLogs }
}

const ADVANTAGE_KEYS = ['rewards', 'group_size', 'groupSize', 'group_ids', 'groupIds', 'baseline', 'scale', 'eps', 'non_finite', 'nonFinite']

async function advantages(body: Record<string, unknown>, loadOps: () => Promise<Ops>): Promise<unknown> {
  checkKeys(body, ADVANTAGE_KEYS)
  if (!Array.isArray(body.rewards)) invalidArg('a list of numbers', 'rewards', body.rewards)
  // JSON has no NaN: null stands for a reward that is not a number (useful with non_finite: "exclude").
  const rewards = body.rewards.map((r, i) => {
    if (r === null) return NaN
    if (typeof r !== 'number') invalidArg('a number or null', `rewards[${i}]`, r)
    return r
  })
  const pick = (snake: string, camel: string) => (body[snake] !== undefined ? body[snake] : body[camel])
  let ops: Ops
  try {
    ops = await loadOps()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw new HttpError(503, 'ERR_GRPO_BINDING_LOAD', `Expected the native ops for /advantages but they could not load: ${message}`)
  }
  const out = await ops.groupAdvantages(rewards, {
    groupSize: pick('group_size', 'groupSize') as number | undefined,
    groupIds: pick('group_ids', 'groupIds') as number[] | undefined,
    baseline: body.baseline as 'mean' | 'leave-one-out' | undefined,
    scale: body.scale as 'group' | 'batch' | 'none' | undefined,
    eps: body.eps as number | undefined,
    nonFinite: pick('non_finite', 'nonFinite') as 'error' | 'exclude' | undefined,
  })
  let values: ArrayLike<number>
  try {
    values = (await out.advantages.toArray()) as ArrayLike<number>
  } finally {
    out.advantages.dispose()
  }
  return {
    advantages: Array.from(values),
    group_ids: Array.from(out.groupIds),
    group_mean: Array.from(out.groupMean),
    group_std: Array.from(out.groupStd),
    zero_std_fraction: out.zeroStdFraction,
  }
}

const defaultLoadOps = async (): Promise<Ops> => {
  const ops = await import('../ops.js')
  return ops
}

const ROUTES: Record<string, string> = { '/get_reward': 'POST', '/advantages': 'POST', '/health': 'GET' }

/** The service, not yet listening: `server.listen(port, '127.0.0.1')`. */
export function createRewardServer(options: ServeOptions = {}): Server {
  if (options.variant !== undefined && !VARIANTS.includes(options.variant)) invalidArg(`one of ${VARIANTS.join(', ')}`, 'variant', options.variant)
  if (options.thinkOrder !== undefined && !THINK_ORDERS.includes(options.thinkOrder)) {
    invalidArg(`one of ${THINK_ORDERS.join(', ')}`, 'thinkOrder', options.thinkOrder)
  }
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY
  if (!Number.isSafeInteger(limit) || limit < 1) invalidArg('a positive integer', 'maxBodyBytes', limit)
  const budgetMs = options.timeBudgetMs ?? DEFAULT_TIME_BUDGET_MS
  if (!Number.isSafeInteger(budgetMs) || budgetMs < 1) invalidArg('a positive integer (milliseconds)', 'timeBudgetMs', budgetMs)
  const loadOps = options.loadOps ?? defaultLoadOps

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!
    if (options.openai && path.startsWith('/v1/') && (await options.openai.handle(req, res))) return
    const method = ROUTES[path]
    if (method === undefined) throw new HttpError(404, 'ERR_NOT_FOUND', `Expected one of ${Object.keys(ROUTES).join(', ')} for the path but received ${describe(path)}`)
    if (req.method !== method) {
      res.setHeader('allow', method)
      throw new HttpError(405, 'ERR_METHOD_NOT_ALLOWED', `Expected ${method} for ${path} but received ${req.method}`)
    }
    if (path === '/health') return send(res, 200, { status: 'ok' })
    const text = await readBody(req, limit)
    if (path === '/get_reward') return send(res, 200, await getReward(text, options, budgetMs))
    return send(res, 200, await advantages(parseJsonBody(text), loadOps))
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) {
        send(res, error.status, { error: { code: error.code, message: error.message } }, error.status === 413)
      } else if (error instanceof GrpoError) {
        const status = CLIENT_ERRORS.has(error.code) ? 400 : error.code === 'ERR_GRPO_BINDING_LOAD' ? 503 : 500
        send(res, status, { error: { code: error.code, message: error.message } })
      } else {
        // An aborted request or a bug: answer if the client is still there, and keep serving.
        send(res, 500, { error: { code: 'ERR_INTERNAL', message: String((error as Error)?.message ?? error) } })
      }
    })
  })
  server.requestTimeout = 120_000
  server.headersTimeout = 60_000
  // A malformed request line or headers: answer 400 instead of dropping the socket silently.
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    else socket.destroy()
  })
  return server
}

const USAGE = `Usage: node-grpo serve [--port 5000] [--host 127.0.0.1] [options]

The tool-call reward as an HTTP service (OpenRLHF remote reward protocol).

  POST /get_reward   {"query": [...], "prompts": [...], "labels": [...]} → {"rewards", "scores", "extra_logs"}
  POST /advantages   {"rewards": [...], "group_size": n} → {"advantages", ...}  (needs the native addon)
  GET  /health

Options:
  --port <n>           port to listen on (default 5000; 0 picks a free one)
  --host <address>     address to bind (default 127.0.0.1: this machine only)
  --variant <v>        ${VARIANTS.join(' | ')} (default binary)
  --think-order <o>    ${THINK_ORDERS.join(' | ')} (default presence)
  --max-body-mb <n>    largest request body in MiB (default 64)
  --time-budget-s <n>  longest the scoring of one request may take, in seconds (default 60; then 503)
  --model <dir>        also serve this model's OpenAI-compatible API: /v1/models, /v1/completions,
                       /v1/chat/completions (node-grpo train --save writes a model folder)
  --device <d>         cpu | cuda: where the model runs (default: the active backend's device)
  -h, --help           this help

With OpenRLHF: --remote_rm_url http://127.0.0.1:5000/get_reward (labels from the dataset's ground truth).`

export interface Io {
  stdout: { write(text: string): unknown }
  stderr: { write(text: string): unknown }
  /** Stops the service like SIGINT or SIGTERM do. */
  signal?: AbortSignal
}

export async function runServe(args: string[], io: Io): Promise<number> {
  let values
  try {
    values = parseArgs({
      args,
      options: {
        port: { type: 'string', default: '5000' },
        host: { type: 'string', default: '127.0.0.1' },
        variant: { type: 'string' },
        'think-order': { type: 'string' },
        'max-body-mb': { type: 'string', default: '64' },
        'time-budget-s': { type: 'string', default: '60' },
        model: { type: 'string' },
        device: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values
  } catch (error) {
    io.stderr.write(`node-grpo serve: ${(error as Error).message}\n\n${USAGE}\n`)
    return 1
  }
  if (values.help) {
    io.stdout.write(USAGE + '\n')
    return 0
  }
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) invalidArg('a port number from 0 to 65535', '--port', values.port)
  const maxBodyMb = Number(values['max-body-mb'])
  if (!(maxBodyMb > 0 && maxBodyMb <= 4096)) invalidArg('a number of MiB in (0, 4096]', '--max-body-mb', values['max-body-mb'])
  const budgetS = Number(values['time-budget-s'])
  if (!(budgetS >= 0.001 && budgetS <= 86400)) invalidArg('a number of seconds in [0.001, 86400]', '--time-budget-s', values['time-budget-s'])
  if (values.device !== undefined && values.device !== 'cpu' && values.device !== 'cuda') invalidArg("'cpu' or 'cuda'", '--device', values.device)
  let model: import('../eval/model.js').LoadedModel | null = null
  let openai: OpenAIHandler | undefined
  if (values.model !== undefined) {
    const [{ loadModel }, { createOpenAIHandler }] = await Promise.all([import('../eval/model.js'), import('../eval/openai-server.js')])
    model = await loadModel(values.model, { device: values.device as 'cpu' | 'cuda' | undefined })
    openai = createOpenAIHandler({ model })
  }
  const server = createRewardServer({
    variant: values.variant as Variant | undefined,
    thinkOrder: values['think-order'] as ThinkOrder | undefined,
    maxBodyBytes: Math.floor(maxBodyMb * 1024 * 1024),
    timeBudgetMs: Math.round(budgetS * 1000),
    openai,
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => {
      model?.dispose()
      reject(error)
    })
    server.listen(port, values.host, () => {
      server.removeAllListeners('error')
      resolve()
    })
  })
  const address = server.address()
  const bound = typeof address === 'object' && address !== null ? address : { address: values.host, port }
  const host = bound.address.includes(':') ? `[${bound.address}]` : bound.address
  io.stdout.write(`node-grpo reward service listening on http://${host}:${bound.port}\n`)
  if (model) io.stdout.write(`model ${model.name} (${values.model}): OpenAI-compatible API at http://${host}:${bound.port}/v1\n`)
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      io.signal?.removeEventListener('abort', stop)
      server.close(() => resolve())
      server.closeIdleConnections()
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
    if (io.signal?.aborted) stop()
    else io.signal?.addEventListener('abort', stop)
  })
  model?.dispose()
  await closeScoringPool()
  return 0
}

export function run(args: string[]): Promise<number> {
  return runServe(args, { stdout: process.stdout, stderr: process.stderr })
}

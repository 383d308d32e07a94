/**
 * A reward computed by a server that speaks OpenRLHF's remote reward protocol (`--remote_rm_url`): node-grpo's
 * own `node-grpo serve`, OpenRLHF's `serve_rm`, or any service of the same shape.
 *
 *   POST <url>  {"query": [text], "prompts": [text], "labels": [label]}  →  {"rewards": [n], "scores"?: [n], "reasons"?: [code]}
 *
 * The Trainer calls a reward function once per completion, all of a step's at once; this one gathers the calls
 * made in the same turn of the event loop into requests of up to `batchSize` completions (split over the URLs
 * when there are several, as OpenRLHF does), each with a timeout, retried with exponential backoff on network
 * errors, timeouts, 408, 429 and 5xx answers. Another 4xx is the request's fault and fails at once.
 */
import { GrpoError, invalidArg } from '../errors.js'
import type { RewardFunction, RewardResult, TrainerPrompt } from './types.js'

export interface RemoteRewardOptions {
  /** The endpoint, e.g. `http://127.0.0.1:5000/get_reward`; several URLs share the requests round-robin. */
  url: string | readonly string[]
  /** Milliseconds per request (default 180000, OpenRLHF's). */
  timeout?: number
  /** Retries after the first attempt (default 5, OpenRLHF's). */
  retries?: number
  /** Milliseconds before the first retry, doubling each time up to 10 s (default 500). */
  retryDelay?: number
  /** Completions per request (default 256). */
  batchSize?: number
  /** The query text of a completion (default: `prompt.text`, when the prompt has one, followed by the completion). */
  query?: (completion: string, prompt: TrainerPrompt) => string
  /** The label of a prompt (default: its groundTruth). */
  label?: (prompt: TrainerPrompt) => unknown
  /** Extra request headers (an Authorization header, say). */
  headers?: Record<string, string>
}

interface Pending {
  query: string
  prompt: string
  label: unknown
  resolve: (r: RewardResult) => void
  reject: (e: unknown) => void
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504])
const MAX_DELAY = 10_000

function positive(value: unknown, what: string, fallback: number, integer: boolean, min = 1): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    invalidArg(integer ? `an integer >= ${min}` : `a number >= ${min}`, what, value)
  }
  return value
}

class Permanent extends Error {}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** One request, with retries. Resolves with the parsed rewards (and reasons), or rejects with a GrpoError. */
async function post(url: string, body: string, n: number, o: Required<Pick<RemoteRewardOptions, 'timeout' | 'retries' | 'retryDelay'>> & { headers: Record<string, string> }): Promise<RewardResult[]> {
  let last: unknown
  for (let attempt = 0; attempt <= o.retries; attempt++) {
    if (attempt > 0) await sleep(Math.min(o.retryDelay * 2 ** (attempt - 1), MAX_DELAY))
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...o.headers },
        body,
        signal: AbortSignal.timeout(o.timeout),
      })
      const text = await res.text()
      if (!res.ok) {
        const error = new Error(`${url} answered ${res.status}: ${text.slice(0, 300)}`)
        if (!RETRY_STATUS.has(res.status)) throw new Permanent(error.message)
        throw error
      }
      return parseReply(text, n, url)
    } catch (error) {
      if (error instanceof Permanent) throw new GrpoError(`Expected rewards from the reward server but ${error.message}`, 'ERR_GRPO_REMOTE')
      if (error instanceof GrpoError) throw error
      last = error
    }
  }
  const why = last instanceof Error ? (last.name === 'TimeoutError' ? `no answer within ${o.timeout} ms` : last.message) : String(last)
  throw new GrpoError(`Expected rewards from the reward server ${url} but received none after ${o.retries + 1} attempts (${why})`, 'ERR_GRPO_REMOTE', { cause: last })
}

function parseReply(text: string, n: number, url: string): RewardResult[] {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new GrpoError(`Expected a JSON answer from the reward server ${url} but received ${JSON.stringify(text.slice(0, 80))}`, 'ERR_GRPO_REMOTE')
  }
  const record = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>
  // OpenRLHF reads `rewards` and falls back to `scores`.
  const rewards = record.rewards ?? record.scores
  if (!Array.isArray(rewards) || rewards.length !== n || rewards.some((r) => typeof r !== 'number' || !Number.isFinite(r))) {
    throw new GrpoError(`Expected ${n} finite rewards in the answer of ${url} but received ${JSON.stringify(rewards)?.slice(0, 80)}`, 'ERR_GRPO_REMOTE')
  }
  const reasons = Array.isArray(record.reasons) && record.reasons.length === n ? record.reasons : null
  return rewards.map((score: number, i) => (typeof reasons?.[i] === 'string' ? { score, reason: reasons[i] as string } : { score }))
}

/**
 * A RewardFunction that asks an OpenRLHF-protocol reward server. `node-grpo serve --variant toolrl` is one:
 * `remoteReward({ url: 'http://127.0.0.1:5000/get_reward' })`.
 */
export function remoteReward(options: RemoteRewardOptions): RewardFunction {
  if (typeof options !== 'object' || options === null) invalidArg('an options object with url', 'remoteReward options', options)
  const known = ['url', 'timeout', 'retries', 'retryDelay', 'batchSize', 'query', 'label', 'headers']
  for (const key of Object.keys(options)) if (!known.includes(key)) invalidArg(`one of the options of remoteReward (${known.join(', ')})`, key, (options as unknown as Record<string, unknown>)[key])
  const urls = typeof options.url === 'string' ? [options.url] : options.url
  if (!Array.isArray(urls) || urls.length === 0) invalidArg('a URL or a non-empty array of URLs', 'url', options.url)
  for (const u of urls) {
    let parsed: URL | null = null
    try {
      parsed = new URL(u)
    } catch {
      // reported below
    }
    if (parsed === null || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) invalidArg('an http(s) URL', 'url', u)
  }
  const settings = {
    timeout: positive(options.timeout, 'timeout', 180_000, false),
    retries: positive(options.retries, 'retries', 5, true, 0),
    retryDelay: positive(options.retryDelay, 'retryDelay', 500, false, 0),
    headers: options.headers ?? {},
  }
  if (typeof settings.headers !== 'object' || settings.headers === null) invalidArg('an object of header strings', 'headers', options.headers)
  const batchSize = positive(options.batchSize, 'batchSize', 256, true)
  const query = options.query ?? ((completion: string, prompt: TrainerPrompt) => (typeof prompt.text === 'string' ? prompt.text : '') + completion)
  const label = options.label ?? ((prompt: TrainerPrompt) => prompt.groundTruth ?? null)
  if (typeof query !== 'function') invalidArg('a function', 'query', query)
  if (typeof label !== 'function') invalidArg('a function', 'label', label)

  let queue: Pending[] = []
  let next = 0
  const flush = () => {
    const items = queue
    queue = []
    for (let from = 0; from < items.length; from += batchSize) {
      const chunk = items.slice(from, from + batchSize)
      const url = urls[next++ % urls.length]!
      const body = JSON.stringify({ query: chunk.map((p) => p.query), prompts: chunk.map((p) => p.prompt), labels: chunk.map((p) => p.label) })
      post(url, body, chunk.length, settings).then(
        (results) => chunk.forEach((p, i) => p.resolve(results[i]!)),
        (error) => chunk.forEach((p) => p.reject(error)),
      )
    }
  }
  return (completion, prompt) =>
    new Promise<RewardResult>((resolve, reject) => {
      const item: Pending = {
        query: query(completion, prompt),
        prompt: typeof prompt.text === 'string' ? prompt.text : '',
        label: label(prompt),
        resolve,
        reject,
      }
      if (typeof item.query !== 'string') invalidArg('a string from query', 'query(completion, prompt)', item.query)
      if (queue.length === 0) setImmediate(flush)
      queue.push(item)
    })
}

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
import { integerOption, numberOption, parseOptions, valueOption, type OptionSpec, type Schema } from '../options.js'
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

const isFunction = (v: unknown) => typeof v === 'function'

/** The rule and default of each remoteReward option. */
export const REMOTE_REWARD_SCHEMA: Schema<RemoteRewardOptions> = {
  url: valueOption<string | readonly string[]>('a URL or a non-empty array of URLs', (v) => typeof v === 'string' || (Array.isArray(v) && v.length > 0 && v.every((u) => typeof u === 'string'))),
  timeout: numberOption('a finite number > 0 (milliseconds)', (v) => v > 0, 180_000) as OptionSpec<number>,
  retries: integerOption(0, 5),
  retryDelay: numberOption('a finite number >= 0 (milliseconds)', (v) => v >= 0, 500) as OptionSpec<number>,
  batchSize: integerOption(1, 256),
  query: valueOption<NonNullable<RemoteRewardOptions['query']>>('a function from (completion, prompt) to the query text', isFunction),
  label: valueOption<NonNullable<RemoteRewardOptions['label']>>('a function from a prompt to its label', isFunction),
  headers: valueOption<Record<string, string>>('an object of header strings', (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((h) => typeof h === 'string')),
}

/**
 * A RewardFunction that asks an OpenRLHF-protocol reward server. `node-grpo serve --variant toolrl` is one:
 * `remoteReward({ url: 'http://127.0.0.1:5000/get_reward' })`.
 */
export function remoteReward(options: RemoteRewardOptions): RewardFunction {
  if (typeof options !== 'object' || options === null) invalidArg('an options object with url', 'remoteReward options', options)
  const o = parseOptions(REMOTE_REWARD_SCHEMA, options, 'remoteReward')
  if (o.url === undefined) invalidArg('a URL or a non-empty array of URLs', 'url', undefined)
  const urls = typeof o.url === 'string' ? [o.url] : o.url
  for (const u of urls) {
    let parsed: URL | null = null
    try {
      parsed = new URL(u)
    } catch {
      // reported below
    }
    if (parsed === null || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) invalidArg('an http(s) URL', 'url', u)
  }
  const settings = { timeout: o.timeout!, retries: o.retries!, retryDelay: o.retryDelay!, headers: o.headers ?? {} }
  const batchSize = o.batchSize!
  const query = o.query ?? ((completion: string, prompt: TrainerPrompt) => (typeof prompt.text === 'string' ? prompt.text : '') + completion)
  const label = o.label ?? ((prompt: TrainerPrompt) => prompt.groundTruth ?? null)

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

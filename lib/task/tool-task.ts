/**
 * The bundled tool-calling task: a generator of our own for small, checkable requests in the Tool-N1 format.
 *
 * Eleven tools (weather, currency conversion, flights, alarms, email, stocks, translation, restaurant
 * booking, music, news, timers), each with a few phrasings. Every argument value is a single word or number
 * that appears verbatim in the request, so a correct call copies it; about a quarter of the requests ask for
 * two things at once and need two calls. Each example carries the paper's prompt (system prompt with the
 * candidate tools, the request, rendered as ChatML), the ground-truth calls, and a reference completion
 * `<think>…</think>\n<tool_call>\n[…]\n</tool_call>` that scores 1 with the binary reward.
 *
 * The splits share no request: a hash of the request's text assigns it to one of them (see heldOutRequest).
 */
import { invalidArg } from '../errors.js'
import { buildToolPrompt, renderCalls, renderChatML, type ChatMessage } from '../prompt.js'
import { WordTokenizer } from './tokenizer.js'

export interface ToolSpec {
  name: string
  description: string
  parameters: {
    type: 'object'
    properties: Record<string, { type: 'string' | 'integer'; description: string; enum?: string[] }>
    required: string[]
  }
}

export interface ToolCallValue {
  name: string
  arguments: Record<string, string | number>
}

export interface ToolTaskExample {
  id: string
  /** The user's request. */
  query: string
  /** The candidate tools shown in the prompt (the needed ones and some distractors, shuffled). */
  tools: ToolSpec[]
  messages: ChatMessage[]
  /** The ChatML prompt, ending with the opening of the assistant turn. */
  prompt: string
  groundTruth: ToolCallValue[]
  /** A completion that the binary reward scores 1. */
  reference: string
}

export interface ToolTask {
  tools: ToolSpec[]
  train: ToolTaskExample[]
  heldOut: ToolTaskExample[]
}

export interface ToolTaskOptions {
  /** Default 1. */
  seed?: number
  /** Examples in the train split (default 2000) and the held-out split (default 200). */
  train?: number
  heldOut?: number
  /** Share of requests that need two calls (default 0.25). */
  twoCallShare?: number
  /** Tools shown besides the needed ones (default 2). */
  distractors?: number
}

const CITIES = ['Paris', 'Tokyo', 'Berlin', 'Madrid', 'Lisbon', 'Cairo', 'Sydney', 'Toronto', 'Chicago', 'Seoul']
const CURRENCIES = ['USD', 'EUR', 'JPY', 'GBP', 'CHF', 'CAD']
const AMOUNTS = [20, 50, 100, 250, 500, 1000, 2500]
const DATES = ['2025-03-14', '2025-04-02', '2025-05-09', '2025-06-14', '2025-07-22', '2025-09-19']
const TIMES = ['06:30', '07:00', '07:30', '08:45', '12:30', '18:00', '19:30', '21:15']
const LABELS = ['gym', 'work', 'meeting', 'flight', 'yoga', 'pills']
const EMAILS = ['ana@example.com', 'ben@example.com', 'chen@example.org', 'dara@example.net', 'eli@example.com', 'femi@example.org']
const SUBJECTS = ['invoice', 'lunch', 'budget', 'report', 'holiday', 'contract']
const SYMBOLS = ['AAPL', 'MSFT', 'NVDA', 'AMZN', 'TSLA', 'IBM']
const WORDS = ['hello', 'goodbye', 'thanks', 'water', 'friend', 'coffee']
const LANGUAGES = ['spanish', 'french', 'german', 'italian', 'japanese', 'korean']
const PEOPLE = [2, 3, 4, 6, 8]
const ARTISTS = ['Adele', 'Queen', 'Coldplay', 'Drake', 'Shakira', 'Abba']
const TOPICS = ['sports', 'politics', 'science', 'health', 'finance', 'travel']
const COUNTS = [3, 5, 10]
const MINUTES = [5, 10, 15, 25, 30, 45]
const UNITS = ['celsius', 'fahrenheit']

type Rng = () => number
type Template = (pick: <T>(pool: readonly T[]) => T) => { query: string; args: Record<string, string | number> }

interface ToolDefinition {
  spec: ToolSpec
  templates: Template[]
}

const str = (description: string, extra: { enum?: string[] } = {}) => ({ type: 'string' as const, description, ...extra })
const int = (description: string) => ({ type: 'integer' as const, description })

const TOOLS: ToolDefinition[] = [
  {
    spec: {
      name: 'get_weather',
      description: 'Current weather for a city.',
      parameters: { type: 'object', properties: { city: str('City name'), unit: str('Temperature unit', { enum: UNITS }) }, required: ['city'] },
    },
    templates: [
      (p) => ((city) => ({ query: `What is the weather in ${city}?`, args: { city } }))(p(CITIES)),
      (p) => ((city) => ({ query: `How warm is it in ${city} right now?`, args: { city } }))(p(CITIES)),
      (p) => ((city, unit) => ({ query: `Give me the weather for ${city} in ${unit}.`, args: { city, unit } }))(p(CITIES), p(UNITS)),
      (p) => ((city, unit) => ({ query: `Tell me the temperature in ${city} in ${unit}, please.`, args: { city, unit } }))(p(CITIES), p(UNITS)),
    ],
  },
  {
    spec: {
      name: 'convert_currency',
      description: 'Convert an amount of money from one currency to another.',
      parameters: {
        type: 'object',
        properties: { amount: int('Amount to convert'), from_currency: str('Currency code to convert from'), to_currency: str('Currency code to convert to') },
        required: ['amount', 'from_currency', 'to_currency'],
      },
    },
    templates: [
      (p) => ((a, f, t) => ({ query: `Convert ${a} ${f} to ${t}.`, args: { amount: a, from_currency: f, to_currency: t } }))(p(AMOUNTS), ...distinct(p, CURRENCIES)),
      (p) => ((a, f, t) => ({ query: `How much is ${a} ${f} in ${t}?`, args: { amount: a, from_currency: f, to_currency: t } }))(p(AMOUNTS), ...distinct(p, CURRENCIES)),
      (p) => ((a, f, t) => ({ query: `I have ${a} ${f}, what is that in ${t}?`, args: { amount: a, from_currency: f, to_currency: t } }))(p(AMOUNTS), ...distinct(p, CURRENCIES)),
    ],
  },
  {
    spec: {
      name: 'search_flights',
      description: 'Search flights between two cities on a date.',
      parameters: {
        type: 'object',
        properties: { origin: str('Departure city'), destination: str('Arrival city'), date: str('Date, YYYY-MM-DD') },
        required: ['origin', 'destination', 'date'],
      },
    },
    templates: [
      (p) => ((o, d, date) => ({ query: `Find flights from ${o} to ${d} on ${date}.`, args: { origin: o, destination: d, date } }))(...distinct(p, CITIES), p(DATES)),
      (p) => ((o, d, date) => ({ query: `Are there flights to ${d} from ${o} on ${date}?`, args: { origin: o, destination: d, date } }))(...distinct(p, CITIES), p(DATES)),
    ],
  },
  {
    spec: {
      name: 'set_alarm',
      description: 'Set an alarm at a time of day.',
      parameters: { type: 'object', properties: { time: str('Time, HH:MM'), label: str('Name of the alarm') }, required: ['time'] },
    },
    templates: [
      (p) => ((time) => ({ query: `Set an alarm for ${time}.`, args: { time } }))(p(TIMES)),
      (p) => ((time) => ({ query: `Wake me up at ${time}.`, args: { time } }))(p(TIMES)),
      (p) => ((label, time) => ({ query: `Set a ${label} alarm for ${time}.`, args: { time, label } }))(p(LABELS), p(TIMES)),
    ],
  },
  {
    spec: {
      name: 'send_email',
      description: 'Send an email.',
      parameters: { type: 'object', properties: { to: str('Recipient address'), subject: str('Subject line') }, required: ['to', 'subject'] },
    },
    templates: [
      (p) => ((to, subject) => ({ query: `Email ${to} about ${subject}.`, args: { to, subject } }))(p(EMAILS), p(SUBJECTS)),
      (p) => ((to, subject) => ({ query: `Send a message to ${to} with the subject ${subject}.`, args: { to, subject } }))(p(EMAILS), p(SUBJECTS)),
    ],
  },
  {
    spec: {
      name: 'get_stock_price',
      description: 'Latest price of a stock.',
      parameters: { type: 'object', properties: { symbol: str('Ticker symbol') }, required: ['symbol'] },
    },
    templates: [
      (p) => ((symbol) => ({ query: `What is ${symbol} trading at?`, args: { symbol } }))(p(SYMBOLS)),
      (p) => ((symbol) => ({ query: `Get the current price of ${symbol} stock.`, args: { symbol } }))(p(SYMBOLS)),
    ],
  },
  {
    spec: {
      name: 'translate_text',
      description: 'Translate a word into another language.',
      parameters: { type: 'object', properties: { text: str('Text to translate'), target_language: str('Language to translate into') }, required: ['text', 'target_language'] },
    },
    templates: [
      (p) => ((text, l) => ({ query: `Translate ${text} into ${l}.`, args: { text, target_language: l } }))(p(WORDS), p(LANGUAGES)),
      (p) => ((text, l) => ({ query: `How do you say ${text} in ${l}?`, args: { text, target_language: l } }))(p(WORDS), p(LANGUAGES)),
    ],
  },
  {
    spec: {
      name: 'book_table',
      description: 'Book a restaurant table.',
      parameters: {
        type: 'object',
        properties: { city: str('City of the restaurant'), people: int('Number of guests'), time: str('Time, HH:MM') },
        required: ['city', 'people', 'time'],
      },
    },
    templates: [
      (p) => ((n, city, time) => ({ query: `Book a table for ${n} in ${city} at ${time}.`, args: { city, people: n, time } }))(p(PEOPLE), p(CITIES), p(TIMES)),
      (p) => ((city, n, time) => ({ query: `Reserve dinner in ${city} for ${n} people at ${time}.`, args: { city, people: n, time } }))(p(CITIES), p(PEOPLE), p(TIMES)),
    ],
  },
  {
    spec: {
      name: 'play_music',
      description: 'Play music by an artist.',
      parameters: { type: 'object', properties: { artist: str('Artist name') }, required: ['artist'] },
    },
    templates: [
      (p) => ((artist) => ({ query: `Play something by ${artist}.`, args: { artist } }))(p(ARTISTS)),
      (p) => ((artist) => ({ query: `Put on some ${artist} songs.`, args: { artist } }))(p(ARTISTS)),
    ],
  },
  {
    spec: {
      name: 'get_news',
      description: 'Latest news headlines on a topic.',
      parameters: { type: 'object', properties: { topic: str('News topic'), count: int('Number of headlines') }, required: ['topic'] },
    },
    templates: [
      (p) => ((topic) => ({ query: `Show me the latest ${topic} news.`, args: { topic } }))(p(TOPICS)),
      (p) => ((count, topic) => ({ query: `Give me ${count} headlines about ${topic}.`, args: { topic, count } }))(p(COUNTS), p(TOPICS)),
    ],
  },
  {
    spec: {
      name: 'set_timer',
      description: 'Start a countdown timer.',
      parameters: { type: 'object', properties: { minutes: int('Length in minutes') }, required: ['minutes'] },
    },
    templates: [
      (p) => ((minutes) => ({ query: `Set a timer for ${minutes} minutes.`, args: { minutes } }))(p(MINUTES)),
      (p) => ((minutes) => ({ query: `Start a ${minutes} minute countdown.`, args: { minutes } }))(p(MINUTES)),
    ],
  },
]

function distinct<T>(pick: <U>(pool: readonly U[]) => U, pool: readonly T[]): [T, T] {
  const a = pick(pool)
  let b = pick(pool)
  while (b === a) b = pick(pool)
  return [a, b]
}

/** mulberry32: a small seeded generator; the task only needs reproducible variety. */
export function mulberry32(seed: number): Rng {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function shuffle<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}

/** The tools of the task, in the JSON-schema form that the prompt lists. */
export function toolTaskTools(): ToolSpec[] {
  return TOOLS.map((t) => structuredClone(t.spec))
}

/** The reference completion: a short reasoning, then the calls in the prompt's own JSON layout. */
export function referenceCompletion(calls: readonly ToolCallValue[]): string {
  if (!Array.isArray(calls)) invalidArg('an array of {name, arguments} calls', 'calls', calls)
  calls.forEach((c, i) => {
    if (typeof c !== 'object' || c === null || typeof c.name !== 'string') invalidArg('a {name, arguments} call with a string name', `calls[${i}]`, c)
  })
  const names = [...new Set(calls.map((c) => c.name))]
  return `<think>Use ${names.join(', ')}.</think>\n${renderCalls(calls)}`
}

function makeExample(id: string, rng: Rng, twoCallShare: number, distractors: number): ToolTaskExample {
  const pick = <T>(pool: readonly T[]): T => pool[Math.floor(rng() * pool.length)]!
  const first = Math.floor(rng() * TOOLS.length)
  const chosen = [first]
  if (rng() < twoCallShare) {
    let second = Math.floor(rng() * TOOLS.length)
    while (second === first) second = Math.floor(rng() * TOOLS.length)
    chosen.push(second)
  }
  const parts = chosen.map((t) => ({ tool: TOOLS[t]!, ...pick(TOOLS[t]!.templates)(pick) }))
  const query = parts.map((p) => p.query).join(' Also, ')
  const groundTruth = parts.map((p) => ({ name: p.tool.spec.name, arguments: p.args }))
  const others = shuffle(TOOLS.map((_, i) => i).filter((i) => !chosen.includes(i)), rng).slice(0, distractors)
  const tools = shuffle([...chosen, ...others], rng).map((i) => structuredClone(TOOLS[i]!.spec))
  const messages = buildToolPrompt(tools, query)
  return {
    id,
    query,
    tools,
    messages,
    prompt: renderChatML(messages, { addGenerationPrompt: true }),
    groundTruth,
    reference: referenceCompletion(groundTruth),
  }
}

/** A task option that counts something: `fallback` when absent, else a non-negative safe integer. */
export function count(value: unknown, what: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || (value as number) < 0) invalidArg('a non-negative integer', what, value)
  return value as number
}

/**
 * Which split a request belongs to: a hash (FNV-1a) of its text puts 1 in `HELD_OUT_SHARE` requests in the
 * held-out split only. Both splits are then drawn from the same generator (same tools, same share of two-call
 * requests) and never share a request; the held-out requests are new combinations of phrasings and values.
 * `bucket` picks which residue is held out (each task keeps its own, so its splits stay as recorded in bench/).
 */
export const HELD_OUT_SHARE = 8

export function heldOutRequest(query: string, bucket = 0): boolean {
  let h = 0x811c9dc5
  for (let i = 0; i < query.length; i++) h = Math.imul(h ^ query.charCodeAt(i), 0x01000193)
  return (h >>> 0) % HELD_OUT_SHARE === bucket
}

function drawSplit(n: number, prefix: string, heldOut: boolean, rng: Rng, twoCallShare: number, distractors: number): ToolTaskExample[] {
  const out: ToolTaskExample[] = []
  // Bounded: about 1 draw in 8 (held-out) or 8 in 9 (train) is accepted.
  for (let tries = 0; out.length < n && tries < n * HELD_OUT_SHARE * 20; tries++) {
    const e = makeExample(`${prefix}-${out.length}`, rng, twoCallShare, distractors)
    if (heldOutRequest(e.query) === heldOut) out.push(e)
  }
  return out
}

/** Generates the train and held-out splits. Same options, same examples. */
export function generateToolTask(options: ToolTaskOptions = {}): ToolTask {
  if (typeof options !== 'object' || options === null) invalidArg('an options object', 'generateToolTask options', options)
  const seed = count(options.seed, 'seed', 1)
  const nTrain = count(options.train, 'train', 2000)
  const nHeldOut = count(options.heldOut, 'heldOut', 200)
  const distractors = count(options.distractors, 'distractors', 2)
  const twoCallShare = options.twoCallShare ?? 0.25
  if (typeof twoCallShare !== 'number' || !(twoCallShare >= 0 && twoCallShare <= 1)) invalidArg('a number in [0, 1]', 'twoCallShare', twoCallShare)
  return {
    tools: toolTaskTools(),
    train: drawSplit(nTrain, 'train', false, mulberry32(seed * 2 + 1), twoCallShare, distractors),
    heldOut: drawSplit(nHeldOut, 'heldout', true, mulberry32(seed * 2 + 2), twoCallShare, distractors),
  }
}

/**
 * The special pieces of the task's text: the format's tags, the ChatML markers, and the JSON punctuation of a
 * call list, including one `"key": ` piece per argument name.
 */
export function toolTaskSpecials(tools: readonly ToolSpec[] = toolTaskTools()): string[] {
  if (!Array.isArray(tools)) invalidArg('an array of tool specs', 'tools', tools)
  const keys = new Set<string>()
  tools.forEach((t, i) => {
    const properties = (t as Partial<ToolSpec> | null)?.parameters?.properties
    if (typeof properties !== 'object' || properties === null) invalidArg('a tool spec with parameters.properties', `tools[${i}]`, t)
    for (const k of Object.keys(properties)) keys.add(`"${k}": `)
  })
  return [
    '<think>',
    '</think>',
    '<tool_call>',
    '</tool_call>',
    '<|im_start|>',
    '<|im_end|>',
    '{"name": "',
    '", "arguments": {',
    '}}',
    ', ',
    ...keys,
  ]
}

/** A tokenizer fitted to the task's train split (prompts and reference completions). */
export function fitToolTaskTokenizer(task: ToolTask): WordTokenizer {
  if (typeof task !== 'object' || task === null || !Array.isArray(task.train) || !Array.isArray(task.tools)) {
    invalidArg('a task from generateToolTask ({tools, train, heldOut})', 'task', task)
  }
  const texts = function* () {
    for (const [i, e] of task.train.entries()) {
      if (typeof e !== 'object' || e === null) invalidArg('an example with prompt and reference texts', `task.train[${i}]`, e)
      yield e.prompt
      yield e.reference
    }
  }
  return WordTokenizer.fit(texts(), { specials: toolTaskSpecials(task.tools) })
}

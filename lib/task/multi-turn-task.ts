/**
 * The bundled multi-turn task: requests whose final call needs a value that only a tool returns. "Book a table at
 * Luigi for 4 people at 19:30" needs Luigi's restaurant id, which `find_restaurant` looks up; the model calls it,
 * reads `{"restaurant_id": 4821}` in the tool turn, then calls `book_table` with that id and the request's other
 * values. The id is drawn per request, so no amount of memorizing the training split gives it away.
 *
 * Five lookup/act pairs (restaurants, contacts, where a user lives, orders, songs). Each request shows its pair's
 * two tools and two other tools. The lookup tools run inside the trainer (`multiTurnToolFunctions()`): each reads
 * the request's hidden records (`prompt.records`, one per request) and fails, as a real service would, for a
 * name it does not know. The act tools are the answer: a call to them ends the trajectory, and the reward (the
 * Tool-N1 binary reward by default) compares it with the ground truth.
 *
 * The splits share no request (a hash of the request's text assigns it, as in the single-turn task).
 */
import { invalidArg } from '../errors.js'
import { buildToolPrompt, pythonJson, renderCalls, renderChatML, toolTurnRenderer, type ChatMessage } from '../prompt.js'
import type { ToolFunction } from '../trainer/types.js'
import { WordTokenizer } from './tokenizer.js'
import { HELD_OUT_SHARE, count, heldOutRequest, mulberry32, toolTaskSpecials, type ToolCallValue, type ToolSpec } from './tool-task.js'

/** A lookup's hidden records: lookup argument value → the result the tool returns. */
export type LookupRecords = Record<string, Record<string, string | number>>

export interface MultiTurnExample {
  id: string
  query: string
  /** The tools shown in the prompt: the lookup, the act tool and two others, shuffled. */
  tools: ToolSpec[]
  messages: ChatMessage[]
  /** The ChatML prompt, ending with the opening of the assistant turn. */
  prompt: string
  /** The lookup tool's records for this request (what the tool returns; the prompt never shows them). */
  records: Record<string, LookupRecords>
  /** The final call (the act tool's, with the looked-up value). */
  groundTruth: ToolCallValue[]
  /** A reference trajectory: the model's turns, and the tool results between them. */
  reference: { turns: string[]; results: string[] }
}

export interface MultiTurnTask {
  tools: ToolSpec[]
  train: MultiTurnExample[]
  heldOut: MultiTurnExample[]
}

export interface MultiTurnTaskOptions {
  /** Default 1. */
  seed?: number
  /** Examples in the train split (default 2000) and the held-out split (default 200). */
  train?: number
  heldOut?: number
  /** Tools shown besides the needed two (default 2). */
  distractors?: number
}

type Rng = () => number

const str = (description: string) => ({ type: 'string' as const, description })
const int = (description: string) => ({ type: 'integer' as const, description })
const tool = (name: string, description: string, properties: ToolSpec['parameters']['properties'], required = Object.keys(properties)): ToolSpec => ({
  name,
  description,
  parameters: { type: 'object', properties, required },
})

const RESTAURANTS = ['Luigi', 'Sakura', 'Nopa', 'Oasis', 'Alma', 'Kopi', 'Verde', 'Zuni']
const PEOPLE_NAMES = ['Ana', 'Ben', 'Chen', 'Dara', 'Eli', 'Femi', 'Gus', 'Hana']
const SONGS = ['Yesterday', 'Imagine', 'Halo', 'Dreams', 'Roxanne', 'Vogue', 'Jolene', 'Creep']
const IDS = [1017, 1342, 2231, 2608, 3125, 3379, 4094, 4821, 5150, 5733, 6262, 6847, 7319, 7906, 8460, 9235]
const EMAILS = ['ana@example.com', 'ben@example.org', 'chen@example.net', 'dara@example.com', 'eli@example.org', 'femi@example.net', 'gus@example.com', 'hana@example.org']
const CITIES = ['Paris', 'Tokyo', 'Berlin', 'Madrid', 'Lisbon', 'Cairo', 'Sydney', 'Toronto', 'Chicago', 'Seoul']
const COUNTS = [2, 3, 4, 6, 8]
const TIMES = ['07:30', '12:30', '18:00', '19:30', '21:15']
const SUBJECTS = ['invoice', 'lunch', 'budget', 'report', 'holiday']
const UNITS = ['celsius', 'fahrenheit']
const VOLUMES = [3, 5, 7, 9]

type Pick = <T>(pool: readonly T[]) => T

/** A lookup/act pair: the two tools, and how a request of this kind is drawn. */
interface Pair {
  lookup: ToolSpec
  act: ToolSpec
  /** The lookup's argument name, the result's field, and the act tool's argument that takes its value. */
  key: string
  field: string
  param: string
  draw: (pick: Pick) => { query: string; entity: string; value: string | number; args: Record<string, string | number> }
}

const PAIRS: Pair[] = [
  {
    lookup: tool('find_restaurant', 'Find a restaurant by name; returns its restaurant_id.', { name: str('Restaurant name') }),
    act: tool('book_table', 'Book a table at a restaurant.', { restaurant_id: int('Id from find_restaurant'), people: int('Number of guests'), time: str('Time, HH:MM') }),
    key: 'name',
    field: 'restaurant_id',
    param: 'restaurant_id',
    draw: (p) => {
      const [entity, people, time, value] = [p(RESTAURANTS), p(COUNTS), p(TIMES), p(IDS)]
      const query = p([`Book a table at ${entity} for ${people} people at ${time}.`, `Reserve ${entity} for ${people} at ${time}, please.`])
      return { query, entity, value, args: { people, time } }
    },
  },
  {
    lookup: tool('find_contact', 'Look up a contact by name; returns their email.', { name: str('Contact name') }),
    act: tool('send_email', 'Send an email.', { to: str('Recipient address'), subject: str('Subject line') }),
    key: 'name',
    field: 'email',
    param: 'to',
    draw: (p) => {
      const [entity, subject, value] = [p(PEOPLE_NAMES), p(SUBJECTS), p(EMAILS)]
      const query = p([`Email ${entity} about the ${subject}.`, `Send ${entity} a message about the ${subject}.`])
      return { query, entity, value, args: { subject } }
    },
  },
  {
    lookup: tool('get_user_city', 'The city a user lives in.', { user: str('User name') }),
    act: tool('get_weather', 'Current weather for a city.', { city: str('City name'), unit: str('Temperature unit') }),
    key: 'user',
    field: 'city',
    param: 'city',
    draw: (p) => {
      const [entity, unit, value] = [p(PEOPLE_NAMES), p(UNITS), p(CITIES)]
      const query = p([`What is the weather where ${entity} lives, in ${unit}?`, `How warm is it in the city of ${entity}, in ${unit}?`])
      return { query, entity, value, args: { unit } }
    },
  },
  {
    lookup: tool('find_order', "Find a customer's last order; returns its order_id.", { customer: str('Customer name') }),
    act: tool('track_order', 'Where an order is.', { order_id: int('Id from find_order') }),
    key: 'customer',
    field: 'order_id',
    param: 'order_id',
    draw: (p) => {
      const [entity, value] = [p(PEOPLE_NAMES), p(IDS)]
      const query = p([`Where is the last order of ${entity}?`, `Track the latest order that ${entity} placed.`])
      return { query, entity, value, args: {} }
    },
  },
  {
    lookup: tool('search_song', 'Find a song by title; returns its song_id.', { title: str('Song title') }),
    act: tool('play_song', 'Play a song.', { song_id: int('Id from search_song'), volume: int('Volume from 1 to 10') }),
    key: 'title',
    field: 'song_id',
    param: 'song_id',
    draw: (p) => {
      const [entity, volume, value] = [p(SONGS), p(VOLUMES), p(IDS)]
      const query = p([`Play ${entity} at volume ${volume}.`, `Put on the song ${entity}, volume ${volume}.`])
      return { query, entity, value, args: { volume } }
    },
  },
]

/** Every tool of the task (lookups and acts), as the prompts list them. */
export function multiTurnTaskTools(): ToolSpec[] {
  return PAIRS.flatMap((p) => [structuredClone(p.lookup), structuredClone(p.act)])
}

/** The model turn that makes `calls` (the reference completions' shape). */
function turn(calls: readonly ToolCallValue[]): string {
  return `<think>Use ${[...new Set(calls.map((c) => c.name))].join(', ')}.</think>\n${renderCalls(calls)}`
}

function shuffle<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}

function makeExample(id: string, rng: Rng, distractors: number): MultiTurnExample {
  const pick: Pick = (pool) => pool[Math.floor(rng() * pool.length)]!
  const k = Math.floor(rng() * PAIRS.length)
  const pair = PAIRS[k]!
  const d = pair.draw(pick)
  const lookupCall: ToolCallValue = { name: pair.lookup.name, arguments: { [pair.key]: d.entity } }
  // The act tool's arguments in the order of its schema, the looked-up value among them.
  const args: Record<string, string | number> = {}
  for (const name of Object.keys(pair.act.parameters.properties)) {
    const value = name === pair.param ? d.value : d.args[name]
    if (value !== undefined) args[name] = value
  }
  const final: ToolCallValue = { name: pair.act.name, arguments: args }
  const others = shuffle(
    PAIRS.flatMap((p, i) => (i === k ? [] : [p.lookup, p.act])),
    rng,
  ).slice(0, distractors)
  const tools = shuffle([pair.lookup, pair.act, ...others], rng).map((t) => structuredClone(t))
  const messages = buildToolPrompt(tools, d.query)
  // What the lookup tool's result reads like in the tool turn (the trainer writes JSON with these separators).
  const result = pythonJson({ [pair.field]: d.value })
  return {
    id,
    query: d.query,
    tools,
    messages,
    prompt: renderChatML(messages, { addGenerationPrompt: true }),
    records: { [pair.lookup.name]: { [d.entity]: { [pair.field]: d.value } } },
    groundTruth: [final],
    reference: { turns: [turn([lookupCall]), turn([final])], results: [result] },
  }
}

/** The multi-turn task's held-out residue of the shared request hash (the single-turn task holds out 0). */
const HELD_OUT_BUCKET = 3

function drawSplit(n: number, prefix: string, heldOut: boolean, rng: Rng, distractors: number): MultiTurnExample[] {
  const out: MultiTurnExample[] = []
  for (let tries = 0; out.length < n && tries < n * HELD_OUT_SHARE * 20; tries++) {
    const e = makeExample(`${prefix}-${out.length}`, rng, distractors)
    if (heldOutRequest(e.query, HELD_OUT_BUCKET) === heldOut) out.push(e)
  }
  return out
}

/** Generates the train and held-out splits. Same options, same examples. */
export function generateMultiTurnTask(options: MultiTurnTaskOptions = {}): MultiTurnTask {
  if (typeof options !== 'object' || options === null) invalidArg('an options object', 'generateMultiTurnTask options', options)
  const seed = count(options.seed, 'seed', 1)
  const distractors = count(options.distractors, 'distractors', 2)
  return {
    tools: multiTurnTaskTools(),
    train: drawSplit(count(options.train, 'train', 2000), 'train', false, mulberry32(seed * 2 + 101), distractors),
    heldOut: drawSplit(count(options.heldOut, 'heldOut', 200), 'heldout', true, mulberry32(seed * 2 + 102), distractors),
  }
}

/**
 * The lookup tools, run by the trainer: each answers from the request's records (`prompt.records`, as
 * generateMultiTurnTask writes them) and throws for a name it does not know, which the model reads as an error.
 */
export function multiTurnToolFunctions(): Record<string, ToolFunction> {
  const out: Record<string, ToolFunction> = {}
  for (const pair of PAIRS) {
    const name = pair.lookup.name
    out[name] = (args, { prompt }) => {
      const records = (prompt.records as Record<string, LookupRecords> | undefined)?.[name] ?? {}
      const key = args?.[pair.key]
      if (typeof key !== 'string') throw new Error(`${pair.key} must be a string`)
      const found = Object.hasOwn(records, key) ? records[key] : undefined
      if (found === undefined) throw new Error(`no ${pair.key} ${key}`)
      return found
    }
  }
  return out
}

/** The special pieces of the task's text: the single-turn task's, the result keys, and the tool-turn tags. */
export function multiTurnTaskSpecials(): string[] {
  const results = PAIRS.map((p) => `{"${p.field}": `)
  return [...toolTaskSpecials(multiTurnTaskTools()), ...results, '<tool_response>', '</tool_response>', '{"error": "']
}

/**
 * A tokenizer fitted to the train split: prompts, reference turns, and the tool turns as the trainer renders them
 * (results and the errors of unknown names).
 */
export function fitMultiTurnTokenizer(task: MultiTurnTask): WordTokenizer {
  if (typeof task !== 'object' || task === null || !Array.isArray(task.train)) {
    invalidArg('a task from generateMultiTurnTask ({tools, train, heldOut})', 'task', task)
  }
  const render = toolTurnRenderer()
  const texts = function* () {
    for (const [i, e] of task.train.entries()) {
      const reference = (e as Partial<MultiTurnExample> | null)?.reference
      if (typeof e !== 'object' || e === null || typeof reference !== 'object' || reference === null || !Array.isArray(reference.turns) || !Array.isArray(reference.results)) {
        invalidArg('an example with a prompt and a reference {turns, results}', `task.train[${i}]`, e)
      }
      yield e.prompt
      for (const t of reference.turns) yield t
      for (const r of reference.results) yield render([{ name: 'tool', content: r }], '')
    }
    for (const pair of PAIRS) yield `{"error": "tool ${pair.lookup.name} failed: no ${pair.key} x"}`
  }
  return WordTokenizer.fit(texts(), { specials: multiTurnTaskSpecials() })
}

// Deterministic, realistic tool-call completions for the reward benchmark and tests: a reasoning passage in
// <think> tags and one <tool_call> block with 1 to 3 calls, 300 to 1,000 characters in all, and a mix of
// outcomes close to what a policy early in GRPO training produces (right, wrong values, wrong names, bad JSON,
// missing tags).

const TOOLS = [
  ['get_weather', { city: 's', days: 'i', units: ['metric', 'imperial'] }],
  ['search_hotels', { city: 's', checkin: 'd', nights: 'i', max_price: 'f' }],
  ['convert_currency', { amount: 'f', from: ['USD', 'EUR', 'JPY', 'GBP'], to: ['USD', 'EUR', 'JPY', 'GBP'] }],
  ['get_stock_price', { symbol: ['AAPL', 'NVDA', 'MSFT', 'TSLA'], exchange: ['NASDAQ', 'NYSE'] }],
  ['translate_text', { text: 's', target_language: ['fr', 'de', 'ja', 'es'] }],
  ['book_flight', { origin: 's', destination: 's', date: 'd', passengers: 'i', cabin: ['economy', 'business'] }],
  ['calculate_loan', { principal: 'f', rate: 'f', years: 'i' }],
  ['find_restaurants', { city: 's', cuisine: ['thai', 'italian', 'sushi'], open_now: 'b', tags: 'l' }],
  ['get_tide_times', { port: 's', days: 'i' }],
  ['send_email', { to: 's', subject: 's', cc: 'l', priority: ['low', 'normal', 'high'] }],
]
const CITIES = ['Paris', 'Le Havre (north)', 'São Paulo', 'Zürich', '東京', 'New York, NY', 'Cape Town', 'Reykjavík']
const WORDS = (
  'the user asks for this so I need to call the tool with the right arguments and check each value against ' +
  'the request before answering carefully because the parameters must match the schema exactly including ' +
  'units dates and names which matter for a correct result'
).split(' ')

/** mulberry32: a small seeded generator, so every run scores the same completions. */
export function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function pick(random, list) {
  return list[Math.floor(random() * list.length)]
}

function value(random, kind) {
  if (Array.isArray(kind)) return JSON.stringify(pick(random, kind))
  switch (kind) {
    case 's':
      return JSON.stringify(pick(random, CITIES))
    case 'i':
      return String(1 + Math.floor(random() * 30))
    case 'f':
      return (Math.floor(random() * 100000) / 100).toFixed(2)
    case 'd':
      return JSON.stringify(`2025-0${1 + Math.floor(random() * 9)}-1${Math.floor(random() * 10)}`)
    case 'b':
      return random() < 0.5 ? 'true' : 'false'
    default:
      return JSON.stringify([pick(random, CITIES), pick(random, WORDS)])
  }
}

function makeCall(random) {
  const [name, schema] = pick(random, TOOLS)
  const args = Object.entries(schema).map(([key, kind]) => [key, value(random, kind)])
  return { name, args }
}

function render(call, shuffle, random) {
  const args = shuffle ? [...call.args].sort(() => random() - 0.5) : call.args
  return `{"name": ${JSON.stringify(call.name)}, "arguments": {${args.map(([k, v]) => `${JSON.stringify(k)}: ${v}`).join(', ')}}}`
}

function thinking(random, length) {
  const words = []
  let size = 0
  while (size < length) {
    const word = pick(random, WORDS)
    words.push(word)
    size += word.length + 1
  }
  return words.join(' ')
}

/**
 * `prompts` ground truths (JSON text), `perPrompt` completions for each: `{completion, groundTruth}` items, in
 * prompt order (as a GRPO batch is laid out).
 */
export function makeItems(prompts, perPrompt = 5, seed = 1) {
  const random = rng(seed)
  const items = []
  for (let p = 0; p < prompts; p++) {
    const calls = Array.from({ length: 1 + Math.floor(random() * 3) }, () => makeCall(random))
    const groundTruth = `[${calls.map((c) => render(c, false, random)).join(', ')}]`
    for (let k = 0; k < perPrompt; k++) {
      const roll = random()
      let predicted = calls
      let block
      if (roll < 0.1) {
        // A wrong value in one argument.
        predicted = calls.map((c, i) => (i === 0 ? { ...c, args: c.args.map(([key], j) => [key, j === 0 ? '"wrong"' : c.args[j][1]]) } : c))
      } else if (roll < 0.15) {
        predicted = calls.map((c) => ({ ...c, name: c.name + '_v2' }))
      }
      const shuffled = roll > 0.6 && roll < 0.75 ? [...predicted].reverse() : predicted
      block = `[${shuffled.map((c) => render(c, roll > 0.5, random)).join(', ')}]`
      if (roll >= 0.15 && roll < 0.22) block = block.replaceAll('"', "'")
      else if (roll >= 0.22 && roll < 0.26) block = block.slice(0, -1) + ',]'
      const reasoning = thinking(random, 150 + Math.floor(random() * 500))
      let completion = `<think>${reasoning}</think>\n<tool_call>\n${block}\n</tool_call>`
      if (roll >= 0.26 && roll < 0.32) completion = completion.replace('</think>', '')
      else if (roll >= 0.32 && roll < 0.36) completion = `<think>${reasoning}</think>\nI cannot find a suitable tool for this request.`
      items.push({ completion, groundTruth })
    }
  }
  return items
}

/**
 * The bundled multi-turn task: reproducible, disjoint splits; the final call needs the value the lookup tool
 * returns (never shown in the prompt); the tools answer from the request's records and fail for unknown names;
 * reference trajectories that the binary reward scores 1 (and a first turn alone that it does not); a tokenizer
 * that covers the reference trajectories and the tool turns.
 */
import t from 'tap'
import { prompt as promptModule, reward, task, type ToolContext } from '../../lib/index.js'

const small = task.generateMultiTurnTask({ seed: 3, train: 200, heldOut: 40 })

t.test('splits: sizes, reproducible, disjoint, the pairs all used', async (t) => {
  t.equal(small.train.length, 200)
  t.equal(small.heldOut.length, 40)
  t.equal(small.tools.length, 10)
  const again = task.generateMultiTurnTask({ seed: 3, train: 200, heldOut: 40 })
  t.same(again.train.map((e) => [e.query, e.groundTruth]), small.train.map((e) => [e.query, e.groundTruth]), 'same seed, same examples')
  const other = task.generateMultiTurnTask({ seed: 4, train: 200, heldOut: 40 })
  t.not(JSON.stringify(other.train.map((e) => e.groundTruth)), JSON.stringify(small.train.map((e) => e.groundTruth)))
  const trainQueries = new Set(small.train.map((e) => e.query))
  t.ok(small.heldOut.every((e) => !trainQueries.has(e.query)), 'no held-out request is in the train split')
  t.equal(new Set(small.train.map((e) => e.groundTruth[0]!.name)).size, 5, 'every act tool is used')
  t.same(task.generateMultiTurnTask({ train: 0, heldOut: 0 }).train, [])
  t.throws(() => task.generateMultiTurnTask({ train: -1 }), { message: /non-negative integer for train/ })
  t.throws(() => task.generateMultiTurnTask(null as never), { message: /options object/ })
})

t.test('examples: the needed value comes only from the tool; references score 1', async (t) => {
  const tools = task.multiTurnToolFunctions()
  const context = (e: task.MultiTurnExample): ToolContext => ({ prompt: { tokens: [], records: e.records }, signal: new AbortController().signal })
  for (const e of [...small.train, ...small.heldOut]) {
    t.equal(e.tools.length, 4, 'the pair and two other tools')
    const [lookupName] = Object.keys(e.records)
    const [[key, record]] = Object.entries(e.records[lookupName!]!)
    const [value] = Object.values(record!)
    t.ok(e.query.includes(key!), 'the lookup key is in the request')
    t.notOk(e.query.includes(String(value)), 'the looked-up value is not in the request')
    t.ok(JSON.stringify(e.groundTruth[0]!.arguments).includes(JSON.stringify(value)), 'the final call uses the looked-up value')
    // The lookup tool, run as the trainer runs it, returns the reference's result; an unknown key throws.
    const call = reward.extractCalls(reward.lastBlock(e.reference.turns[0]!)!.content).calls![0]!
    const result = await tools[call.name as string]!(JSON.parse(JSON.stringify(call.arguments)), context(e))
    t.equal(promptModule.pythonJson(result), e.reference.results[0])
    t.throws(() => tools[call.name as string]!({ [Object.keys(call.arguments as object)[0]!]: 'Nobody' }, context(e)), /no \w+ Nobody/)
    // The whole trajectory scores 1 with the binary reward; the first turn alone does not.
    const render = promptModule.toolTurnRenderer()
    const trajectory = e.reference.turns[0]! + render([{ name: call.name as string, content: e.reference.results[0]! }], e.reference.turns[0]!) + e.reference.turns[1]!
    t.equal(reward.scoreToolCall(trajectory, e.groundTruth).score, 1)
    t.equal(reward.scoreToolCall(e.reference.turns[0]!, e.groundTruth).score, 0)
  }
  t.throws(() => tools.find_restaurant!({ name: 5 }, { prompt: { tokens: [] }, signal: new AbortController().signal }), /must be a string/)
  t.throws(() => tools.find_restaurant!({ name: 'Luigi' }, { prompt: { tokens: [] }, signal: new AbortController().signal }), /no name Luigi/, 'a prompt without records')
})

t.test('the tokenizer covers prompts, reference turns and tool turns', async (t) => {
  const tokenizer = task.fitMultiTurnTokenizer(small)
  const render = promptModule.toolTurnRenderer()
  for (const e of small.heldOut) {
    for (const text of [e.prompt, ...e.reference.turns, render([{ name: 'x', content: e.reference.results[0]! }], '')]) {
      const ids = tokenizer.encode(text)
      t.notOk(ids.includes(tokenizer.id('<unk>')!), `no unknown piece in ${JSON.stringify(text.slice(0, 40))}`)
      t.equal(tokenizer.decode(ids), text)
    }
  }
  t.ok(task.multiTurnTaskSpecials().includes('<tool_response>'))
})

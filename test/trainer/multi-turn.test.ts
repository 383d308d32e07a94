/**
 * Multi-turn steps with tools: the loop (call → tool turn → next model turn → … until an answer or maxTurns),
 * tools that throw, hang, return huge or non-JSON results or do not exist, the token masks of tool turns (their
 * gradient is exactly zero), per-turn metrics, and the reward seeing the whole trajectory.
 *
 * A scripted policy decides what each model turn says (so every path is reached on purpose); its logits, backward
 * and parameters are a real LogLinearPolicy's, so the loss and the gradient are the real ones.
 */
import t from 'tap'
import { LogLinearPolicy, Trainer, presets, prompt as promptModule, type Policy, type PolicyBatch, type SampleOptions, type SampledCompletion, type Tensor, type ToolFunction, type TrainerOptions, type TrainerPrompt } from '../../lib/index.js'
import { rollout, turnCalls } from '../../lib/trainer/multi-turn.js'
import { runToolCall } from '../../lib/trainer/tools.js'

// Vocabulary: 0 ends a turn; 1..7 are model words, each decoding to a whole call or answer; 8 and 9 are the
// words tool turns are written with (8 opens one, 9 stands for every 16 characters of it).
const V = 10
const EOS = 0
const WORDS: Record<number, string> = {
  1: '<tool_call>[{"name": "lookup", "arguments": {"key": "a"}}]</tool_call>',
  2: '<tool_call>[{"name": "explode", "arguments": {}}]</tool_call>',
  3: '<tool_call>[{"name": "hang", "arguments": {}}]</tool_call>',
  4: '<tool_call>[{"name": "huge", "arguments": {}}]</tool_call>',
  5: '<tool_call>[{"name": "bigint", "arguments": {}}]</tool_call>',
  6: '<tool_call>[{"name": "nosuch", "arguments": {}}, {"name": "lookup", "arguments": {"key": "b"}}]</tool_call>',
  7: '<tool_call>[{"name": "final", "arguments": {"value": 42}}]</tool_call>',
}
const decode = (tokens: Int32Array) => Array.from(tokens, (x) => (x === EOS ? '' : (WORDS[x] ?? `<${x}>`))).join('')

/** What the tool turns said (the text encode saw), in order. */
const toolTexts: string[] = []
const encode = (text: string) => {
  toolTexts.push(text)
  return [8, ...Array.from({ length: Math.ceil(text.length / 16) }, () => 9)]
}

/** Per prompt token, the word of each model turn (the last one repeats). */
const SCRIPTS: Record<number, number[]> = {
  1: [1, 7], // look up, then answer
  2: [2, 3, 5, 7], // a tool that throws, one that hangs, one that returns what JSON cannot hold, then answer
  3: [4, 6], // a huge result, then an unknown tool beside a real one until maxTurns (4) stops it
  4: [7], // answers at once
}

/** Samples the scripted turns; everything else is the wrapped LogLinearPolicy. */
class ScriptedPolicy implements Policy {
  readonly inner: LogLinearPolicy
  readonly sampledPrefixes: number[][] = []
  constructor(inner: LogLinearPolicy) {
    this.inner = inner
  }
  get vocabSize() {
    return this.inner.vocabSize
  }
  get device() {
    return this.inner.device
  }
  get disposed() {
    return this.inner.disposed
  }
  logits(batch: PolicyBatch) {
    return this.inner.logits(batch)
  }
  backward(batch: PolicyBatch, grad: Tensor) {
    return this.inner.backward(batch, grad)
  }
  parameters() {
    return this.inner.parameters()
  }
  zeroGrad() {
    return this.inner.zeroGrad()
  }
  async sample(prompts: readonly ArrayLike<number>[], options: SampleOptions = {}): Promise<SampledCompletion[]> {
    const n = options.n ?? 1
    const out: SampledCompletion[] = []
    prompts.forEach((p, i) => {
      const seq = Array.from(p)
      this.sampledPrefixes.push(seq)
      // Turns done so far: the end-of-turn tokens after the prompt's own token.
      const turn = seq.slice(1).filter((x) => x === EOS).length
      const script = SCRIPTS[seq[0]!]!
      const word = script[Math.min(turn, script.length - 1)]!
      for (let s = 0; s < n; s++) out.push({ prompt: i, sample: s, tokens: Int32Array.of(word, EOS), logprobs: Float32Array.of(-1, -0.5), finishReason: 'stop' })
    })
    return out
  }
  clone() {
    return this.inner.clone()
  }
  save(path: string) {
    return this.inner.save(path)
  }
  load(path: string) {
    return this.inner.load(path)
  }
  dispose() {
    this.inner.dispose()
  }
  [Symbol.dispose]() {
    this.dispose()
  }
  async [Symbol.asyncDispose]() {
    this.dispose()
  }
}

const calls: string[] = []
const tools: Record<string, ToolFunction> = {
  lookup: (args, { prompt }) => {
    calls.push(`lookup:${JSON.stringify(args)}:${(prompt.tokens as number[])[0]}`)
    return args.key === 'a' ? { value: 42 } : 'plain text, sent as it is'
  },
  explode: () => {
    throw new Error('boom')
  },
  hang: (_args, { signal }) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, 60_000)
      signal.addEventListener('abort', () => {
        clearTimeout(timer)
        calls.push('hang aborted')
      })
    }),
  huge: () => 'x'.repeat(100_000),
  bigint: () => ({ n: 1n }),
}

const rewardSeen: { text: string; turns: number; finish: string }[] = []
/** 1 for a trajectory that answered, plus 0.5 for every other call, so that every group has reward spread. */
let rewardCalls = 0
const answerReward: TrainerOptions['reward'] = (text, _prompt, _tokens, context) => {
  rewardSeen.push({ text, turns: context.turns.length, finish: context.finishReason })
  return { score: (text.endsWith(WORDS[7]!) ? 1 : 0) + 0.5 * (rewardCalls++ % 2), reason: context.finishReason }
}

function makeTrainer(policy: Policy, options: Partial<TrainerOptions> = {}): Trainer {
  return new Trainer({
    ...presets.toolN1,
    groupSize: 2,
    temperature: 1,
    beta: 0,
    policy,
    decode,
    encode,
    tools,
    maxTurns: 4,
    toolTimeout: 200,
    maxToolResponseChars: 300,
    reward: answerReward,
    stop: [EOS],
    maxNewTokens: 4,
    optimizer: { lr: 0.01 },
    seed: 1,
    ...options,
  })
}

const prompts: TrainerPrompt[] = [1, 2, 3, 4].map((p) => ({ tokens: [p] }))

t.test('the loop: calls run, results become tool turns, the model goes on until it answers or maxTurns', async (t) => {
  const policy = new ScriptedPolicy(new LogLinearPolicy({ vocabSize: V, hashSize: 64, promptWindow: 2, device: 'cpu' }))
  t.teardown(() => policy.dispose())
  calls.length = 0
  toolTexts.length = 0
  const loop = { tools, maxTurns: 4, toolTimeout: 200, maxToolResponseChars: 300, render: promptModule.toolTurnRenderer(), encode }
  const start = performance.now()
  const { trajectories, stats } = await rollout(policy, prompts, { n: 1, seed: 5, maxNewTokens: 4, stop: [EOS] }, decode, loop)
  const elapsed = performance.now() - start
  // The hanging tool would take 60 s; its 200 ms timeout is what the rollout should cost. Half the hang is the
  // bound: it still fails if the hang is awaited, and no load on a shared CI machine stretches this tiny rollout
  // (a few hundred ms alone) to 30 s.
  t.ok(elapsed < 30_000, `a hanging tool costs its timeout, not its hang (${elapsed.toFixed(0)} ms)`)
  t.same(
    trajectories.map((x) => [x.turns.length, x.finishReason]),
    [
      [2, 'stop'],
      [4, 'stop'],
      [4, 'max-turns'],
      [1, 'stop'],
    ],
  )
  const [look, bad, odd, direct] = trajectories
  // Prompt 1: lookup's result, as Python's json.dumps writes it, in a ChatML tool turn.
  t.same(look!.turns[0]!.calls.map((c) => [c.name, c.status, c.result]), [['lookup', 'ok', '{"value": 42}']])
  t.same(calls.filter((c) => c.startsWith('lookup:{"key":"a"}')), ['lookup:{"key":"a"}:1'], 'the tool got its arguments and the prompt')
  t.equal(toolTexts[0], '<|im_end|>\n<|im_start|>user\n<tool_response>\n{"value": 42}\n</tool_response><|im_end|>\n<|im_start|>assistant\n')
  // Prompt 2: a throw and a hang become error results; the model still answers.
  t.same(bad!.turns[0]!.calls.map((c) => [c.status, c.result]), [['error', '{"error": "tool explode failed: boom"}']])
  t.same(bad!.turns[1]!.calls.map((c) => [c.status, c.result]), [['timeout', '{"error": "tool hang timed out after 200 ms"}']])
  t.ok(calls.includes('hang aborted'), "the timed-out tool's signal is aborted")
  t.match(bad!.turns[2]!.calls[0]!, { status: 'error', result: /tool bigint returned a value that is not JSON/ })
  // Prompt 3: a huge result is cut; an unknown tool is an error beside a call that runs.
  const [huge] = odd!.turns[0]!.calls
  t.equal(huge!.status, 'ok')
  t.equal(huge!.truncated, true)
  t.equal(huge!.result, 'x'.repeat(300) + '… [truncated 99700 characters]')
  t.same(odd!.turns[1]!.calls.map((c) => [c.name, c.status, c.result]), [
    ['nosuch', 'unknown-tool', '{"error": "unknown tool \\"nosuch\\""}'],
    ['lookup', 'ok', 'plain text, sent as it is'],
  ])
  t.same(odd!.turns[3]!.calls, [], 'maxTurns: the last turn made calls, none ran')
  t.equal(direct!.turns[0]!.calls.length, 0)
  // Masks and log-probs: 1 at model tokens (with their log-probs), 0 at tool tokens (log-prob 0).
  for (const x of trajectories) {
    let model = 0
    for (let i = 0; i < x.tokens.length; i++) {
      const isTool = x.tokens[i] === 8 || x.tokens[i] === 9
      t.equal(x.mask[i], isTool ? 0 : 1)
      if (isTool) t.equal(x.logprobs[i], 0)
      model += x.mask[i]!
    }
    t.equal(model, x.turns.reduce((n, turn) => n + turn.length, 0))
  }
  // The next turn is sampled after prompt ⧺ trajectory so far (tool turn included).
  const second = policy.sampledPrefixes.find((p) => p[0] === 1 && p.length > 1)!
  t.same(second.slice(0, 3), [1, 1, EOS])
  t.equal(second[3], 8)
  t.same(stats, { ...stats, turns: 11, calls: 9, errors: 2, timeouts: 1, unknownTools: 2, truncatedResults: 1, maxTurnsReached: 1 })
})

t.test('a multi-turn step: tool tokens take no part in the loss (their gradient is exactly zero)', async (t) => {
  const inner = new LogLinearPolicy({ vocabSize: V, hashSize: 64, promptWindow: 2, device: 'cpu' })
  const grads: { mask: Uint8Array; grad: Float32Array; L: number }[] = []
  // The fused loss writes ∂loss/∂logits over the logits tensor that backward receives.
  const policy = new (class extends ScriptedPolicy {
    override async backward(batch: PolicyBatch, grad: Tensor) {
      grads.push({ mask: (await batch.mask!.toArray()) as Uint8Array, grad: await grad.toFloat32Array(), L: batch.length })
      return super.backward(batch, grad)
    }
  })(inner)
  t.teardown(() => policy.dispose())
  rewardSeen.length = 0
  rewardCalls = 0
  await using trainer = makeTrainer(policy)
  const m = await trainer.step(prompts)
  t.equal(m.completions, 8, '4 prompts × group 2')
  t.same(m.tools, { ...m.tools, turns: 22, calls: 18, errors: 4, timeouts: 2, unknownTools: 4, truncatedResults: 2, maxTurnsReached: 2, meanTurns: 22 / 8 })
  t.same(m.reasons, { stop: 6, 'max-turns': 2 })
  t.equal(m.rewardMean, (6 + 4 * 0.5) / 8, 'every trajectory that answered gets 1')
  // The reward read the whole trajectory, tool turns included.
  const two = rewardSeen.find((r) => r.turns === 2)!
  t.match(two.text, /^<tool_call>.*lookup.*<\/tool_call><8>(<9>)+<tool_call>.*final/)
  t.equal(grads.length, 1)
  const { mask, grad, L } = grads[0]!
  let tool = 0
  let model = 0
  let modelNonZero = 0
  for (let pos = 0; pos < mask.length; pos++) {
    const row = grad.subarray(pos * V, (pos + 1) * V)
    if (mask[pos] === 0) {
      tool++
      t.ok(
        row.every((g) => g === 0),
        `row ${pos} (b ${Math.floor(pos / L)}) masked: zero gradient`,
      )
    } else {
      model++
      if (row.some((g) => g !== 0)) modelNonZero++
    }
  }
  t.ok(tool > 8, `tool and padding positions (${tool}) are masked out`)
  t.equal(m.tokens, model, 'the loss counts only model tokens')
  t.ok(modelNonZero > 0, 'model tokens of a group with spread get a gradient')
})

t.test('turnCalls: the reward module’s parser, on the last block', async (t) => {
  t.same(turnCalls('no call here'), null)
  t.equal(turnCalls('<tool_call>not json</tool_call>'), null, 'a block that is not JSON has no calls to run')
  t.same(
    turnCalls('<tool_call>[{"name": "a", "arguments": {}}]</tool_call> then <tool_call>[{"name": "b", "arguments": {"x": 1}}]</tool_call>')!.map((c) => c.name),
    ['b'],
    'the last block, as the reward reads it',
  )
})

t.test('runToolCall never throws', async (t) => {
  const prompt = { tokens: [1] }
  const settings = { timeout: 50, maxResponseChars: 100 }
  const weird: Record<string, ToolFunction> = {
    throwsString: () => {
      throw 'plain string'
    },
    throwsUnprintable: () => {
      throw {
        toString() {
          throw new Error('no')
        },
      }
    },
    rejects: async () => Promise.reject(new TypeError('async failure')),
    cyclic: () => {
      const a: Record<string, unknown> = {}
      a.self = a
      return a
    },
    fn: () => () => 1,
    nothing: () => undefined,
    numbers: (args) => args,
  }
  const run = (name: unknown, args: unknown = {}) => runToolCall(weird, { name, arguments: args } as never, prompt, settings)
  t.match(await run('throwsString'), { status: 'error', result: '{"error": "tool throwsString failed: plain string"}' })
  t.match(await run('throwsUnprintable'), { status: 'error', result: /a value that cannot be shown/ })
  t.match(await run('rejects'), { status: 'error', result: /async failure/ })
  t.match(await run('cyclic'), { status: 'error', result: /not JSON/ })
  t.match(await run('fn'), { status: 'error', result: /not JSON \(a function\)/ })
  t.match(await run('nothing'), { status: 'ok', result: 'null' })
  t.match(await run('toString'), { status: 'unknown-tool' }, 'inherited properties are not tools')
  t.match(await run(7), { status: 'unknown-tool', name: '7' })
  const parsed = turnCalls('<tool_call>[{"name": "numbers", "arguments": {"a": 1.50, "b": [2, {"c": 3e2}]}}]</tool_call>')!
  const r = await runToolCall(weird, parsed[0]!, prompt, settings)
  t.same(r.arguments, { a: 1.5, b: [2, { c: 300 }] }, 'lossless numbers reach the tool as numbers')
  t.equal(r.result, '{"a": 1.5, "b": [2, {"c": 300}]}')
})

t.test('tool options are checked', async (t) => {
  const policy = new ScriptedPolicy(new LogLinearPolicy({ vocabSize: V, hashSize: 64, promptWindow: 2, device: 'cpu' }))
  t.teardown(() => policy.dispose())
  t.throws(() => makeTrainer(policy, { encode: undefined }), { code: 'ERR_GRPO_INVALID_ARG', message: /encode/ })
  t.throws(() => makeTrainer(policy, { tools: {} }), { message: /an object of tool functions for tools/ })
  t.throws(() => makeTrainer(policy, { tools: { a: 1 as never } }), { message: /tool functions/ })
  t.throws(() => makeTrainer(policy, { maxTurns: 0 }), { message: /maxTurns/ })
  t.throws(() => makeTrainer(policy, { toolTimeout: -1 }), { message: /toolTimeout/ })
  await using bad = makeTrainer(policy, { encode: () => [V + 3] })
  await t.rejects(bad.step([{ tokens: [1] }]), { message: /token ids in \[0, 10\) from encode for encode\(text\)\[0\]/ })
  await using notArray = makeTrainer(policy, { encode: () => 'text' as never })
  await t.rejects(notArray.step([{ tokens: [1] }]), { message: /array of token ids from encode/ })
  await using badRender = makeTrainer(policy, { renderToolTurn: () => 5 as never })
  await t.rejects(badRender.step([{ tokens: [1] }]), { message: /string from the tool turn renderer/ })
})

t.test('toolTurnRenderer: ChatML, no doubled end-of-turn, a chat template', async (t) => {
  const chatml = promptModule.toolTurnRenderer()
  const results = [
    { name: 'a', content: '1' },
    { name: 'b', content: '2' },
  ]
  t.equal(chatml(results, 'turn'), '<|im_end|>\n<|im_start|>user\n<tool_response>\n1\n</tool_response>\n<tool_response>\n2\n</tool_response><|im_end|>\n<|im_start|>assistant\n')
  t.equal(chatml(results.slice(0, 1), 'turn<|im_end|>'), '\n<|im_start|>user\n<tool_response>\n1\n</tool_response><|im_end|>\n<|im_start|>assistant\n', 'the turn already ended')
  t.equal(chatml(results.slice(0, 1), 'turn<|im_end|>\n'), '<|im_start|>user\n<tool_response>\n1\n</tool_response><|im_end|>\n<|im_start|>assistant\n')
  t.equal(chatml(results.slice(0, 1), 'a <'), '<|im_end|>\n<|im_start|>user\n<tool_response>\n1\n</tool_response><|im_end|>\n<|im_start|>assistant\n', 'a stray < is not a marker')
  // A template that wraps tool messages its own way.
  const template = {
    chatTemplate: 'x',
    applyChatTemplate: (messages: { role: string; content: string; name?: string }[], o: { addGenerationPrompt?: boolean }) =>
      messages.map((m) => `<${m.role}${m.name ? ':' + m.name : ''}>${m.content}</m>`).join('') + (o.addGenerationPrompt ? '<assistant>' : ''),
  }
  const viaTemplate = promptModule.toolTurnRenderer({ template: template as never })
  t.equal(viaTemplate(results, 'turn'), '</m><tool:a>1</m><tool:b>2</m><assistant>')
  t.equal(viaTemplate(results, 'turn</m>'), '<tool:a>1</m><tool:b>2</m><assistant>', 'the turn already ended')
  const noContent = promptModule.toolTurnRenderer({ template: { chatTemplate: 'x', applyChatTemplate: () => 'nothing' } as never })
  t.throws(() => noContent(results, 'turn'), { message: /renders an assistant message's content/ })
  t.throws(() => chatml([{ name: 'a' }] as never, 'turn'), { message: /\{name, content\} tool results/ })
  t.throws(() => chatml([], 5 as never), { message: /string for turnText/ })
  t.throws(() => promptModule.toolTurnRenderer({ template: 5 as never }), { message: /chat template renderer/ })
})

t.test('everything together: tools, two rewards with GDPO, dynamic sampling, maskTruncated, overlong penalty', async (t) => {
  const policy = new ScriptedPolicy(new LogLinearPolicy({ vocabSize: V, hashSize: 64, promptWindow: 2, device: 'cpu' }))
  t.teardown(() => policy.dispose())
  rewardCalls = 0
  let turnsSeen = 0
  await using trainer = makeTrainer(policy, {
    reward: undefined,
    rewards: [
      { name: 'answer', fn: answerReward! },
      { name: 'turns', fn: (_text, _p, _tokens, context) => ((turnsSeen += context.turns.length), -context.turns.length), weight: 0.5 },
    ],
    rewardAggregation: 'normalize-then-sum',
    scale: undefined,
    filterGroups: { maxRounds: 2 },
    maskTruncated: true,
    overlongPenalty: { buffer: 3, factor: 1 },
  })
  const m = await trainer.step(prompts.slice(0, 2))
  t.same(Object.keys(m.rewards), ['answer', 'turns', 'overlong'])
  // Every model turn has 2 tokens: 1 past maxNewTokens − buffer = 1, so −1/3.
  t.ok(Math.abs(m.rewards.overlong! + 1 / 3) < 1e-12, `overlong ${m.rewards.overlong}`)
  t.equal(m.filter!.full, true, 'the alternating answer reward gives every group spread')
  t.equal(m.filter!.rounds, 1)
  t.equal(m.truncatedFraction, 0)
  t.ok(turnsSeen > 0 && m.tools.meanTurns > 1)
  t.ok(m.tokens > 0 && Number.isFinite(m.loss))
  t.equal(trainer.settings.scale, 'batch')
})

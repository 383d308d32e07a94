/**
 * Rollouts of a step: one sampled completion per row, or, with tools, a multi-turn trajectory (verl's
 * ToolAgentLoop, TRL's tool loop):
 *
 *   sample a model turn → parse its calls (the reward module's parser: the last `<tool_call>` block) →
 *   run them (timeouts and failures become error results) → render the results as tool turns (the prompt's
 *   ChatML or the model's chat template) → encode them → sample the next model turn after them → …
 *
 * until a turn makes no call to a tool the trainer has (it answered; calls to other tools are the answer the
 * reward judges, as in the single-turn recipe where no call ever runs), a turn is cut at maxNewTokens, or
 * maxTurns model turns are done. Tokens are appended as they are (token in, token out: the model's tokens are
 * never re-tokenized); the tool tokens get mask 0, so the loss covers only the model's own tokens.
 */
import { invalidArg } from '../errors.js'
import type { Policy, SampleOptions, SampledCompletion } from '../policy.js'
import type { ToolTurnRenderer } from '../prompt.js'
import { extractCalls, lastBlock, scoredText, type ToolCall } from '../reward/index.js'
import { hasTool, runToolCall } from './tools.js'
import type { ToolFunction, TrainerPrompt, Trajectory, TurnRecord } from './types.js'

/** The multi-turn settings of a Trainer with tools. */
export interface ToolLoop {
  tools: Readonly<Record<string, ToolFunction>>
  /** Model turns per trajectory, at least 1. */
  maxTurns: number
  /** Milliseconds per call. */
  toolTimeout: number
  maxToolResponseChars: number
  render: ToolTurnRenderer
  encode: (text: string) => ArrayLike<number>
}

/** Per-step counts of the tool loop (all zero without tools). */
export interface ToolStats {
  /** Model turns over all trajectories. */
  turns: number
  /** Calls run, and those that ended in an error, a timeout, or named no tool of the trainer's. */
  calls: number
  errors: number
  timeouts: number
  unknownTools: number
  /** Results cut to maxToolResponseChars. */
  truncatedResults: number
  /** Trajectories that still made calls when maxTurns ran out. */
  maxTurnsReached: number
  /** Seconds spent waiting for tools (wall time of each turn's calls, which run concurrently). */
  toolSeconds: number
}

export function emptyToolStats(): ToolStats {
  return { turns: 0, calls: 0, errors: 0, timeouts: 0, unknownTools: 0, truncatedResults: 0, maxTurnsReached: 0, toolSeconds: 0 }
}

/** The parsed calls of a model turn, or null when it has none (the same parser as the reward's). */
export function turnCalls(text: string): ToolCall[] | null {
  const block = lastBlock(scoredText(text))
  if (block === null) return null
  return extractCalls(block.content).calls
}

/** A seed for turn `turn` of a step whose first turn samples with `seed` (an integer below 2^53). */
function turnSeed(seed: number, turn: number): number {
  let h = Math.imul((seed % 0x100000000) ^ Math.imul(turn, 0x9e3779b1), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) ^ Math.floor(seed / 0x100000000)
  const lo = Math.imul(h ^ (h >>> 16), 0x27d4eb2f) >>> 0
  return (h >>> 0) * 0x200000 + (lo >>> 11)
}

class Builder {
  readonly tokens: number[] = []
  readonly logprobs: number[] = []
  readonly mask: number[] = []
  readonly turns: TurnRecord[] = []
  finish: Trajectory['finishReason'] = 'stop'

  constructor(
    readonly prompt: number,
    readonly sample: number,
  ) {}

  addTurn(c: SampledCompletion, text: string): void {
    for (let i = 0; i < c.tokens.length; i++) {
      this.tokens.push(c.tokens[i]!)
      this.logprobs.push(c.logprobs[i]!)
      this.mask.push(1)
    }
    this.turns.push({ text, length: c.tokens.length, finishReason: c.finishReason, calls: [] })
  }

  addTool(tokens: ArrayLike<number>): void {
    for (let i = 0; i < tokens.length; i++) {
      this.tokens.push(tokens[i]!)
      this.logprobs.push(0)
      this.mask.push(0)
    }
  }

  build(): Trajectory {
    return {
      prompt: this.prompt,
      sample: this.sample,
      tokens: Int32Array.from(this.tokens),
      logprobs: Float32Array.from(this.logprobs),
      mask: Uint8Array.from(this.mask),
      turns: this.turns,
      finishReason: this.finish,
    }
  }
}

function decodeText(decode: (tokens: Int32Array) => string, tokens: Int32Array): string {
  const text = decode(tokens)
  if (typeof text !== 'string') invalidArg('a string from decode', 'decode(tokens)', text)
  return text
}

function toolTokens(encode: ToolLoop['encode'], text: string, vocabSize: number): ArrayLike<number> {
  const tokens = encode(text)
  const isArrayLike = Array.isArray(tokens) || (ArrayBuffer.isView(tokens) && !(tokens instanceof DataView))
  if (!isArrayLike) invalidArg('an array of token ids from encode', 'encode(text)', tokens)
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) invalidArg(`token ids in [0, ${vocabSize}) from encode`, `encode(text)[${i}]`, t)
  }
  return tokens
}

/** The next turn of each row: the policy's own continuation sampler, or sampling after prompt ⧺ trajectory. */
async function sampleNext(policy: Policy, prompts: ArrayLike<number>[], prefixes: number[][], options: SampleOptions): Promise<SampledCompletion[]> {
  if (typeof policy.sampleContinuations === 'function') return policy.sampleContinuations(prompts, prefixes, options)
  const joined = prompts.map((p, i) => {
    const out = new Int32Array(p.length + prefixes[i]!.length)
    out.set(Array.from(p))
    out.set(prefixes[i]!, p.length)
    return out
  })
  return policy.sample(joined, options)
}

/**
 * Samples `options.n` rollouts per prompt (prompt-major, like Policy.sample), multi-turn when `loop` is given.
 * `decode` turns each model turn into the text whose calls are parsed.
 */
export async function rollout(
  policy: Policy,
  prompts: readonly TrainerPrompt[],
  options: SampleOptions & { n: number; seed: number },
  decode: (tokens: Int32Array) => string,
  loop: ToolLoop | null,
): Promise<{ trajectories: Trajectory[]; stats: ToolStats }> {
  const stats = emptyToolStats()
  const first = await policy.sample(
    prompts.map((p) => p.tokens),
    options,
  )
  const rows = first.map((c) => {
    const b = new Builder(c.prompt, c.sample)
    b.addTurn(c, decodeText(decode, c.tokens))
    b.finish = c.finishReason
    return b
  })
  stats.turns = rows.length
  if (loop === null) return { trajectories: rows.map((b) => b.build()), stats }

  let active = rows
  for (let turn = 1; active.length > 0; turn++) {
    const pending: { row: Builder; calls: ToolCall[] }[] = []
    for (const row of active) {
      const last = row.turns[row.turns.length - 1]!
      if (last.finishReason === 'length') {
        row.finish = 'length'
        continue
      }
      const calls = turnCalls(last.text)
      if (calls === null || !calls.some((c) => hasTool(loop.tools, c.name))) {
        row.finish = 'stop'
        continue
      }
      if (turn >= loop.maxTurns) {
        row.finish = 'max-turns'
        stats.maxTurnsReached++
        continue
      }
      pending.push({ row, calls })
    }
    if (pending.length === 0) break
    const t0 = performance.now()
    const settings = { timeout: loop.toolTimeout, maxResponseChars: loop.maxToolResponseChars }
    const records = await Promise.all(pending.map(({ row, calls }) => Promise.all(calls.map((call) => runToolCall(loop.tools, call, prompts[row.prompt]!, settings)))))
    stats.toolSeconds += (performance.now() - t0) / 1000
    pending.forEach(({ row }, i) => {
      const calls = records[i]!
      const last = row.turns[row.turns.length - 1]!
      last.calls = calls
      for (const c of calls) {
        stats.calls++
        if (c.status === 'error') stats.errors++
        else if (c.status === 'timeout') stats.timeouts++
        else if (c.status === 'unknown-tool') stats.unknownTools++
        if (c.truncated) stats.truncatedResults++
      }
      const text = loop.render(
        calls.map((c) => ({ name: c.name, content: c.result })),
        last.text,
      )
      if (typeof text !== 'string') invalidArg('a string from the tool turn renderer', 'renderToolTurn(results)', text)
      row.addTool(toolTokens(loop.encode, text, policy.vocabSize))
    })
    const next = await sampleNext(
      policy,
      pending.map(({ row }) => prompts[row.prompt]!.tokens),
      pending.map(({ row }) => row.tokens),
      { ...options, n: 1, seed: turnSeed(options.seed, turn) },
    )
    next.forEach((c, i) => {
      const row = pending[i]!.row
      row.addTurn(c, decodeText(decode, c.tokens))
      row.finish = c.finishReason
    })
    stats.turns += next.length
    active = pending.map(({ row }) => row)
  }
  return { trajectories: rows.map((b) => b.build()), stats }
}

/**
 * The rewards of a step: one reward function or several named ones, run concurrently (the built-in tool-call
 * reward in one reward.scoreBatch call on worker threads, the others called for every completion and awaited
 * together), then aggregated into the one reward per completion that the advantages read:
 *
 * - `sum`: Σ_k w_k · r_k;
 * - `normalize-then-sum` (GDPO, TRL's `multi_objective_aggregation="normalize_then_sum"`): each reward is first
 *   normalized within its group, (r_k − mean_g(r_k)) / (std_g(r_k) + eps) with the unbiased std, 0 for a group
 *   with no spread; then Σ_k w_k · that. The Trainer then scales the advantages by the batch's std (GDPO's
 *   batch normalization) unless told otherwise.
 *
 * DAPO's soft overlong punishment joins as one more reward, `overlong` (weight 1), so each aggregation treats it
 * as TRL treats its `get_soft_overlong_punishment` reward.
 */
import { GrpoError, invalidArg } from '../errors.js'
import { scoreBatch, scoreToolCall, type GroundTruth, type ScoreOptions } from '../reward/index.js'
import type { NamedReward, RewardContext, RewardFunction, RewardResult, TrainerPrompt, Trajectory } from './types.js'

/** Marks the reward functions made by toolCallReward, with their options: the Trainer scores those in batches. */
const TOOL_CALL_REWARD = Symbol('node-grpo.toolCallReward')

export function requireGroundTruth(prompt: TrainerPrompt): GroundTruth {
  if (prompt.groundTruth === undefined) invalidArg('a groundTruth on every prompt (the tool-call reward needs it)', 'prompt.groundTruth', undefined)
  return prompt.groundTruth
}

/**
 * The Tool-N1 reward (binary by default; any variant of reward.scoreToolCall, `toolrl` included): scoreToolCall
 * against `prompt.groundTruth`. A Trainer given this reward scores all the completions of a step at once with
 * reward.scoreBatch (on worker threads for large batches) instead of calling it once per completion on the main
 * thread; the scores are the same.
 */
export function toolCallReward(options: ScoreOptions = {}): RewardFunction {
  const reward: RewardFunction = (completion, prompt) => {
    const r = scoreToolCall(completion, requireGroundTruth(prompt), options)
    return { score: r.score, reason: r.reason }
  }
  return Object.assign(reward, { [TOOL_CALL_REWARD]: { ...options } })
}

export function toolCallOptions(reward: RewardFunction): ScoreOptions | undefined {
  return (reward as { [TOOL_CALL_REWARD]?: ScoreOptions })[TOOL_CALL_REWARD]
}

export const REWARD_AGGREGATIONS = ['sum', 'normalize-then-sum'] as const
export type RewardAggregation = (typeof REWARD_AGGREGATIONS)[number]

/** DAPO's soft overlong punishment: `overlongPenalty: { buffer, factor }`. */
export interface OverlongPenalty {
  /** L_cache: the last `buffer` tokens before maxNewTokens, over which the penalty grows from 0 to −factor. */
  buffer: number
  /** The penalty at maxNewTokens tokens (default 1). */
  factor?: number
}

/** One reward as the scorer runs it: resolved name, weight and function. */
export interface RewardSpec {
  name: string
  weight: number
  fn: RewardFunction
}

/** The checked `rewards` option (names unique and non-empty, weights finite). */
export function rewardSpecs(rewards: readonly NamedReward[]): RewardSpec[] {
  if (!Array.isArray(rewards) || rewards.length === 0) invalidArg('a non-empty array of {name, fn, weight?}', 'rewards', rewards)
  const seen = new Set<string>()
  return rewards.map((r, i) => {
    if (typeof r !== 'object' || r === null) invalidArg('a {name, fn, weight?} object', `rewards[${i}]`, r)
    const keys = Object.keys(r).filter((k) => k !== 'name' && k !== 'fn' && k !== 'weight')
    if (keys.length > 0) invalidArg('only the keys name, fn and weight', `rewards[${i}]`, keys[0])
    if (typeof r.name !== 'string' || r.name === '') invalidArg('a non-empty string', `rewards[${i}].name`, r.name)
    if (seen.has(r.name) || r.name === 'overlong') invalidArg(`a name not used before (and not "overlong", the overlong penalty's)`, `rewards[${i}].name`, r.name)
    seen.add(r.name)
    if (typeof r.fn !== 'function') invalidArg('a reward function', `rewards[${i}].fn`, r.fn)
    const weight = r.weight ?? 1
    if (typeof weight !== 'number' || !Number.isFinite(weight)) invalidArg('a finite number', `rewards[${i}].weight`, r.weight)
    return { name: r.name, weight, fn: r.fn }
  })
}

/** The penalty of a completion whose longest model turn has `length` tokens (0 or less; DAPO's formula). */
export function overlongPenalty(length: number, maxNewTokens: number, penalty: Required<OverlongPenalty>): number {
  const expected = maxNewTokens - penalty.buffer
  const exceed = length - expected
  if (exceed <= 0) return 0
  return Math.min((-exceed / penalty.buffer) * penalty.factor, 0)
}

export interface ScoredRewards {
  /** scores[k][i]: reward k of completion i (rewards in the given order, then `overlong` when on). */
  scores: Float64Array[]
  names: string[]
  weights: number[]
  /** Count of each reason over the rewards (prefixed `name/` when there are several). */
  reasons: Record<string, number>
}

/** Calls one reward function on every completion; the built-in tool-call reward in one batch. */
async function runReward(fn: RewardFunction, texts: readonly string[], trajectories: readonly Trajectory[], prompts: readonly TrainerPrompt[]): Promise<(number | RewardResult)[]> {
  const builtIn = toolCallOptions(fn)
  if (builtIn) {
    const items = trajectories.map((c, i) => ({ completion: texts[i]!, groundTruth: requireGroundTruth(prompts[c.prompt]!) }))
    return (await scoreBatch(items, builtIn)).map((r) => ({ score: r.score, reason: r.reason }))
  }
  const settled = await Promise.allSettled(
    trajectories.map(async (c, i) => {
      const context: RewardContext = { turns: c.turns, finishReason: c.finishReason }
      return fn(texts[i]!, prompts[c.prompt]!, c.tokens, context)
    }),
  )
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
  return settled.map((r) => (r as PromiseFulfilledResult<number | RewardResult>).value)
}

/**
 * Scores every completion with every reward, all rewards at once. The first failure (in reward order, then
 * completion order) is reported; a non-finite score is an ERR_GRPO_NONFINITE error.
 */
export async function scoreRewards(
  specs: readonly RewardSpec[],
  texts: readonly string[],
  trajectories: readonly Trajectory[],
  prompts: readonly TrainerPrompt[],
  overlong: { maxNewTokens: number; penalty: Required<OverlongPenalty> } | null,
): Promise<ScoredRewards> {
  const named = specs.length > 1
  const settled = await Promise.allSettled(specs.map((s) => runReward(s.fn, texts, trajectories, prompts)))
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
  const reasons: Record<string, number> = {}
  const scores = settled.map((r, k) => {
    const results = (r as PromiseFulfilledResult<(number | RewardResult)[]>).value
    const out = new Float64Array(results.length)
    results.forEach((res, i) => {
      const score = typeof res === 'number' ? res : res?.score
      if (typeof score !== 'number' || !Number.isFinite(score)) {
        const who = named ? `the reward function ${specs[k]!.name}` : 'the reward function'
        throw new GrpoError(`Expected a finite number (or {score}) from ${who} but received ${String(score)}`, 'ERR_GRPO_NONFINITE')
      }
      out[i] = score
      if (typeof res === 'object' && typeof res.reason === 'string') {
        const key = named ? `${specs[k]!.name}/${res.reason}` : res.reason
        reasons[key] = (reasons[key] ?? 0) + 1
      }
    })
    return out
  })
  const names = specs.map((s) => s.name)
  const weights = specs.map((s) => s.weight)
  if (overlong) {
    scores.push(Float64Array.from(trajectories, (c) => overlongPenalty(Math.max(...c.turns.map((t) => t.length)), overlong.maxNewTokens, overlong.penalty)))
    names.push('overlong')
    weights.push(1)
  }
  return { scores, names, weights, reasons }
}

/** Σ_k w_k · r_k per completion: the reward as the metrics report it, whatever the aggregation. */
export function weightedSum(scored: Pick<ScoredRewards, 'scores' | 'weights'>): Float64Array {
  const n = scored.scores[0]?.length ?? 0
  const out = new Float64Array(n)
  scored.scores.forEach((s, k) => {
    const w = scored.weights[k]!
    for (let i = 0; i < n; i++) out[i]! += w * s[i]!
  })
  return out
}

/**
 * GDPO: each reward normalized within its group — (r − mean) / (std + eps), unbiased std, 0 in a group of one or
 * with no spread — then weighted and summed. `groups[i]` is completion i's group.
 */
export function normalizeThenSum(scored: Pick<ScoredRewards, 'scores' | 'weights'>, groups: ArrayLike<number>, eps: number): Float64Array {
  const n = groups.length
  const members = new Map<number, number[]>()
  for (let i = 0; i < n; i++) {
    const g = groups[i]!
    let list = members.get(g)
    if (!list) members.set(g, (list = []))
    list.push(i)
  }
  const out = new Float64Array(n)
  scored.scores.forEach((s, k) => {
    const w = scored.weights[k]!
    for (const list of members.values()) {
      const m = list.length
      const first = s[list[0]!]!
      if (m < 2 || list.every((i) => s[i] === first)) continue
      let mean = 0
      for (const i of list) mean += s[i]!
      mean /= m
      let ss = 0
      for (const i of list) ss += (s[i]! - mean) ** 2
      const std = Math.sqrt(ss / (m - 1))
      for (const i of list) out[i]! += (w * (s[i]! - mean)) / (std + eps)
    }
  })
  return out
}

/** The reward per completion that the advantages read. */
export function aggregateRewards(scored: ScoredRewards, aggregation: RewardAggregation, groups: ArrayLike<number>, eps: number): Float64Array {
  return aggregation === 'sum' ? weightedSum(scored) : normalizeThenSum(scored, groups, eps)
}

/** Mean of each reward (by name). */
export function rewardMeans(scored: Pick<ScoredRewards, 'scores' | 'names'>): Record<string, number> {
  const out: Record<string, number> = {}
  scored.scores.forEach((s, k) => {
    out[scored.names[k]!] = s.length > 0 ? s.reduce((a, b) => a + b, 0) / s.length : 0
  })
  return out
}

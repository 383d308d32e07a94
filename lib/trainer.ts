/**
 * Trainer: the GRPO loop of the Tool-N1 recipe on any Policy.
 *
 * One `step(prompts)`:
 *   sample `groupSize` completions per prompt (Policy.sample, at `temperature`, with their log-probs)
 *   → reward each (any function; the Tool-N1 binary tool-call reward by default)
 *   → group-relative advantages (ops.groupAdvantages, inside RolloutBatch.fromRollouts)
 *   → reference log-probs (a frozen copy of the policy, when β > 0)
 *   → for `epochs` passes: for each of `miniBatches` micro-batches, the fused ops.grpoLoss (gradient written
 *     over the logits) and Policy.backward, accumulating with the whole batch's normalizer, so the summed
 *     gradient is the full batch's; then global-norm clipping and one fused AdamW update on the device.
 *     A policy that exposes its hidden states and LM head (hasLinearHead: a transformer) goes through the fused
 *     linear loss instead (ops.linearGrpoLoss, ops.linearTokenLogprobs for the reference): no [B, L, V] logits
 *     tensor is allocated in a step.
 * The sampled log-probs are the old log-probs (same temperature, so the first pass has ratio 1); rollouts
 * without log-probs use the first pass's own log-probs as old for later passes.
 *
 * Also: `stepFromRollouts` (GRPO on rollouts sampled elsewhere), `supervisedStep` (nll warm start on reference
 * completions), `evaluate` (held-out reward), `train` (steps over a dataset, periodic evaluation, an AbortSignal
 * that stops cleanly after the current step), and checkpoints (policy, reference, optimizer, position).
 *
 * The parts of a step live in lib/trainer/: multi-turn rollouts with tools (multi-turn.ts, tools.ts), several
 * rewards, their aggregation and the overlong penalty (rewards.ts), a remote reward (remote-reward.ts), and
 * dynamic sampling (group-filter.ts).
 *
 * Data-parallel (option `distributed`, on by default under mpirun/srun with several processes): every rank is
 * given the same global prompts and works on its share; the global statistics and the gradients come from
 * lib/distributed-trainer.ts, so N ranks compute what one process would (README "Scaling out"). Two features
 * cannot be split that way and are refused with it: filterGroups (which groups to keep is one decision over the
 * whole batch) and tools (a later turn's random streams are numbered among every rank's unfinished trajectories).
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { info as backendInfo } from './backend.js'
import { DataParallel, shareOf, type DataParallelOptions } from './distributed-trainer.js'
import { GrpoError, invalidArg } from './errors.js'
import { grpoLoss, linearGrpoLoss, linearTokenLogprobs, tokenLogprobs, type GrpoLossOptions, type LossStats } from './ops.js'
import { AdamW } from './optimizer.js'
import {
  ADAMW_SCHEMA,
  ADVANTAGE_SCALES,
  BASELINES,
  LOSS_SCHEMA,
  booleanOption,
  resolveLossOptions,
  integerOption,
  numberOption,
  oneOfOption,
  parseOptions,
  temperature,
  topP,
  valueOption,
  type AdamWOptions,
  type LossType,
  type OptionSpec,
  type RolloutCorrection,
  type Schema,
} from './options.js'
import { SAMPLE_OPTIONS_SCHEMA, hasLinearHead, type BackwardOptions, type LinearHeadPolicy, type Policy, type PolicyBatch } from './policy.js'
import { toolTurnRenderer, type ToolTurnRenderer } from './prompt.js'
import { RolloutBatch, type Rollout, type SupervisedExample } from './rollout-batch.js'
import { readSafetensors, writeSafetensors } from './safetensors.js'
import type { Tensor } from './tensor.js'
import { fillWithSpread, hasSpread, type FilterGroupsOptions, type FilterReport } from './trainer/group-filter.js'
import { emptyToolStats, rollout, type ToolLoop, type ToolStats } from './trainer/multi-turn.js'
import {
  REWARD_AGGREGATIONS,
  aggregateRewards,
  rewardMeans,
  rewardSpecs,
  scoreRewards,
  toolCallReward,
  weightedSum,
  type OverlongPenalty,
  type RewardAggregation,
  type RewardSpec,
} from './trainer/rewards.js'
import type { NamedReward, RewardFunction, ToolFunction, TrainerPrompt, Trajectory } from './trainer/types.js'

export { toolCallReward } from './trainer/rewards.js'
export { remoteReward, type RemoteRewardOptions } from './trainer/remote-reward.js'
export type { FilterGroupsOptions, FilterReport } from './trainer/group-filter.js'
export type { ToolStats } from './trainer/multi-turn.js'
export type { OverlongPenalty, RewardAggregation } from './trainer/rewards.js'
export type {
  NamedReward,
  RewardContext,
  RewardFunction,
  RewardResult,
  ToolCallRecord,
  ToolContext,
  ToolFunction,
  TrainerPrompt,
  Trajectory,
  TrajectoryFinish,
  TurnRecord,
} from './trainer/types.js'

/**
 * The algorithm's settings (everything but the model, the reward and the optimizer). The loss options are
 * those of ops.grpoLoss; beta > 0 also makes the trainer keep a reference policy.
 */
export interface GrpoSettings
  extends Pick<
    GrpoLossOptions,
    | 'clipLow'
    | 'clipHigh'
    | 'dualClip'
    | 'logRatioClamp'
    | 'beta'
    | 'kl'
    | 'entropyCoef'
    | 'lossAgg'
    | 'normLength'
    | 'ratioLevel'
    | 'ratioCap'
    | 'klBiasCorrection'
    | 'topEntropyQuantile'
    | 'rolloutCorrection'
    | 'lossType'
  > {
  /**
   * 'grpo' (default) or 'cispo' (docs/math.md §3.1). With rolloutCorrection, the rollouts' log-probs are the
   * sampler's: each step recomputes oldLogp with the policy first and weighs tokens by the gap (§3.3).
   */
  loss?: 'grpo' | 'cispo'
  /** Completions per prompt. Default 5. */
  groupSize?: number
  /** Sampling temperature; the loss divides the logits by the same value. Default 1. */
  temperature?: number
  /** Nucleus sampling mass, default 1. */
  topP?: number
  /** Default 64. */
  maxNewTokens?: number
  /** Token ids that end a completion. */
  stop?: readonly number[]
  /** Passes over each batch, each ending in one optimizer update. Default 1. */
  epochs?: number
  /** Micro-batches per pass (gradient accumulation; memory, not math). Default 1. */
  miniBatches?: number
  baseline?: 'mean' | 'leave-one-out'
  /** Default 'group'; 'batch' when rewardAggregation is 'normalize-then-sum' (GDPO's batch normalization). */
  scale?: 'group' | 'batch' | 'none'
  advantageEps?: number
  /** Model turns per trajectory when the trainer has tools (default 4). */
  maxTurns?: number
  /** Milliseconds a tool call may take before it counts as failed (default 30000). */
  toolTimeout?: number
  /** Longest tool result the model reads, in characters; longer ones are cut (default 4096). */
  maxToolResponseChars?: number
  /** How several rewards become one: 'sum' (default, weighted) or 'normalize-then-sum' (GDPO). */
  rewardAggregation?: RewardAggregation
  /** Dynamic sampling: drop groups with no reward spread and sample more prompts, for up to maxRounds rounds. */
  filterGroups?: FilterGroupsOptions | null
  /** Completions cut at maxNewTokens take no part in the loss (TRL's mask_truncated_completions). Default false. */
  maskTruncated?: boolean
  /** DAPO's soft overlong punishment, added as the reward `overlong`. Default off. */
  overlongPenalty?: OverlongPenalty | null
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

export const FILTER_GROUPS_SCHEMA: Schema<FilterGroupsOptions> = { maxRounds: integerOption(1) }
export const OVERLONG_PENALTY_SCHEMA: Schema<OverlongPenalty> = {
  buffer: integerOption(1),
  factor: numberOption('a finite number >= 0', (v) => v >= 0, 1) as OptionSpec<number>,
}

/** The rule and default of each GrpoSettings entry (the loss entries are ops.grpoLoss's own). */
export const GRPO_SETTINGS_SCHEMA: Schema<GrpoSettings> = {
  groupSize: integerOption(2, 5),
  temperature: SAMPLE_OPTIONS_SCHEMA.temperature,
  topP: SAMPLE_OPTIONS_SCHEMA.topP,
  maxNewTokens: SAMPLE_OPTIONS_SCHEMA.maxNewTokens,
  stop: SAMPLE_OPTIONS_SCHEMA.stop,
  clipLow: LOSS_SCHEMA.clipLow,
  clipHigh: LOSS_SCHEMA.clipHigh,
  dualClip: LOSS_SCHEMA.dualClip,
  logRatioClamp: LOSS_SCHEMA.logRatioClamp,
  beta: LOSS_SCHEMA.beta,
  kl: LOSS_SCHEMA.kl,
  entropyCoef: LOSS_SCHEMA.entropyCoef,
  lossAgg: LOSS_SCHEMA.lossAgg,
  normLength: LOSS_SCHEMA.normLength,
  loss: oneOfOption(['grpo', 'cispo'] as const, 'grpo'),
  ratioLevel: LOSS_SCHEMA.ratioLevel,
  ratioCap: LOSS_SCHEMA.ratioCap,
  klBiasCorrection: LOSS_SCHEMA.klBiasCorrection,
  topEntropyQuantile: LOSS_SCHEMA.topEntropyQuantile,
  rolloutCorrection: LOSS_SCHEMA.rolloutCorrection,
  lossType: LOSS_SCHEMA.lossType,
  epochs: integerOption(1, 1),
  miniBatches: integerOption(1, 1),
  baseline: oneOfOption(BASELINES, 'mean'),
  scale: oneOfOption(ADVANTAGE_SCALES, 'group'),
  advantageEps: numberOption('a finite number >= 0', (v) => v >= 0, 1e-6) as OptionSpec<number>,
  maxTurns: integerOption(1, 4),
  toolTimeout: numberOption('a finite number > 0 (milliseconds)', (v) => v > 0, 30_000) as OptionSpec<number>,
  maxToolResponseChars: integerOption(1, 4096),
  rewardAggregation: oneOfOption(REWARD_AGGREGATIONS, 'sum'),
  filterGroups: { ...valueOption<FilterGroupsOptions>('a {maxRounds} object or null', isObject), nullable: true },
  maskTruncated: booleanOption(false),
  overlongPenalty: { ...valueOption<OverlongPenalty>('a {buffer, factor} object or null', isObject), nullable: true },
}

export interface TrainerOptions extends GrpoSettings {
  policy: Policy
  /** Frozen reference for the KL term. Default: a clone of the policy at the first GRPO step (when β > 0). */
  reference?: Policy | null
  /** Turns completion tokens into the text the reward reads. */
  decode: (tokens: Int32Array) => string
  /** Default: toolCallReward() (binary). */
  reward?: RewardFunction
  /** Several rewards instead of `reward`, run concurrently and combined by rewardAggregation. */
  rewards?: readonly NamedReward[]
  /** Tools the model may call: a step becomes multi-turn (needs `encode`). */
  tools?: Readonly<Record<string, ToolFunction>>
  /** Turns text into token ids: the rendered tool turns of a multi-turn step. */
  encode?: (text: string) => ArrayLike<number>
  /** Renders tool results as the turn the model reads next. Default prompt.toolTurnRenderer() (ChatML). */
  renderToolTurn?: ToolTurnRenderer
  /** The optimizer's settings: lr (default 1e-3), beta1, beta2, eps, weightDecay, maxGradNorm (default 1). */
  optimizer?: AdamWOptions
  /** Seed of sampling and of the dataset order. Default 0. */
  seed?: number
  /**
   * Data-parallel training across the processes of an MPI launch: true, false, or { zero: 0 | 1, bucketMB,
   * timeout }. Default: on exactly when a launcher (mpirun, mpiexec, srun) started several processes. Every rank
   * then passes the same global prompts to step/train/evaluate and the same examples to supervisedStep.
   */
  distributed?: boolean | DataParallelOptions
}

const hasMethods = (v: unknown, ...names: string[]) =>
  typeof v === 'object' && v !== null && names.every((n) => typeof (v as Record<string, unknown>)[n] === 'function')

export const TRAINER_SCHEMA: Schema<TrainerOptions> = {
  ...GRPO_SETTINGS_SCHEMA,
  policy: valueOption<Policy>('a Policy', (v) => hasMethods(v, 'sample', 'logits')),
  reference: { ...valueOption<Policy>('a Policy or null', (v) => hasMethods(v, 'logits')), nullable: true },
  decode: valueOption<(tokens: Int32Array) => string>('a function from token ids to text', (v) => typeof v === 'function'),
  reward: valueOption<RewardFunction>('a reward function', (v) => typeof v === 'function'),
  rewards: valueOption<readonly NamedReward[]>('an array of {name, fn, weight?}', Array.isArray),
  tools: valueOption<Readonly<Record<string, ToolFunction>>>(
    'an object of tool functions',
    (v) => isObject(v) && Object.keys(v).length > 0 && Object.values(v).every((f) => typeof f === 'function'),
  ),
  encode: valueOption<(text: string) => ArrayLike<number>>('a function from text to token ids', (v) => typeof v === 'function'),
  renderToolTurn: valueOption<ToolTurnRenderer>('a function from tool results to text', (v) => typeof v === 'function'),
  optimizer: valueOption<AdamWOptions>('an options object', (v) => typeof v === 'object' && v !== null && !Array.isArray(v)),
  seed: SAMPLE_OPTIONS_SCHEMA.seed,
  // DataParallel.fromOption checks the object's own keys.
  distributed: valueOption<boolean | DataParallelOptions>(
    'a boolean or data-parallel options ({ zero, bucketMB, timeout })',
    (v) => typeof v === 'boolean' || (typeof v === 'object' && v !== null && !Array.isArray(v)),
  ),
}

/** The overlong penalty's options; its buffer fits inside maxNewTokens. */
function parseOverlong(value: OverlongPenalty, maxNewTokens: number): Required<OverlongPenalty> {
  const o = parseOptions(OVERLONG_PENALTY_SCHEMA, value, 'overlongPenalty') as OverlongPenalty
  if (o.buffer === undefined || o.buffer > maxNewTokens) invalidArg(`an integer in [1, ${maxNewTokens}] (maxNewTokens)`, 'overlongPenalty.buffer', o.buffer)
  return { buffer: o.buffer, factor: o.factor! }
}

/** TrainerOptions keys that moved into `optimizer` (a clearer message than the nearest key). */
const MOVED_TO_OPTIMIZER: Record<string, string> = Object.fromEntries(Object.keys(ADAMW_SCHEMA).map((k) => [k, `optimizer.${k}`]))

/** The settings of the Tool-N1 paper (group 5, clip 0.2, k3 KL with β = 1e-3, token-mean, T = 0.7, no entropy). */
export const presets = Object.freeze({
  toolN1: Object.freeze({
    groupSize: 5,
    clipLow: 0.2,
    clipHigh: 0.2,
    beta: 1e-3,
    kl: 'k3',
    lossAgg: 'token-mean',
    temperature: 0.7,
    topP: 1,
    entropyCoef: 0,
    epochs: 1,
    baseline: 'mean',
    scale: 'group',
  } satisfies GrpoSettings),
})

export interface StepTimes {
  /**
   * Seconds spent sampling, waiting for tools, rewarding, in the loss passes (reference, forward, loss, backward),
   * in updates.
   */
  sample: number
  tools: number
  reward: number
  loss: number
  update: number
  total: number
}

export interface StepMetrics {
  /** Steps done after this one (1 for the first). */
  step: number
  /**
   * Mean and std of the reward (Σ weight · reward over the rewards, before any normalization) over every
   * completion sampled in the step (every round, with filterGroups).
   */
  rewardMean: number
  rewardStd: number
  /** Mean of each reward by name ('reward' for a single one; 'overlong' for the overlong penalty). */
  rewards: Record<string, number>
  /** Share of sampled groups whose rewards are all equal (no signal). */
  zeroStdFraction: number
  /** Count of each reward reason (`name/reason` with several rewards). */
  reasons: Record<string, number>
  /** Share of sampled completions cut at maxNewTokens (their last turn, in a multi-turn step). */
  truncatedFraction: number
  /** The tool loop: model turns per trajectory (mean), calls, errors, timeouts, … (zeros without tools). */
  tools: ToolStats & { meanTurns: number }
  /** Dynamic sampling's report (null without filterGroups). */
  filter: FilterReport | null
  /** What went wrong without stopping the step (filterGroups that could not fill the batch, no token to train). */
  warnings: string[]
  /** Loss of the first pass (at the sampling policy). */
  loss: number
  pgLoss: number
  /** Masked means over every pass, weighted by tokens: KL to the reference, clip fraction, entropy. */
  kl: number
  approxKl: number
  clipFrac: number
  entropy: number
  ratioMax: number
  /**
   * Rollout correction (0 without it; docs/math.md §3.3), token-weighted over the step's passes: the mean
   * weight, the share of tokens truncated or masked, the mean |old − sampler| gap and its k3 KL.
   */
  rolloutWeightMean: number
  rolloutCorrectedFrac: number
  rolloutGapMean: number
  rolloutKl: number
  completions: number
  completionLength: number
  tokens: number
  /** Global gradient norm before clipping (mean over the step's updates) and the last clip coefficient. */
  gradNorm: number
  clipCoef: number
  tokensPerSecond: number
  time: StepTimes
}

export interface SupervisedMetrics {
  step: number
  /** Mean negative log-likelihood per token. */
  loss: number
  tokens: number
  gradNorm: number
  time: number
}

export interface EvaluateOptions {
  /** Argmax decoding (default true); otherwise sampling at the trainer's temperature. */
  greedy?: boolean
  /** Completions per prompt (default 1). */
  n?: number
  /** Prompts per sampling call (default 256). */
  batchSize?: number
  seed?: number
  /**
   * Scores the held-out completions instead of the trainer's reward, e.g. the BFCL checker
   * (`evaluation.bfclReward()`), so evaluation can judge as the benchmark does while training keeps its reward.
   */
  reward?: RewardFunction
}

export const EVALUATE_SCHEMA: Schema<EvaluateOptions> = {
  greedy: booleanOption(true),
  n: SAMPLE_OPTIONS_SCHEMA.n,
  batchSize: integerOption(1, 256),
  seed: SAMPLE_OPTIONS_SCHEMA.seed,
  reward: valueOption<RewardFunction>('a reward function', (v) => typeof v === 'function'),
}

export interface EvaluateResult {
  /** Mean reward over every completion (Σ weight · reward with several rewards; no overlong penalty). */
  reward: number
  /** Mean of each reward by name. */
  rewards: Record<string, number>
  /** The tool loop's counts, and model turns per trajectory (mean). */
  tools: ToolStats & { meanTurns: number }
  /** Share of completions with reward 1 (what a binary reward's mean also is). */
  solved: number
  count: number
  reasons: Record<string, number>
  completionLength: number
  time: number
}

export interface TrainOptions {
  steps: number
  /** Prompts per step (default 8). */
  batchSize?: number
  /** Evaluate every this many steps on evalPrompts (0: never). */
  evalEvery?: number
  evalPrompts?: readonly TrainerPrompt[]
  evalOptions?: EvaluateOptions
  /** Aborting stops training after the current step. */
  signal?: AbortSignal
  onStep?: (metrics: StepMetrics) => void | Promise<void>
  onEval?: (result: EvaluateResult, step: number) => void | Promise<void>
}

export const TRAIN_SCHEMA: Schema<TrainOptions> = {
  steps: integerOption(0),
  batchSize: integerOption(1, 8),
  evalEvery: integerOption(0, 0),
  evalPrompts: valueOption<readonly TrainerPrompt[]>('an array of prompts', (v) => Array.isArray(v)),
  evalOptions: valueOption<EvaluateOptions>('an options object', (v) => typeof v === 'object' && v !== null),
  signal: valueOption<AbortSignal>('an AbortSignal', (v) => v instanceof AbortSignal),
  onStep: valueOption<NonNullable<TrainOptions['onStep']>>('a function', (v) => typeof v === 'function'),
  onEval: valueOption<NonNullable<TrainOptions['onEval']>>('a function', (v) => typeof v === 'function'),
}

/** Options of one supervised step: this step's learning rate (default: the optimizer's) and temperature. */
export interface SupervisedStepOptions {
  lr?: number
  /** Default 1. */
  temperature?: number
}

export const SUPERVISED_STEP_SCHEMA: Schema<SupervisedStepOptions> = {
  lr: { ...ADAMW_SCHEMA.lr, default: undefined },
  temperature,
}

export interface TrainResult {
  steps: StepMetrics[]
  evaluations: { step: number; result: EvaluateResult }[]
  aborted: boolean
}

// ---------------------------------------------------------------------------------------------------------

/** The loss inputs of one micro-batch besides the logits (or hidden states). */
interface PartInputs {
  targets: Tensor
  mask?: Tensor
  oldLogp?: Tensor
  refLogp?: Tensor
  /** The sampler's log-probs (rollout correction; oldLogp is then the policy's own, recomputed). */
  rolloutLogp?: Tensor
  advantages: Tensor
}

/**
 * Whether the Trainer takes the fused linear loss for this policy: one with a linear head, on a backend that has
 * the op's kernels (the CPU backend so far; on cuda and simt the policy's logits and the fused grpoLoss serve instead).
 */
function usesLinearLoss(policy: Policy): policy is LinearHeadPolicy {
  // Host tensors run on the SIMT executor when it is the active host backend (GRPO_BACKEND=simt).
  return hasLinearHead(policy) && policy.device === 'cpu' && backendInfo().active !== 'simt'
}

/**
 * The loss of one micro-batch and the policy's gradients for it. A LinearHeadPolicy: the fused linear loss from its
 * hidden states (the head's gradients are added by the loss, the rest by backwardHidden), never the logits.
 * Any other Policy: its logits, the fused grpoLoss written over them, and its backward.
 */
async function lossAndBackward(
  policy: Policy,
  part: PolicyBatch,
  inputs: PartInputs,
  options: GrpoLossOptions,
  backwardOptions?: BackwardOptions,
): Promise<{ stats: LossStats; loss: number; logp: Tensor }> {
  if (usesLinearLoss(policy)) {
    const { hidden, head } = await policy.hiddenStates(part)
    try {
      const { inplace: _inplace, gradDtype: _gradDtype, ...lossOptions } = options
      const r = await linearGrpoLoss(
        { ...inputs, hidden, weight: head.weight, bias: head.bias, gradWeight: head.gradWeight ?? undefined, gradBias: head.gradBias ?? undefined },
        lossOptions,
      )
      try {
        await policy.backwardHidden(part, r.gradHidden, backwardOptions)
      } catch (error) {
        r.logp.dispose()
        throw error
      } finally {
        r.gradHidden.dispose()
      }
      return { stats: r.stats, loss: r.loss, logp: r.logp }
    } finally {
      if (!ownedByBatch(part, hidden)) hidden.dispose()
    }
  }
  const logits = await policy.logits(part)
  try {
    const r = await grpoLoss({ ...inputs, logits }, { ...options, inplace: true })
    try {
      await policy.backward(part, logits, backwardOptions)
    } catch (error) {
      r.logp.dispose()
      throw error
    }
    return { stats: r.stats, loss: r.loss, logp: r.logp }
  } finally {
    logits.dispose()
  }
}

/** Token log-probs of a micro-batch under `policy` (the reference): from its hidden states when it has a linear head. */
async function policyLogprobs(policy: Policy, part: PolicyBatch, targets: Tensor, temperature: number): Promise<Tensor> {
  if (usesLinearLoss(policy)) {
    const { hidden, head } = await policy.hiddenStates(part)
    try {
      const r = await linearTokenLogprobs({ hidden, weight: head.weight, bias: head.bias, targets, mask: part.mask }, { temperature })
      r.lse.dispose()
      return r.logp
    } finally {
      if (!ownedByBatch(part, hidden)) hidden.dispose()
    }
  }
  const logits = await policy.logits(part)
  try {
    const r = await tokenLogprobs(logits, targets, { temperature, mask: part.mask })
    r.lse.dispose()
    return r.logp
  } finally {
    logits.dispose()
  }
}

/** Hidden states a policy keeps in the batch's cache (for its backward) belong to the batch, not to the Trainer. */
function ownedByBatch(part: PolicyBatch, t: Tensor): boolean {
  if (!part.cache) return false
  for (const v of part.cache.values()) if (v === t) return true
  return false
}

/** A step's sampling seed: a mix of the trainer's seed and the step number, an integer below 2^53. */
function mixSeed(seed: number, step: number): number {
  let h = Math.imul((seed % 0x100000000) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.floor(seed / 0x100000000)
  h = Math.imul(h ^ (h >>> 13) ^ step, 0xc2b2ae35)
  const lo = Math.imul(h ^ (h >>> 16) ^ Math.imul(step, 0x27d4eb2f), 0x165667b1) >>> 0
  return (h >>> 0) * 0x200000 + (lo >>> 11)
}

function permutation(n: number, seed: number): Int32Array {
  const out = Int32Array.from({ length: n }, (_, i) => i)
  let s = seed >>> 0
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    const j = Math.floor((s / 4294967296) * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** Options of one step. */
export interface StepOptions {
  /** With filterGroups: where the prompts of later sampling rounds come from (default: the step's prompts again). */
  morePrompts?: (count: number) => readonly TrainerPrompt[]
}

function checkPrompts(prompts: readonly TrainerPrompt[], what: string): void {
  prompts.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || p.tokens === undefined) invalidArg('a {tokens, …} prompt', `${what}[${i}]`, p)
  })
}

/** The model's own tokens of a trajectory (the tool tokens are not counted). */
function modelTokens(t: Trajectory): number {
  let n = 0
  for (const turn of t.turns) n += turn.length
  return n
}

function addToolStats(into: ToolStats, from: ToolStats): void {
  for (const key of Object.keys(into) as (keyof ToolStats)[]) into[key] += from[key]
}

/** One prompt's group of a sampling round: its trajectories and their aggregate rewards. */
interface SampledGroup {
  prompt: TrainerPrompt
  trajectories: Trajectory[]
  rewards: number[]
}

function groupsOf(prompts: readonly TrainerPrompt[], trajectories: readonly Trajectory[], rewards: Float64Array): SampledGroup[] {
  const groups: SampledGroup[] = prompts.map((prompt) => ({ prompt, trajectories: [], rewards: [] }))
  trajectories.forEach((t, i) => {
    groups[t.prompt]!.trajectories.push(t)
    groups[t.prompt]!.rewards.push(rewards[i]!)
  })
  return groups
}

/** The metrics of a step's sampling side. */
type SampledMetrics = Pick<
  StepMetrics,
  'rewardMean' | 'rewardStd' | 'rewards' | 'zeroStdFraction' | 'reasons' | 'truncatedFraction' | 'tools' | 'filter' | 'warnings' | 'completionLength'
>

function meanStd(values: ArrayLike<number>): [number, number] {
  const n = values.length
  if (n === 0) return [0, 0]
  let mean = 0
  for (let i = 0; i < n; i++) mean += values[i]!
  mean /= n
  let ss = 0
  for (let i = 0; i < n; i++) ss += (values[i]! - mean) ** 2
  return [mean, n > 1 ? Math.sqrt(ss / (n - 1)) : 0]
}

/** What the sampling rounds of a step saw, summed over the rounds. */
/** One rank's sampling-side counts (what SampleSummary gathers across ranks). */
interface SummaryPart {
  rewards: number[]
  rounds: Record<string, number[]>[]
  reasons: Record<string, number>
  tools: ToolStats
  groups: number
  flat: number
  truncated: number
  trained: number
  length: number
}

class SampleSummary {
  sampleSeconds = 0
  toolSeconds = 0
  rewardSeconds = 0
  readonly warnings: string[] = []
  #rewards: number[] = []
  /** Each sampling round's scores, by reward name (a reward's mean is taken per round, as one batch). */
  #rounds: Record<string, number[]>[] = []
  #reasons: Record<string, number> = {}
  #tools = emptyToolStats()
  #groups = 0
  #flat = 0
  #truncated = 0

  add(trajectories: readonly Trajectory[], scored: Awaited<ReturnType<typeof scoreRewards>>, stats: ToolStats, sampleSeconds: number, rewardSeconds: number, rewards: Float64Array): void {
    this.sampleSeconds += sampleSeconds - stats.toolSeconds
    this.toolSeconds += stats.toolSeconds
    this.rewardSeconds += rewardSeconds
    for (const r of weightedSum(scored)) this.#rewards.push(r)
    this.#rounds.push(Object.fromEntries(scored.names.map((name, k) => [name, Array.from(scored.scores[k]!)])))
    for (const [k, v] of Object.entries(scored.reasons)) this.#reasons[k] = (this.#reasons[k] ?? 0) + v
    addToolStats(this.#tools, stats)
    const byGroup = new Map<number, number[]>()
    trajectories.forEach((t, i) => {
      if (t.finishReason === 'length') this.#truncated++
      const list = byGroup.get(t.prompt)
      if (list) list.push(rewards[i]!)
      else byGroup.set(t.prompt, [rewards[i]!])
    })
    this.#groups += byGroup.size
    for (const list of byGroup.values()) if (!hasSpread(list)) this.#flat++
  }

  finish(filter: FilterReport | null, kept: readonly SampledGroup[]): SampledMetrics {
    let trained = 0
    let length = 0
    for (const g of kept) for (const t of g.trajectories) (trained++, (length += modelTokens(t)))
    return this.#metrics(this.#part(trained, length), filter)
  }

  /**
   * The metrics of the whole batch of a data-parallel step (one sampling round: filterGroups is refused there):
   * every rank's part joined in rank order, which is the batch's order, so they are what one process reports.
   */
  async finishGlobal(filter: FilterReport | null, kept: readonly SampledGroup[], dp: DataParallel): Promise<SampledMetrics> {
    let trained = 0
    let length = 0
    for (const g of kept) for (const t of g.trajectories) (trained++, (length += modelTokens(t)))
    const parts = await dp.gather(this.#part(trained, length))
    const all = parts[0]!
    for (const p of parts.slice(1)) {
      all.rewards.push(...p.rewards)
      p.rounds.forEach((round, i) => {
        const into = (all.rounds[i] ??= {})
        for (const [name, scores] of Object.entries(round)) (into[name] ??= []).push(...scores)
      })
      for (const [k, v] of Object.entries(p.reasons)) all.reasons[k] = (all.reasons[k] ?? 0) + v
      addToolStats(all.tools, p.tools)
      all.groups += p.groups
      all.flat += p.flat
      all.truncated += p.truncated
      all.trained += p.trained
      all.length += p.length
    }
    return this.#metrics(all, filter)
  }

  #part(trained: number, length: number): SummaryPart {
    return {
      rewards: [...this.#rewards],
      rounds: this.#rounds.map((r) => ({ ...r })),
      reasons: { ...this.#reasons },
      tools: { ...this.#tools },
      groups: this.#groups,
      flat: this.#flat,
      truncated: this.#truncated,
      trained,
      length,
    }
  }

  #metrics(p: SummaryPart, filter: FilterReport | null): SampledMetrics {
    const n = p.rewards.length
    const [rewardMean, rewardStd] = meanStd(p.rewards)
    const sums: Record<string, number> = {}
    for (const round of p.rounds) {
      const names = Object.keys(round)
      for (const [name, mean] of Object.entries(rewardMeans({ names, scores: names.map((k) => Float64Array.from(round[k]!)) }))) {
        sums[name] = (sums[name] ?? 0) + mean * round[name]!.length
      }
    }
    return {
      rewardMean,
      rewardStd,
      rewards: Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / n])),
      zeroStdFraction: p.groups > 0 ? p.flat / p.groups : 0,
      reasons: p.reasons,
      truncatedFraction: n > 0 ? p.truncated / n : 0,
      tools: { ...p.tools, meanTurns: n > 0 ? p.tools.turns / n : 0 },
      filter,
      warnings: this.warnings,
      completionLength: p.trained > 0 ? p.length / p.trained : 0,
    }
  }
}

/** The sampling-side metrics of a batch built elsewhere (stepFromRollouts). */
function batchMetrics(batch: RolloutBatch): SampledMetrics {
  const [rewardMean, rewardStd] = meanStd(batch.rewards)
  return {
    rewardMean,
    rewardStd,
    rewards: { reward: rewardMean },
    zeroStdFraction: batch.groupStats?.zeroStdFraction ?? 0,
    reasons: {},
    truncatedFraction: 0,
    tools: { ...emptyToolStats(), meanTurns: 1 },
    filter: null,
    warnings: [],
    completionLength: batch.tokens / batch.size,
  }
}

interface PassStats {
  tokens: number
  kl: number
  approxKl: number
  clipFrac: number
  entropy: number
  ratioMax: number
  rolloutWeight: number
  rolloutCorrected: number
  rolloutGap: number
  rolloutKl: number
}

const CHECKPOINT_VERSION = 1
const CHECKPOINT_KEYS = ['version', 'step', 'cursor', 'seed', 'optimizerStep', 'reference', 'sha256']

export class Trainer implements Disposable, AsyncDisposable {
  readonly policy: Policy
  readonly settings: Readonly<
    Required<
      Omit<GrpoSettings, 'dualClip' | 'logRatioClamp' | 'normLength' | 'stop' | 'filterGroups' | 'overlongPenalty' | 'ratioCap' | 'rolloutCorrection' | 'lossType'>
    >
  > & {
    dualClip: number | null
    logRatioClamp: number | null
    normLength: number | undefined
    stop: readonly number[]
    filterGroups: Readonly<Required<FilterGroupsOptions>> | null
    overlongPenalty: Readonly<Required<OverlongPenalty>> | null
    ratioCap: number | null
    rolloutCorrection: Readonly<RolloutCorrection> | null
    lossType: LossType | null
  }
  readonly optimizer: AdamW
  readonly seed: number
  #reference: Policy | null | undefined
  #ownsReference = false
  #decode: (tokens: Int32Array) => string
  #rewards: RewardSpec[]
  #toolLoop: ToolLoop | null
  #step = 0
  #cursor = 0
  #disposed = false
  #dp: DataParallel | null

  constructor(options: TrainerOptions) {
    const o = resolveLossOptions(parseOptions(TRAINER_SCHEMA, options, 'Trainer options', MOVED_TO_OPTIMIZER), options, 'Trainer options')
    if (o.policy === undefined) invalidArg('a Policy', 'policy', undefined)
    if (o.decode === undefined) invalidArg('a function from token ids to text', 'decode', undefined)
    const policy = o.policy
    const stop = Array.from(o.stop!)
    if (stop.some((t) => !Number.isSafeInteger(t) || t < 0 || t >= policy.vocabSize)) {
      invalidArg(`an array of token ids in [0, ${policy.vocabSize})`, 'stop', o.stop)
    }
    this.settings = Object.freeze({
      groupSize: o.groupSize!,
      temperature: o.temperature!,
      topP: o.topP!,
      maxNewTokens: o.maxNewTokens!,
      stop: Object.freeze([...stop]),
      clipLow: o.clipLow!,
      clipHigh: o.clipHigh!,
      dualClip: o.dualClip ?? null,
      logRatioClamp: o.logRatioClamp ?? null,
      beta: o.beta!,
      kl: o.kl!,
      entropyCoef: o.entropyCoef!,
      lossAgg: o.lossAgg!,
      normLength: o.normLength,
      loss: o.loss!,
      ratioLevel: o.ratioLevel!,
      ratioCap: o.ratioCap ?? null,
      klBiasCorrection: o.klBiasCorrection!,
      topEntropyQuantile: o.topEntropyQuantile!,
      rolloutCorrection: o.rolloutCorrection ? Object.freeze({ ...o.rolloutCorrection }) : null,
      lossType: o.lossType ?? null,
      epochs: o.epochs!,
      miniBatches: o.miniBatches!,
      baseline: o.baseline!,
      // GDPO normalizes the summed per-group-normalized rewards over the batch (TRL does the same).
      scale: options.scale === undefined && o.rewardAggregation === 'normalize-then-sum' ? 'batch' : o.scale!,
      advantageEps: o.advantageEps!,
      maxTurns: o.maxTurns!,
      toolTimeout: o.toolTimeout!,
      maxToolResponseChars: o.maxToolResponseChars!,
      rewardAggregation: o.rewardAggregation!,
      filterGroups: o.filterGroups ? Object.freeze(parseOptions(FILTER_GROUPS_SCHEMA, o.filterGroups, 'filterGroups') as Required<FilterGroupsOptions>) : null,
      maskTruncated: o.maskTruncated!,
      overlongPenalty: o.overlongPenalty ? Object.freeze(parseOverlong(o.overlongPenalty, o.maxNewTokens!)) : null,
    })
    if (this.settings.filterGroups && this.settings.filterGroups.maxRounds === undefined) invalidArg('an integer >= 1', 'filterGroups.maxRounds', undefined)
    if (this.settings.beta > 0 && o.reference === null) invalidArg('a reference policy (beta > 0)', 'reference', null)
    if (o.reward !== undefined && o.rewards !== undefined) invalidArg('either reward or rewards, not both', 'rewards', o.rewards)
    this.#rewards = o.rewards !== undefined ? rewardSpecs(o.rewards) : [{ name: 'reward', weight: 1, fn: o.reward ?? toolCallReward() }]
    if (o.tools !== undefined) {
      if (o.encode === undefined) invalidArg('a function from text to token ids (encode: it tokenizes the tool turns)', 'encode', undefined)
      this.#toolLoop = {
        tools: Object.freeze({ ...o.tools }),
        maxTurns: this.settings.maxTurns,
        toolTimeout: this.settings.toolTimeout,
        maxToolResponseChars: this.settings.maxToolResponseChars,
        render: o.renderToolTurn ?? toolTurnRenderer(),
        encode: o.encode,
      }
    } else {
      this.#toolLoop = null
    }
    this.seed = o.seed!
    this.policy = policy
    this.#reference = o.reference
    this.#decode = o.decode
    this.#dp = DataParallel.fromOption(o.distributed)
    if (this.#dp && this.settings.filterGroups) {
      invalidArg('filterGroups off when distributed is on (dynamic sampling keeps groups by one decision over the whole batch, which the ranks do not share)', 'filterGroups', o.filterGroups)
    }
    if (this.#dp && this.#toolLoop) {
      invalidArg('no tools when distributed is on (multi-turn rollouts number the random streams of later turns among every rank\'s unfinished trajectories)', 'tools', `tools ${Object.keys(this.#toolLoop.tools).join(', ')}`)
    }
    this.optimizer = this.#dp ? this.#dp.createOptimizer(() => this.policy.parameters(), o.optimizer) : new AdamW(() => this.policy.parameters(), o.optimizer)
  }

  /** The data-parallel world this trainer works in (rank, size, zero), or null on its own. */
  get dataParallel(): DataParallel | null {
    return this.#dp
  }

  /** GRPO steps done (supervised steps are not counted). */
  get stepCount(): number {
    return this.#step
  }

  /** The reference policy, once there is one. */
  get reference(): Policy | null {
    return this.#reference ?? null
  }

  get disposed(): boolean {
    return this.#disposed
  }

  /**
   * One GRPO step on `prompts`: sample (multi-turn with tools), reward, advantages, loss passes and updates. With
   * filterGroups, later sampling rounds draw their prompts from `options.morePrompts(count)` (Trainer.train
   * passes the next prompts of its dataset); without it they sample the step's prompts again.
   */
  async step(prompts: readonly TrainerPrompt[], options: StepOptions = {}): Promise<StepMetrics> {
    this.#live()
    if (!Array.isArray(prompts) || prompts.length === 0) invalidArg('a non-empty array of prompts', 'prompts', prompts)
    checkPrompts(prompts, 'prompts')
    if (typeof options !== 'object' || options === null) invalidArg('an options object', 'step options', options)
    const more = options.morePrompts
    if (more !== undefined && typeof more !== 'function') invalidArg('a function from a count to prompts', 'morePrompts', more)
    const s = this.settings
    const t0 = performance.now()
    const dp = this.#dp
    await dp?.syncParameters([this.policy, this.#ownsReference ? null : this.#reference])
    const summary = new SampleSummary()
    const sampleRound = async (count: number, round: number) => {
      let roundPrompts: readonly TrainerPrompt[] = prompts
      if (round > 0) {
        roundPrompts = more ? more(count) : Array.from({ length: count }, (_, i) => prompts[i % prompts.length]!)
        if (!Array.isArray(roundPrompts) || roundPrompts.length === 0) invalidArg('a non-empty array of prompts', 'morePrompts(count)', roundPrompts)
        checkPrompts(roundPrompts, 'morePrompts(count)')
      }
      // Data-parallel: this rank's share of the round's prompts, drawing the random streams the whole batch gives
      // them, its groups numbered from the share's start (filterGroups, the one source of later rounds, is refused).
      const share = dp ? dp.share(roundPrompts, 'prompts') : { items: roundPrompts, start: 0 }
      // Round 0 samples with the step's seed, so a step without filterGroups is what it always was.
      const seed = round === 0 ? mixSeed(this.seed, this.#step) : mixSeed(this.seed + round * 0x3c6ef372, this.#step)
      const r = await this.#sampleAndScore(share.items, { n: s.groupSize, greedy: false, seed, streamOffset: share.start * s.groupSize }, summary)
      return groupsOf(share.items, r.trajectories, r.rewards).map((group) => ({ group, spread: hasSpread(group.rewards) }))
    }
    let kept: SampledGroup[]
    let filter: FilterReport | null = null
    let groupStart = 0
    if (s.filterGroups) {
      const r = await fillWithSpread(prompts.length, s.filterGroups.maxRounds, sampleRound)
      kept = r.kept
      filter = r.report
      if (r.warning) summary.warnings.push(r.warning)
    } else {
      kept = (await sampleRound(prompts.length, 0)).map((g) => g.group)
      if (dp) groupStart = shareOf(prompts.length, dp.rank, dp.size).start
    }
    const rollouts: Rollout[] = []
    kept.forEach((g, group) => {
      for (const [i, t] of g.trajectories.entries()) {
        const truncated = s.maskTruncated && t.finishReason === 'length'
        const masked = truncated || t.mask.includes(0)
        rollouts.push({
          prompt: g.prompt.tokens,
          completion: t.tokens,
          logprobs: t.logprobs,
          reward: g.rewards[i]!,
          group: groupStart + group,
          ...(masked ? { mask: truncated ? new Uint8Array(t.tokens.length) : t.mask } : {}),
        })
      }
    })
    const sampled = dp ? await summary.finishGlobal(filter, kept, dp) : summary.finish(filter, kept)
    const timing = { start: t0, sample: summary.sampleSeconds, tools: summary.toolSeconds, reward: summary.rewardSeconds }
    if (rollouts.length === 0) return this.#noUpdate(sampled, timing)
    const batch = await this.#batch(rollouts)
    try {
      return await this.#update(batch, sampled, timing)
    } finally {
      batch.dispose()
    }
  }

  /**
   * One GRPO step on rollouts sampled elsewhere (their log-probs, when given, are the old log-probs), or on a
   * RolloutBatch built by the caller (which keeps ownership of it).
   */
  async stepFromRollouts(rollouts: readonly Rollout[] | RolloutBatch): Promise<StepMetrics> {
    this.#live()
    const start = performance.now()
    await this.#dp?.syncParameters([this.policy, this.#ownsReference ? null : this.#reference])
    if (rollouts instanceof RolloutBatch) return this.#update(rollouts, null, { start, sample: 0, tools: 0, reward: 0 })
    const batch = await this.#batch(rollouts)
    try {
      return await this.#update(batch, null, { start, sample: 0, tools: 0, reward: 0 })
    } finally {
      batch.dispose()
    }
  }

  /** One supervised (nll) update on reference completions: a warm start. */
  async supervisedStep(examples: readonly SupervisedExample[], options: SupervisedStepOptions = {}): Promise<SupervisedMetrics> {
    this.#live()
    const start = performance.now()
    const o = parseOptions(SUPERVISED_STEP_SCHEMA, options, 'supervisedStep options')
    const temperature = o.temperature!
    const dp = this.#dp
    await dp?.syncParameters([this.policy, this.#ownsReference ? null : this.#reference])
    const mine = dp ? dp.share(examples, 'examples').items : examples
    // A multi-turn reference (model turns and the tool turns between them) is longer than one turn's limit.
    const maxLength = this.#toolLoop ? undefined : this.settings.maxNewTokens
    const batch = RolloutBatch.fromExamples(mine, { device: this.policy.device, vocabSize: this.policy.vocabSize, maxLength })
    const parts = batch.split(Math.min(this.settings.miniBatches, batch.size))
    let loss = 0
    try {
      const [tokens] = dp ? await dp.sum([batch.tokens]) : [batch.tokens]
      for (const [i, part] of parts.entries()) {
        const r = await lossAndBackward(
          this.policy,
          part,
          { targets: part.targets, mask: part.mask, advantages: part.advantages },
          { loss: 'nll', lossAgg: 'token-mean', normalizer: tokens!, temperature },
          i === parts.length - 1 ? dp?.backwardOptions() : undefined,
        )
        r.logp.dispose()
        loss += r.loss
      }
      const update = await this.optimizer.step({ lr: o.lr })
      if (dp) [loss] = await dp.sum([loss])
      return { step: this.optimizer.stepCount, loss, tokens: tokens!, gradNorm: update.gradNorm, time: (performance.now() - start) / 1000 }
    } finally {
      for (const p of parts) p.dispose()
      batch.dispose()
    }
  }

  /** Drops the optimizer's moments and step count (e.g. between a warm start and GRPO). */
  resetOptimizer(): void {
    this.#live()
    this.optimizer.loadState({}, 0)
  }

  /** The mean reward of the policy's completions on `prompts` (greedy by default). */
  async evaluate(prompts: readonly TrainerPrompt[], options: EvaluateOptions = {}): Promise<EvaluateResult> {
    this.#live()
    if (!Array.isArray(prompts) || prompts.length === 0) invalidArg('a non-empty array of prompts', 'prompts', prompts)
    checkPrompts(prompts, 'prompts')
    const parsed = parseOptions(EVALUATE_SCHEMA, options, 'evaluate options')
    const { greedy, n, batchSize, seed } = parsed as Required<EvaluateOptions>
    const specs: RewardSpec[] = parsed.reward ? [{ name: 'reward', weight: 1, fn: parsed.reward }] : this.#rewards
    const start = performance.now()
    let total = 0
    let solved = 0
    let count = 0
    let length = 0
    const reasons: Record<string, number> = {}
    const tools = emptyToolStats()
    // Data-parallel: this rank evaluates its share, chunk by chunk of the whole list, with the seeds and random
    // streams one process would use for those prompts; the per-completion scores are gathered and summed in the
    // order one process sums them.
    const dp = this.#dp
    await dp?.syncParameters([this.policy, this.#ownsReference ? null : this.#reference])
    const mine = dp ? shareOf(prompts.length, dp.rank, dp.size) : { start: 0, end: prompts.length }
    // Per chunk: each reward's scores, the aggregate scores, and the model tokens.
    const chunks: { at: number; names: string[]; scores: number[][]; total: number[]; length: number }[] = []
    for (let from = Math.floor(mine.start / batchSize) * batchSize; from < mine.end; from += batchSize) {
      const first = Math.max(from, mine.start)
      const chunk = prompts.slice(first, Math.min(from + batchSize, mine.end))
      if (chunk.length === 0) continue
      const sampling = this.#sampling({ n, greedy, seed: mixSeed(seed, from), streamOffset: (first - from) * n })
      const { trajectories, stats } = await rollout(this.policy, chunk, sampling, this.#decode, this.#toolLoop)
      addToolStats(tools, stats)
      const scored = await scoreRewards(specs, this.#texts(trajectories), trajectories, chunk, null)
      for (const [k, v] of Object.entries(scored.reasons)) reasons[k] = (reasons[k] ?? 0) + v
      let tokens = 0
      for (const t of trajectories) tokens += modelTokens(t)
      chunks.push({ at: from, names: scored.names, scores: scored.scores.map((x) => Array.from(x)), total: Array.from(weightedSum(scored)), length: tokens })
    }
    // One process's chunks are [0, batchSize), [batchSize, 2 batchSize)...; a rank's share can split one of them,
    // so the parts of a chunk are joined (rank order is prompt order) before its means are taken.
    const parts = dp ? await dp.gather({ chunks, reasons, tools }) : [{ chunks, reasons, tools }]
    const joined = new Map<number, (typeof chunks)[number]>()
    for (const p of parts) {
      for (const c of p.chunks) {
        const j = joined.get(c.at)
        if (!j) {
          joined.set(c.at, c)
        } else {
          c.scores.forEach((x, k) => j.scores[k]!.push(...x))
          j.total.push(...c.total)
          j.length += c.length
        }
      }
    }
    const allReasons: Record<string, number> = {}
    const allTools = emptyToolStats()
    for (const p of parts) {
      for (const [k, v] of Object.entries(p.reasons)) allReasons[k] = (allReasons[k] ?? 0) + v
      addToolStats(allTools, p.tools)
    }
    const sums: Record<string, number> = {}
    for (const at of [...joined.keys()].sort((a, b) => a - b)) {
      const c = joined.get(at)!
      for (const [name, mean] of Object.entries(rewardMeans({ names: c.names, scores: c.scores.map((x) => Float64Array.from(x)) }))) sums[name] = (sums[name] ?? 0) + mean * c.total.length
      for (const score of c.total) {
        total += score
        solved += score === 1 ? 1 : 0
      }
      count += c.total.length
      length += c.length
    }
    const rewards = Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / count]))
    return {
      reward: total / count,
      rewards,
      tools: { ...allTools, meanTurns: allTools.turns / count },
      solved: solved / count,
      count,
      reasons: allReasons,
      completionLength: length / count,
      time: (performance.now() - start) / 1000,
    }
  }

  /**
   * Runs `steps` GRPO steps on prompts drawn from `dataset` (a fresh seeded permutation per pass over it),
   * evaluating every `evalEvery` steps. An aborted `signal` ends training after the step in progress.
   */
  async train(dataset: readonly TrainerPrompt[], options: TrainOptions): Promise<TrainResult> {
    this.#live()
    if (!Array.isArray(dataset) || dataset.length === 0) invalidArg('a non-empty array of prompts', 'dataset', dataset)
    if (typeof options !== 'object' || options === null) invalidArg('an options object with steps', 'train options', options)
    const o = parseOptions(TRAIN_SCHEMA, options, 'train options')
    if (o.steps === undefined) invalidArg('an integer >= 0', 'steps', undefined)
    const { steps, signal } = o
    const batchSize = o.batchSize!
    const evalEvery = o.evalEvery!
    if (evalEvery > 0 && (!Array.isArray(o.evalPrompts) || o.evalPrompts.length === 0)) {
      invalidArg('a non-empty array of evalPrompts (evalEvery > 0)', 'evalPrompts', o.evalPrompts)
    }
    const result: TrainResult = { steps: [], evaluations: [], aborted: false }
    for (let k = 0; k < steps; k++) {
      // Data-parallel ranks stop together: one rank's abort (its Ctrl-C) stops them all after the same step.
      if (this.#dp ? (await this.#dp.sum([signal?.aborted ? 1 : 0]))[0]! > 0 : signal?.aborted) {
        result.aborted = true
        break
      }
      const metrics = await this.step(this.#nextPrompts(dataset, batchSize), { morePrompts: (count) => this.#nextPrompts(dataset, count) })
      result.steps.push(metrics)
      await o.onStep?.(metrics)
      if (evalEvery > 0 && (k + 1) % evalEvery === 0) {
        const e = await this.evaluate(o.evalPrompts!, o.evalOptions)
        result.evaluations.push({ step: this.#step, result: e })
        await o.onEval?.(e, this.#step)
      }
    }
    result.aborted ||= signal?.aborted ?? false
    return result
  }

  /** Saves the policy, the reference (when the trainer made it), the optimizer state and the position. */
  async saveCheckpoint(dir: string): Promise<void> {
    this.#live()
    if (typeof dir !== 'string' || dir === '') invalidArg('a directory path', 'dir', dir)
    // Data-parallel: every rank calls this (ZeRO-1 gathers the sharded moments); rank 0 alone writes.
    const state = this.#dp ? await this.#dp.optimizerState(this.optimizer) : { tensors: this.optimizer.stateTensors(), owned: false }
    const write = async () => {
      await mkdir(dir, { recursive: true })
      await this.policy.save(join(dir, 'policy.safetensors'))
      if (this.#reference && this.#ownsReference) await this.#reference.save(join(dir, 'reference.safetensors'))
      await writeSafetensors(join(dir, 'optimizer.safetensors'), state.tensors, { step: String(this.optimizer.stepCount) })
      const meta = { version: CHECKPOINT_VERSION, step: this.#step, cursor: this.#cursor, seed: this.seed, optimizerStep: this.optimizer.stepCount, reference: this.#ownsReference && !!this.#reference }
      // The safetensors files carry checksums; trainer.json carries its own, so a flipped digit of the step or
      // the cursor is an error on load too.
      const sealed = { ...meta, sha256: createHash('sha256').update(JSON.stringify(meta)).digest('hex') }
      await writeFile(join(dir, 'trainer.json'), JSON.stringify(sealed, null, 2) + '\n')
    }
    try {
      if (this.#dp) await this.#dp.onWriter(write)
      else await write()
    } finally {
      if (state.owned) for (const t of Object.values(state.tensors)) t.dispose()
    }
  }

  /** Restores a checkpoint written by saveCheckpoint into this trainer (same policy configuration). */
  async loadCheckpoint(dir: string): Promise<void> {
    this.#live()
    if (typeof dir !== 'string' || dir === '') invalidArg('a directory path', 'dir', dir)
    let meta: { version: number; step: number; cursor: number; seed: number; optimizerStep: number; reference: boolean }
    try {
      meta = JSON.parse(await readFile(join(dir, 'trainer.json'), 'utf8'))
    } catch (cause) {
      throw new GrpoError(`Expected a checkpoint directory with trainer.json for ${dir} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
    }
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) invalidArg('a JSON object', `${dir}/trainer.json`, meta)
    if (meta.version !== CHECKPOINT_VERSION) invalidArg(`checkpoint version ${CHECKPOINT_VERSION}`, `${dir}/trainer.json`, meta.version)
    // Unknown keys too: a flipped letter in a key name would otherwise hide the key (the checksum's included).
    for (const key of Object.keys(meta)) {
      if (!CHECKPOINT_KEYS.includes(key)) invalidArg(`one of ${CHECKPOINT_KEYS.join(', ')}`, `a key of ${dir}/trainer.json`, key)
    }
    if ('sha256' in meta) {
      const { sha256, ...rest } = meta as typeof meta & { sha256: unknown }
      if (createHash('sha256').update(JSON.stringify(rest)).digest('hex') !== sha256) {
        throw new GrpoError(`Expected ${dir}/trainer.json to match its checksum but received a file whose contents changed after it was written`, 'ERR_GRPO_INVALID_ARG')
      }
    }
    for (const key of ['step', 'cursor', 'optimizerStep'] as const) {
      if (!Number.isSafeInteger(meta[key]) || meta[key] < 0) invalidArg('a non-negative integer', `${key} of ${dir}/trainer.json`, meta[key])
    }
    await this.policy.load(join(dir, 'policy.safetensors'))
    if (meta.reference) {
      const path = join(dir, 'reference.safetensors')
      try {
        await stat(path)
      } catch (cause) {
        throw new GrpoError(`Expected reference.safetensors in the checkpoint ${dir} (trainer.json says it has one) but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
      }
      if (!this.#reference) {
        this.#reference = await this.policy.clone()
        this.#ownsReference = true
      }
      await this.#reference.load(path)
    }
    const opt = await readSafetensors(join(dir, 'optimizer.safetensors'))
    this.optimizer.loadState(opt.tensors, meta.optimizerStep)
    this.#step = meta.step
    this.#cursor = meta.cursor
    this.#dp?.markStale()
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    this.optimizer.dispose()
    if (this.#ownsReference) this.#reference?.dispose()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose()
  }

  // -------------------------------------------------------------------------------------------------------

  #live(): void {
    if (this.#disposed) throw new GrpoError('Expected a live Trainer for this operation but received a disposed one', 'ERR_GRPO_DISPOSED')
  }

  #nextPrompts(dataset: readonly TrainerPrompt[], count: number): TrainerPrompt[] {
    const out: TrainerPrompt[] = []
    let order: Int32Array | null = null
    let pass = -1
    for (let i = 0; i < count; i++) {
      const p = Math.floor(this.#cursor / dataset.length)
      if (p !== pass) {
        pass = p
        order = permutation(dataset.length, mixSeed(this.seed, 0x40000 + p) % 0x100000000)
      }
      out.push(dataset[order![this.#cursor % dataset.length]!]!)
      this.#cursor++
    }
    return out
  }

  /** The sampling options of a rollout: the trainer's temperature, top-p, length limit and stop tokens. */
  #sampling(o: { n: number; greedy: boolean; seed: number; streamOffset?: number }) {
    const s = this.settings
    const base = { n: o.n, greedy: o.greedy, seed: o.seed, temperature: s.temperature, topP: s.topP, maxNewTokens: s.maxNewTokens, stop: s.stop }
    // Data-parallel: a rank's share starts at this random stream of the whole batch.
    return o.streamOffset ? { ...base, streamOffset: o.streamOffset } : base
  }

  /** The text each reward reads: the one turn's text, or the whole trajectory decoded (tool turns included). */
  #texts(trajectories: readonly Trajectory[]): string[] {
    return trajectories.map((t) => {
      if (t.turns.length === 1 && t.turns[0]!.length === t.tokens.length) return t.turns[0]!.text
      const text = this.#decode(t.tokens)
      if (typeof text !== 'string') invalidArg('a string from decode', 'decode(tokens)', text)
      return text
    })
  }

  /**
   * One sampling round of a step: rollouts (multi-turn with tools), every reward on every completion (the
   * built-in tool-call reward in one reward.scoreBatch call, on worker threads for large batches; the others
   * called for all completions at once and awaited together, so an async or remote reward overlaps its waits),
   * and the aggregate reward per completion. The first failure is reported.
   */
  async #sampleAndScore(prompts: readonly TrainerPrompt[], o: { n: number; greedy: boolean; seed: number; streamOffset?: number }, summary: SampleSummary): Promise<{ trajectories: Trajectory[]; rewards: Float64Array }> {
    const s = this.settings
    const t0 = performance.now()
    const { trajectories, stats } = await rollout(this.policy, prompts, this.#sampling(o), this.#decode, this.#toolLoop)
    const t1 = performance.now()
    const overlong = s.overlongPenalty ? { maxNewTokens: s.maxNewTokens, penalty: s.overlongPenalty } : null
    const scored = await scoreRewards(this.#rewards, this.#texts(trajectories), trajectories, prompts, overlong)
    const rewards = aggregateRewards(
      scored,
      s.rewardAggregation,
      trajectories.map((t) => t.prompt),
      s.advantageEps,
    )
    summary.add(trajectories, scored, stats, (t1 - t0) / 1000, (performance.now() - t1) / 1000, rewards)
    return { trajectories, rewards }
  }

  /** The metrics of a step that made no update (no group, or no counted token, to train on). */
  #noUpdate(sampled: SampledMetrics, timing: { start: number; sample: number; tools: number; reward: number }): StepMetrics {
    this.#step++
    return {
      step: this.#step,
      ...sampled,
      loss: 0,
      pgLoss: 0,
      kl: 0,
      approxKl: 0,
      clipFrac: 0,
      entropy: 0,
      ratioMax: 0,
      rolloutWeightMean: 0,
      rolloutCorrectedFrac: 0,
      rolloutGapMean: 0,
      rolloutKl: 0,
      completions: 0,
      tokens: 0,
      gradNorm: 0,
      clipCoef: 1,
      tokensPerSecond: 0,
      time: { sample: timing.sample, tools: timing.tools, reward: timing.reward, loss: 0, update: 0, total: (performance.now() - timing.start) / 1000 },
    }
  }

  /** The batch of `rollouts`; data-parallel, with advantages over every rank's rollouts. */
  async #batch(rollouts: readonly Rollout[]): Promise<RolloutBatch> {
    const s = this.settings
    const options = { device: this.policy.device, vocabSize: this.policy.vocabSize, baseline: s.baseline, scale: s.scale, eps: s.advantageEps }
    if (!this.#dp || !Array.isArray(rollouts)) return RolloutBatch.fromRollouts(rollouts, options)
    const global = await this.#dp.advantages(
      rollouts.map((r) => r?.reward),
      rollouts.map((r) => r?.group),
      {},
      { baseline: s.baseline, scale: s.scale, eps: s.advantageEps },
    )
    return RolloutBatch.fromRollouts(rollouts, { ...options, advantages: global.advantages })
  }

  async #referenceFor(): Promise<Policy | null> {
    if (this.#reference === undefined) {
      if (this.settings.beta === 0) return null
      this.#reference = await this.policy.clone()
      this.#ownsReference = true
    }
    return this.#reference
  }

  /** The counts of the whole batch: of every rank's batch, data-parallel (the length is the longest). */
  async #totals(batch: RolloutBatch): Promise<{ tokens: number; size: number; length: number; sequences: number }> {
    let [tokens, size, length, sequences] = [batch.tokens, batch.size, batch.length, batch.sequences]
    if (this.#dp) {
      const parts = await this.#dp.gather([tokens, size, length, sequences])
      ;[tokens, size, length, sequences] = parts.reduce((a, p) => [a[0]! + p[0]!, a[1]! + p[1]!, Math.max(a[2]!, p[2]!), a[3]! + p[3]!], [0, 0, 0, 0])
    }
    return { tokens, size, length, sequences }
  }

  /** The loss normalizer of the whole batch. */
  #normalizer(totals: { tokens: number; size: number; length: number; sequences: number }): number {
    switch (this.settings.lossAgg) {
      case 'token-mean':
        return totals.tokens
      case 'seq-mean-token-sum-norm':
        return totals.size * (this.settings.normLength ?? totals.length)
      default:
        return totals.sequences
    }
  }

  /** The sampling-side metrics of a batch built elsewhere; data-parallel, of every rank's part. */
  async #batchMetrics(batch: RolloutBatch): Promise<SampledMetrics> {
    if (!this.#dp) return batchMetrics(batch)
    const parts = await this.#dp.gather({ rewards: Array.from(batch.rewards), tokens: batch.tokens })
    const rewards = parts.flatMap((p) => p.rewards)
    const metrics = batchMetrics(batch)
    const [rewardMean, rewardStd] = meanStd(rewards)
    const tokens = parts.reduce((a, p) => a + p.tokens, 0)
    return { ...metrics, rewardMean, rewardStd, rewards: { reward: rewardMean }, completionLength: tokens / rewards.length }
  }

  /**
   * The loss passes and updates of a step. `sampled` carries the sampling side's metrics (null for rollouts
   * sampled elsewhere: they are derived from the batch).
   */
  async #update(batch: RolloutBatch, sampled: SampledMetrics | null, timing: { start: number; sample: number; tools: number; reward: number }): Promise<StepMetrics> {
    const s = this.settings
    if (batch.device !== this.policy.device) invalidArg(`a batch on ${this.policy.device}`, 'batch', `a batch on ${batch.device}`)
    sampled ??= await this.#batchMetrics(batch)
    // Data-parallel: every rank decides on the whole batch's counts, so they all update or none does.
    const totals = await this.#totals(batch)
    if (totals.tokens === 0) {
      // Every completion masked out (maskTruncated on a batch cut at maxNewTokens): nothing to train on.
      return this.#noUpdate({ ...sampled, warnings: [...sampled.warnings, 'no completion token takes part in the loss (all masked): no update was made this step'] }, timing)
    }
    const lossStart = performance.now()
    let updateTime = 0
    const parts = batch.split(Math.min(s.miniBatches, batch.size))
    const firstPassLogp: (Tensor | undefined)[] = []
    const recomputedOld: (Tensor | undefined)[] = []
    try {
      const reference = await this.#referenceFor()
      if (reference) {
        for (const part of parts) part.setRefLogp(await policyLogprobs(reference, part, part.targets, s.temperature))
      }
      // Rollout correction: the rollouts' log-probs are the sampler's. The policy's own (before this step's
      // updates) become oldLogp, and the loss weighs each token by exp(old − sampler) (docs/math.md §3.3).
      if (s.rolloutCorrection) {
        for (const [i, part] of parts.entries()) {
          if (!part.oldLogp) continue
          recomputedOld[i] = await policyLogprobs(this.policy, part, part.targets, s.temperature)
        }
      }
      const normalizer = this.#normalizer(totals)
      const lossOptions = {
        temperature: s.temperature,
        clipLow: s.clipLow,
        clipHigh: s.clipHigh,
        dualClip: s.dualClip,
        logRatioClamp: s.logRatioClamp,
        beta: reference ? s.beta : 0,
        kl: s.kl,
        entropyCoef: s.entropyCoef,
        lossAgg: s.lossAgg,
        normLength: s.normLength,
        normalizer,
        loss: s.loss,
        ratioLevel: s.ratioLevel,
        ratioCap: s.ratioCap,
        klBiasCorrection: s.klBiasCorrection,
        topEntropyQuantile: s.topEntropyQuantile,
        inplace: true,
      }
      let loss = 0
      let pgLoss = 0
      const acc: PassStats = { tokens: 0, kl: 0, approxKl: 0, clipFrac: 0, entropy: 0, ratioMax: 0, rolloutWeight: 0, rolloutCorrected: 0, rolloutGap: 0, rolloutKl: 0 }
      let gradNorm = 0
      let clipCoef = 1
      for (let epoch = 0; epoch < s.epochs; epoch++) {
        for (const [i, part] of parts.entries()) {
          const recomputed = recomputedOld[i]
          // The last micro-batch completes the pass's gradients: a data-parallel trainer reduces them as they come.
          const r = await lossAndBackward(
            this.policy,
            part,
            {
              targets: part.targets,
              mask: part.mask,
              oldLogp: recomputed ?? part.oldLogp ?? firstPassLogp[i],
              ...(recomputed ? { rolloutLogp: part.oldLogp } : {}),
              refLogp: part.refLogp,
              advantages: part.advantages,
            },
            recomputed ? { ...lossOptions, rolloutCorrection: s.rolloutCorrection } : lossOptions,
            i === parts.length - 1 ? this.#dp?.backwardOptions() : undefined,
          )
          const stats = r.stats
          // Without sampled log-probs, the first pass's log-probs (before any update) are the old ones.
          if (epoch === 0 && !part.oldLogp && s.epochs > 1) firstPassLogp[i] = r.logp
          else r.logp.dispose()
          if (epoch === 0) {
            loss += stats.loss
            pgLoss += stats.pgLoss
          }
          acc.tokens += stats.tokens
          acc.kl += stats.klMean * stats.tokens
          acc.approxKl += stats.approxKl * stats.tokens
          acc.clipFrac += stats.clipFrac * stats.tokens
          acc.entropy += stats.entropyMean * stats.tokens
          acc.ratioMax = Math.max(acc.ratioMax, stats.ratioMax)
          acc.rolloutWeight += stats.rolloutWeightMean * stats.tokens
          acc.rolloutCorrected += stats.rolloutCorrectedFrac * stats.tokens
          acc.rolloutGap += stats.rolloutGapMean * stats.tokens
          acc.rolloutKl += stats.rolloutKl * stats.tokens
        }
        const u0 = performance.now()
        const update = await this.optimizer.step()
        updateTime += performance.now() - u0
        gradNorm += update.gradNorm / s.epochs
        clipCoef = update.clipCoef
      }
      this.#step++
      // Data-parallel: the metrics of the whole batch, from every rank's part (rank order is batch order).
      const [completions, tokens] = [totals.size, totals.tokens]
      if (this.#dp) {
        const parts = await this.#dp.gather({ loss, pgLoss, acc })
        ;[loss, pgLoss] = [0, 0]
        for (const key of Object.keys(acc) as (keyof PassStats)[]) acc[key] = 0
        for (const p of parts) {
          ;[loss, pgLoss] = [loss + p.loss, pgLoss + p.pgLoss]
          for (const key of Object.keys(acc) as (keyof PassStats)[]) acc[key] = key === 'ratioMax' ? Math.max(acc[key], p.acc[key]) : acc[key] + p.acc[key]
        }
      }
      const end = performance.now()
      const total = (end - timing.start) / 1000
      const n = acc.tokens || 1
      return {
        step: this.#step,
        ...sampled,
        loss,
        pgLoss,
        kl: acc.kl / n,
        approxKl: acc.approxKl / n,
        clipFrac: acc.clipFrac / n,
        entropy: acc.entropy / n,
        ratioMax: acc.ratioMax,
        rolloutWeightMean: acc.rolloutWeight / n,
        rolloutCorrectedFrac: acc.rolloutCorrected / n,
        rolloutGapMean: acc.rolloutGap / n,
        rolloutKl: acc.rolloutKl / n,
        completions,
        tokens,
        gradNorm,
        clipCoef,
        tokensPerSecond: tokens / total,
        time: {
          sample: timing.sample,
          tools: timing.tools,
          reward: timing.reward,
          loss: (end - lossStart - updateTime) / 1000,
          update: updateTime / 1000,
          total,
        },
      }
    } finally {
      for (const t of firstPassLogp) t?.dispose()
      for (const t of recomputedOld) t?.dispose()
      for (const p of parts) p.dispose()
    }
  }
}

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
 * Data-parallel (option `distributed`, on by default under mpirun/srun with several processes): every rank is
 * given the same global prompts and works on its share; the global statistics and the gradients come from
 * lib/distributed-trainer.ts, so N ranks compute what one process would (README "Scaling out").
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
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
import { SAMPLE_OPTIONS_SCHEMA, hasLinearHead, type BackwardOptions, type LinearHeadPolicy, type Policy, type PolicyBatch, type SampledCompletion } from './policy.js'
import { scoreBatch, scoreToolCall, type GroundTruth, type ScoreOptions } from './reward/index.js'
import { RolloutBatch, type Rollout, type SupervisedExample } from './rollout-batch.js'
import { readSafetensors, writeSafetensors } from './safetensors.js'
import type { Tensor } from './tensor.js'

/** A prompt of a GRPO step: its tokens, and whatever the reward needs (the default reads groundTruth). */
export interface TrainerPrompt {
  tokens: ArrayLike<number>
  groundTruth?: GroundTruth
  [key: string]: unknown
}

export interface RewardResult {
  score: number
  /** Why (counted in the step's metrics), e.g. the tool-call reward's reason codes. */
  reason?: string
}

/** Scores one completion; `completion` is the decoded text, `tokens` the raw ids. */
export type RewardFunction = (
  completion: string,
  prompt: TrainerPrompt,
  tokens: Int32Array,
) => number | RewardResult | Promise<number | RewardResult>

/** Marks the reward functions made by toolCallReward, with their options: the Trainer scores those in batches. */
const TOOL_CALL_REWARD = Symbol('node-grpo.toolCallReward')

function requireGroundTruth(prompt: TrainerPrompt): GroundTruth {
  if (prompt.groundTruth === undefined) invalidArg('a groundTruth on every prompt (the tool-call reward needs it)', 'prompt.groundTruth', undefined)
  return prompt.groundTruth
}

/**
 * The Tool-N1 reward (binary by default): scoreToolCall against `prompt.groundTruth`. A Trainer given this reward
 * scores all the completions of a step at once with reward.scoreBatch (on worker threads for large batches)
 * instead of calling it once per completion on the main thread; the scores are the same.
 */
export function toolCallReward(options: ScoreOptions = {}): RewardFunction {
  const reward: RewardFunction = (completion, prompt) => {
    const r = scoreToolCall(completion, requireGroundTruth(prompt), options)
    return { score: r.score, reason: r.reason }
  }
  return Object.assign(reward, { [TOOL_CALL_REWARD]: { ...options } })
}

function toolCallOptions(reward: RewardFunction): ScoreOptions | undefined {
  return (reward as { [TOOL_CALL_REWARD]?: ScoreOptions })[TOOL_CALL_REWARD]
}

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
  scale?: 'group' | 'batch' | 'none'
  advantageEps?: number
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
}

export interface TrainerOptions extends GrpoSettings {
  policy: Policy
  /** Frozen reference for the KL term. Default: a clone of the policy at the first GRPO step (when β > 0). */
  reference?: Policy | null
  /** Turns completion tokens into the text the reward reads. */
  decode: (tokens: Int32Array) => string
  /** Default: toolCallReward() (binary). */
  reward?: RewardFunction
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
  optimizer: valueOption<AdamWOptions>('an options object', (v) => typeof v === 'object' && v !== null && !Array.isArray(v)),
  seed: SAMPLE_OPTIONS_SCHEMA.seed,
  // DataParallel.fromOption checks the object's own keys.
  distributed: valueOption<boolean | DataParallelOptions>(
    'a boolean or data-parallel options ({ zero, bucketMB, timeout })',
    (v) => typeof v === 'boolean' || (typeof v === 'object' && v !== null && !Array.isArray(v)),
  ),
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
  /** Seconds spent sampling, rewarding, in the loss passes (reference, forward, loss, backward), in updates. */
  sample: number
  reward: number
  loss: number
  update: number
  total: number
}

export interface StepMetrics {
  /** Steps done after this one (1 for the first). */
  step: number
  rewardMean: number
  rewardStd: number
  /** Share of groups whose rewards are all equal (no signal). */
  zeroStdFraction: number
  /** Count of each reward reason. */
  reasons: Record<string, number>
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
  /** Mean reward over every completion. */
  reward: number
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
 * Whether the Trainer takes the fused linear loss for this policy: any policy with a linear head (every backend has
 * the op's kernels: cpu, cuda and simt), so that no [N, V] logits tensor exists in a step.
 */
function usesLinearLoss(policy: Policy): policy is LinearHeadPolicy {
  return hasLinearHead(policy)
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
    Required<Omit<GrpoSettings, 'dualClip' | 'logRatioClamp' | 'normLength' | 'stop' | 'ratioCap' | 'rolloutCorrection' | 'lossType'>>
  > & {
    dualClip: number | null
    logRatioClamp: number | null
    normLength: number | undefined
    stop: readonly number[]
    ratioCap: number | null
    rolloutCorrection: Readonly<RolloutCorrection> | null
    lossType: LossType | null
  }
  readonly optimizer: AdamW
  readonly seed: number
  #reference: Policy | null | undefined
  #ownsReference = false
  #decode: (tokens: Int32Array) => string
  #reward: RewardFunction
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
      scale: o.scale!,
      advantageEps: o.advantageEps!,
    })
    if (this.settings.beta > 0 && o.reference === null) invalidArg('a reference policy (beta > 0)', 'reference', null)
    this.seed = o.seed!
    this.policy = policy
    this.#reference = o.reference
    this.#decode = o.decode
    this.#reward = o.reward ?? toolCallReward()
    this.#dp = DataParallel.fromOption(o.distributed)
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

  /** One GRPO step on `prompts`: sample, reward, advantages, loss passes and updates. */
  async step(prompts: readonly TrainerPrompt[]): Promise<StepMetrics> {
    this.#live()
    if (!Array.isArray(prompts) || prompts.length === 0) invalidArg('a non-empty array of prompts', 'prompts', prompts)
    prompts.forEach((p, i) => {
      if (typeof p !== 'object' || p === null || p.tokens === undefined) invalidArg('a {tokens, …} prompt', `prompts[${i}]`, p)
    })
    const s = this.settings
    const t0 = performance.now()
    const dp = this.#dp
    await dp?.syncParameters([this.policy, this.#ownsReference ? null : this.#reference])
    // Data-parallel: this rank's prompts, drawing the random streams the whole batch gives them.
    const share = dp ? dp.share(prompts, 'prompts') : { items: [...prompts], start: 0 }
    const completions = await this.policy.sample(
      share.items.map((p) => p.tokens),
      { n: s.groupSize, temperature: s.temperature, topP: s.topP, maxNewTokens: s.maxNewTokens, stop: s.stop, seed: mixSeed(this.seed, this.#step), streamOffset: share.start * s.groupSize },
    )
    const t1 = performance.now()
    const scored = await this.#score(completions, share.items)
    const t2 = performance.now()
    const rollouts: Rollout[] = completions.map((c, i) => ({
      prompt: share.items[c.prompt]!.tokens,
      completion: c.tokens,
      logprobs: c.logprobs,
      reward: scored.scores[i]!,
      group: share.start + c.prompt,
    }))
    const { batch, reasons } = await this.#batch(rollouts, scored.reasons)
    try {
      return await this.#update(batch, reasons, { start: t0, sample: (t1 - t0) / 1000, reward: (t2 - t1) / 1000 })
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
    if (rollouts instanceof RolloutBatch) return this.#update(rollouts, {}, { start, sample: 0, reward: 0 })
    const { batch } = await this.#batch(rollouts, {})
    try {
      return await this.#update(batch, {}, { start, sample: 0, reward: 0 })
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
    const batch = RolloutBatch.fromExamples(mine, { device: this.policy.device, vocabSize: this.policy.vocabSize, maxLength: this.settings.maxNewTokens })
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
    const parsed = parseOptions(EVALUATE_SCHEMA, options, 'evaluate options')
    const { greedy, n, batchSize, seed } = parsed as Required<EvaluateOptions>
    const reward = parsed.reward ?? this.#reward
    const start = performance.now()
    let total = 0
    let solved = 0
    let count = 0
    let length = 0
    let reasons: Record<string, number> = {}
    // Data-parallel: this rank evaluates its share, chunk by chunk of the whole list, with the seeds and random
    // streams one process would use for those prompts.
    const dp = this.#dp
    await dp?.syncParameters([this.policy, this.#ownsReference ? null : this.#reference])
    const mine = dp ? shareOf(prompts.length, dp.rank, dp.size) : { start: 0, end: prompts.length }
    const scores: number[] = []
    for (let from = Math.floor(mine.start / batchSize) * batchSize; from < mine.end; from += batchSize) {
      const first = Math.max(from, mine.start)
      const chunk = prompts.slice(first, Math.min(from + batchSize, mine.end))
      if (chunk.length === 0) continue
      const completions = await this.policy.sample(
        chunk.map((p) => p.tokens),
        { n, greedy, temperature: this.settings.temperature, topP: this.settings.topP, maxNewTokens: this.settings.maxNewTokens, stop: this.settings.stop, seed: mixSeed(seed, from), streamOffset: (first - from) * n },
      )
      const r = await this.#score(completions, chunk, reward)
      for (const [k, v] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + v
      for (const score of r.scores) {
        total += score
        solved += score === 1 ? 1 : 0
      }
      if (dp) scores.push(...r.scores)
      count += completions.length
      for (const c of completions) length += c.tokens.length
    }
    if (dp) {
      // The scores themselves, summed in the order one process sums them.
      const parts = await dp.gather({ scores, solved, count, length, reasons })
      ;[total, solved, count, length] = [0, 0, 0, 0]
      reasons = {}
      for (const p of parts) {
        for (const score of p.scores) total += score
        ;[solved, count, length] = [solved + p.solved, count + p.count, length + p.length]
        for (const [k, v] of Object.entries(p.reasons)) reasons[k] = (reasons[k] ?? 0) + v
      }
    }
    return { reward: total / count, solved: solved / count, count, reasons, completionLength: length / count, time: (performance.now() - start) / 1000 }
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
      const metrics = await this.step(this.#nextPrompts(dataset, batchSize))
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

  /**
   * Scores every completion: the built-in tool-call reward in one reward.scoreBatch call (worker threads for
   * large batches), any other reward function called for all completions at once and awaited together (an
   * async reward, a remote scorer, overlaps its waits). The first failure in completion order is reported.
   */
  async #score(completions: readonly SampledCompletion[], prompts: readonly TrainerPrompt[], reward = this.#reward): Promise<{ scores: number[]; reasons: Record<string, number> }> {
    const texts = completions.map((c) => {
      const text = this.#decode(c.tokens)
      if (typeof text !== 'string') invalidArg('a string from decode', 'decode(tokens)', text)
      return text
    })
    let results: (number | RewardResult)[]
    const builtIn = toolCallOptions(reward)
    if (builtIn) {
      const items = completions.map((c, i) => ({ completion: texts[i]!, groundTruth: requireGroundTruth(prompts[c.prompt]!) }))
      results = (await scoreBatch(items, builtIn)).map((r) => ({ score: r.score, reason: r.reason }))
    } else {
      const settled = await Promise.allSettled(completions.map(async (c, i) => reward(texts[i]!, prompts[c.prompt]!, c.tokens)))
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failed) throw failed.reason
      results = settled.map((r) => (r as PromiseFulfilledResult<number | RewardResult>).value)
    }
    const scores: number[] = []
    const reasons: Record<string, number> = {}
    for (const r of results) {
      const score = typeof r === 'number' ? r : r?.score
      if (typeof score !== 'number' || !Number.isFinite(score)) {
        throw new GrpoError(`Expected a finite number (or {score}) from the reward function but received ${String(score)}`, 'ERR_GRPO_NONFINITE')
      }
      scores.push(score)
      if (typeof r === 'object' && typeof r.reason === 'string') reasons[r.reason] = (reasons[r.reason] ?? 0) + 1
    }
    return { scores, reasons }
  }

  /** The batch of `rollouts`; data-parallel, with advantages over every rank's rollouts and the summed reasons. */
  async #batch(rollouts: readonly Rollout[], reasons: Record<string, number>): Promise<{ batch: RolloutBatch; reasons: Record<string, number> }> {
    const s = this.settings
    const options = { device: this.policy.device, vocabSize: this.policy.vocabSize, baseline: s.baseline, scale: s.scale, eps: s.advantageEps }
    if (!this.#dp || !Array.isArray(rollouts)) return { batch: await RolloutBatch.fromRollouts(rollouts, options), reasons }
    const global = await this.#dp.advantages(
      rollouts.map((r) => r?.reward),
      rollouts.map((r) => r?.group),
      reasons,
      { baseline: s.baseline, scale: s.scale, eps: s.advantageEps },
    )
    return { batch: await RolloutBatch.fromRollouts(rollouts, { ...options, advantages: global.advantages }), reasons: global.reasons }
  }

  async #referenceFor(): Promise<Policy | null> {
    if (this.#reference === undefined) {
      if (this.settings.beta === 0) return null
      this.#reference = await this.policy.clone()
      this.#ownsReference = true
    }
    return this.#reference
  }

  /** The loss normalizer of the whole batch: of every rank's batch, data-parallel. */
  async #normalizer(batch: RolloutBatch): Promise<number> {
    let [tokens, size, length, sequences] = [batch.tokens, batch.size, batch.length, batch.completions.filter((c) => c.length > 0).length]
    if (this.#dp) {
      const parts = await this.#dp.gather([tokens, size, length, sequences])
      ;[tokens, size, length, sequences] = parts.reduce((a, p) => [a[0]! + p[0]!, a[1]! + p[1]!, Math.max(a[2]!, p[2]!), a[3]! + p[3]!], [0, 0, 0, 0])
    }
    switch (this.settings.lossAgg) {
      case 'token-mean':
        return tokens
      case 'seq-mean-token-sum-norm':
        return size * (this.settings.normLength ?? length)
      default:
        return sequences
    }
  }

  async #update(batch: RolloutBatch, reasons: Record<string, number>, timing: { start: number; sample: number; reward: number }): Promise<StepMetrics> {
    const s = this.settings
    if (batch.device !== this.policy.device) invalidArg(`a batch on ${this.policy.device}`, 'batch', `a batch on ${batch.device}`)
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
      const normalizer = await this.#normalizer(batch)
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
      let rewards = batch.rewards
      let [completions, tokens] = [batch.size, batch.tokens]
      if (this.#dp) {
        const parts = await this.#dp.gather({ rewards: Array.from(batch.rewards), loss, pgLoss, acc, completions, tokens })
        rewards = Float64Array.from(parts.flatMap((p) => p.rewards))
        ;[loss, pgLoss, completions, tokens] = [0, 0, 0, 0]
        for (const key of Object.keys(acc) as (keyof PassStats)[]) acc[key] = 0
        for (const p of parts) {
          ;[loss, pgLoss, completions, tokens] = [loss + p.loss, pgLoss + p.pgLoss, completions + p.completions, tokens + p.tokens]
          for (const key of Object.keys(acc) as (keyof PassStats)[]) acc[key] = key === 'ratioMax' ? Math.max(acc[key], p.acc[key]) : acc[key] + p.acc[key]
        }
      }
      const end = performance.now()
      const total = (end - timing.start) / 1000
      const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length
      const variance = rewards.length > 1 ? rewards.reduce((a, b) => a + (b - mean) ** 2, 0) / (rewards.length - 1) : 0
      const n = acc.tokens || 1
      return {
        step: this.#step,
        rewardMean: mean,
        rewardStd: Math.sqrt(variance),
        zeroStdFraction: batch.groupStats?.zeroStdFraction ?? 0,
        reasons,
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
        completionLength: tokens / completions,
        tokens,
        gradNorm,
        clipCoef,
        tokensPerSecond: tokens / total,
        time: {
          sample: timing.sample,
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

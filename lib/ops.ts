/**
 * The GRPO ops (docs/ops.md has the contract, docs/math.md the math). Each checks its inputs and reads its
 * options (lib/options.ts) here, then the native side checks what protects memory and runs the work on a
 * worker thread (Promise form) or on the calling thread (…Sync twin).
 */
import type { NativeGrpoLoss, NativeGroupAdvantages, NativeLossStats, NativePolicyLoss, NativeTensor, NativeTokenLogprobs } from '../types/binding.js'
import type { DType } from './dtype.js'
import { fail, invalidArg } from './errors.js'
import {
  ADVANTAGE_SCALES,
  BASELINES,
  FLOAT_DTYPES,
  LOSS_SCHEMA,
  resolveLossOptions,
  booleanOption,
  integerOption,
  numberOption,
  oneOfOption,
  parseOptions,
  temperature,
  valueOption,
  type AdvantageScale,
  type Baseline,
  type LossOptions,
  type OptionSpec,
  type Schema,
} from './options.js'
import { checkLossInputs, checkTokenInputs, dtype, inputsObject, optionalTensor, sameDevice, shape, tensor, tensorOption } from './validate.js'
import { native } from './native.js'
import { Tensor } from './tensor.js'

export type { KlEstimator, LossAggregation, LossKind, LossOptions, LossType, RatioLevel, RolloutCorrection } from './options.js'

export interface GrpoLossOptions extends LossOptions {
  /** Sampling temperature the logits are divided by (default 1). */
  temperature?: number
  /** dtype of the gradient: the logits' dtype (default) or 'f32'. */
  gradDtype?: DType
  /** Write the gradient over the logits (then gradDtype must be the logits' dtype). */
  inplace?: boolean
}

export const GRPO_LOSS_SCHEMA: Schema<GrpoLossOptions> = {
  ...LOSS_SCHEMA,
  temperature,
  gradDtype: oneOfOption(FLOAT_DTYPES) as OptionSpec<DType>,
  inplace: booleanOption(false),
}

/** The statistics returned with every loss (docs/math.md §6; docs/ops.md defines each). */
export type LossStats = NativeLossStats

export interface TokenLogprobsOptions {
  /** Default 1. */
  temperature?: number
  /** Also return the entropy of each position. Default false. */
  entropy?: boolean
  /** u8 [B, L]: positions with 0 are not read and get 0. */
  mask?: Tensor
}

export const TOKEN_LOGPROBS_SCHEMA: Schema<TokenLogprobsOptions> = {
  temperature,
  entropy: booleanOption(false),
  mask: tensorOption(),
}

export interface TokenLogprobsResult {
  logp: Tensor
  lse: Tensor
  entropy?: Tensor
}

export interface GroupAdvantagesOptions {
  /** Consecutive groups of this many rewards (exactly one of groupSize and groupIds). */
  groupSize?: number
  /** The group of each reward: K integers, any order, groups of any size. */
  groupIds?: Tensor | ArrayLike<number>
  /** Default 'mean'. */
  baseline?: Baseline
  /** Default 'group'. */
  scale?: AdvantageScale
  /** Added to the standard deviation, default 1e-6. */
  eps?: number
  /** 'error' (default) or 'exclude' (a non-finite reward gets A = 0 and no say in the statistics). */
  nonFinite?: 'error' | 'exclude'
}

export const GROUP_ADVANTAGES_SCHEMA: Schema<GroupAdvantagesOptions> = {
  groupSize: { ...integerOption(1, undefined, 'a positive integer'), nullable: true },
  groupIds: valueOption<Tensor | ArrayLike<number>>('a Tensor or an array of numbers', () => true),
  baseline: oneOfOption(BASELINES, 'mean'),
  scale: oneOfOption(ADVANTAGE_SCALES, 'group'),
  eps: numberOption('a finite number >= 0', (v) => v >= 0, 1e-6) as OptionSpec<number>,
  nonFinite: oneOfOption(['error', 'exclude'] as const, 'error'),
}

export interface GroupAdvantagesResult {
  advantages: Tensor
  groupIds: Int32Array
  groupMean: Float64Array
  groupStd: Float64Array
  zeroStdFraction: number
}

export interface PolicyLossInputs {
  logp: Tensor
  oldLogp?: Tensor
  /** The sampler's log-probs of the same tokens (f32 [B, L]), read by the rolloutCorrection option. */
  rolloutLogp?: Tensor
  refLogp?: Tensor
  advantages: Tensor
  mask?: Tensor
  entropy?: Tensor
}

export interface PolicyLossResult {
  loss: number
  stats: LossStats
  gradLogp: Tensor
}

export interface GrpoLossInputs {
  logits: Tensor
  targets: Tensor
  mask?: Tensor
  oldLogp?: Tensor
  /** The sampler's log-probs of the same tokens (f32 [B, L]), read by the rolloutCorrection option. */
  rolloutLogp?: Tensor
  refLogp?: Tensor
  advantages: Tensor
}

export interface GrpoLossResult {
  loss: number
  stats: LossStats
  logp: Tensor
  gradLogits: Tensor
}

// ---------------------------------------------------------------------------------------------------------
// Input checks (shapes and dtypes: lib/validate.ts checkTokenInputs; the native side repeats the ones that
// protect memory).


function nativeOf(t: Tensor | undefined): NativeTensor | undefined {
  return t?.native
}

// ---------------------------------------------------------------------------------------------------------
// tokenLogprobs

function prepareTokenLogprobs(logits: Tensor, targets: Tensor, opts: TokenLogprobsOptions | undefined) {
  tensor(logits, 'logits')
  tensor(targets, 'targets')
  const o = parseOptions(TOKEN_LOGPROBS_SCHEMA, opts, 'tokenLogprobs options')
  dtype(logits, FLOAT_DTYPES, 'logits')
  if (logits.shape.length !== 3) fail('ERR_GRPO_SHAPE', 'a tensor of rank 3 [B, L, V]', 'logits', `shape [${logits.shape.join(', ')}]`)
  const [B, L] = logits.shape as [number, number, number]
  dtype(targets, ['i32'], 'targets')
  shape(targets, [B, L], 'targets')
  const mask = optionalTensor(o.mask, 'mask')
  if (mask) {
    dtype(mask, ['u8'], 'mask')
    shape(mask, [B, L], 'mask')
  }
  sameDevice(logits.device, targets, 'targets')
  sameDevice(logits.device, mask, 'mask')
  return { logits: logits.native, targets: targets.native, options: { temperature: o.temperature, entropy: o.entropy, mask: nativeOf(mask) } }
}

function wrapTokenLogprobs(r: NativeTokenLogprobs): TokenLogprobsResult {
  const out: TokenLogprobsResult = { logp: Tensor.fromNative(r.logp), lse: Tensor.fromNative(r.lse) }
  if (r.entropy) out.entropy = Tensor.fromNative(r.entropy)
  return out
}

/** Log-prob of each target under softmax(logits / T), the log-sum-exp, and optionally the entropy. */
export async function tokenLogprobs(logits: Tensor, targets: Tensor, opts?: TokenLogprobsOptions): Promise<TokenLogprobsResult> {
  const p = prepareTokenLogprobs(logits, targets, opts)
  return wrapTokenLogprobs(await native().tokenLogprobs(p.logits, p.targets, p.options, true))
}

export function tokenLogprobsSync(logits: Tensor, targets: Tensor, opts?: TokenLogprobsOptions): TokenLogprobsResult {
  const p = prepareTokenLogprobs(logits, targets, opts)
  return wrapTokenLogprobs(native().tokenLogprobs(p.logits, p.targets, p.options, false))
}

// ---------------------------------------------------------------------------------------------------------
// groupAdvantages

function asTensor(value: unknown, what: string, dt: 'f32' | 'i32'): { tensor: Tensor; owned: boolean } {
  if (value instanceof Tensor) return { tensor: tensor(value, what), owned: false }
  const isArrayLike = Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView))
  if (!isArrayLike) invalidArg('a Tensor or an array of numbers', what, value)
  const values = value as ArrayLike<number>
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    if (typeof v !== 'number') invalidArg('a number', `${what}[${i}]`, v)
    if (dt === 'i32' && (!Number.isInteger(v) || v < -2147483648 || v > 2147483647)) invalidArg('a 32-bit integer', `${what}[${i}]`, v)
  }
  return { tensor: Tensor.from(dt === 'f32' ? Float32Array.from(values) : Int32Array.from(values), [values.length], { dtype: dt }), owned: true }
}

function prepareGroupAdvantages(rewards: Tensor | ArrayLike<number>, opts: GroupAdvantagesOptions | undefined) {
  const o = parseOptions(GROUP_ADVANTAGES_SCHEMA, opts, 'groupAdvantages options')
  const hasSize = o.groupSize !== undefined && o.groupSize !== null
  const hasIds = o.groupIds !== undefined && o.groupIds !== null
  if (hasSize === hasIds) invalidArg('exactly one of groupSize and groupIds', 'groupAdvantages options', hasSize ? 'both' : 'neither')
  const owned: Tensor[] = []
  try {
    const r = asTensor(rewards, 'rewards', 'f32')
    if (r.owned) owned.push(r.tensor)
    dtype(r.tensor, ['f32'], 'rewards')
    if (r.tensor.shape.length !== 1) fail('ERR_GRPO_SHAPE', 'a tensor of rank 1 [K]', 'rewards', `shape [${r.tensor.shape.join(', ')}]`)
    const K = r.tensor.shape[0]!
    if (hasSize && K % o.groupSize! !== 0) fail('ERR_GRPO_SHAPE', `a number of rewards divisible by groupSize ${o.groupSize}`, 'rewards', `${K} rewards`)
    let ids: Tensor | undefined
    if (hasIds) {
      const g = asTensor(o.groupIds, 'groupIds', 'i32')
      if (g.owned) owned.push(g.tensor)
      ids = g.tensor
      dtype(ids, ['i32'], 'groupIds')
      shape(ids, [K], 'groupIds')
      sameDevice(r.tensor.device, ids, 'groupIds')
    }
    const nativeOptions = { ...o, groupSize: hasSize ? o.groupSize : undefined, groupIds: ids?.native }
    return { rewards: r.tensor.native, options: nativeOptions, owned }
  } catch (error) {
    for (const t of owned) t.dispose()
    throw error
  }
}

function wrapGroupAdvantages(r: NativeGroupAdvantages): GroupAdvantagesResult {
  return { ...r, advantages: Tensor.fromNative(r.advantages) }
}

/** Group-relative advantages of the rewards (docs/math.md §2), with per-group statistics. */
export async function groupAdvantages(rewards: Tensor | ArrayLike<number>, opts?: GroupAdvantagesOptions): Promise<GroupAdvantagesResult> {
  const p = prepareGroupAdvantages(rewards, opts)
  try {
    return wrapGroupAdvantages(await native().groupAdvantages(p.rewards, p.options, true))
  } finally {
    for (const t of p.owned) t.dispose()
  }
}

export function groupAdvantagesSync(rewards: Tensor | ArrayLike<number>, opts?: GroupAdvantagesOptions): GroupAdvantagesResult {
  const p = prepareGroupAdvantages(rewards, opts)
  try {
    return wrapGroupAdvantages(native().groupAdvantages(p.rewards, p.options, false))
  } finally {
    for (const t of p.owned) t.dispose()
  }
}

// ---------------------------------------------------------------------------------------------------------
// policyLoss

function preparePolicyLoss(inputs: PolicyLossInputs, opts: LossOptions | undefined) {
  const i = inputsObject(inputs, 'policyLoss inputs')
  const o = resolveLossOptions(parseOptions(LOSS_SCHEMA, opts, 'policyLoss options'), opts, 'policyLoss options')
  const logp = tensor(i.logp, 'logp')
  const advantages = tensor(i.advantages, 'advantages')
  const [oldLogp, refLogp, rolloutLogp, mask, entropy] = [
    optionalTensor(i.oldLogp, 'oldLogp'),
    optionalTensor(i.refLogp, 'refLogp'),
    optionalTensor(i.rolloutLogp, 'rolloutLogp'),
    optionalTensor(i.mask, 'mask'),
    optionalTensor(i.entropy, 'entropy'),
  ]
  dtype(logp, ['f32'], 'logp')
  if (logp.shape.length !== 2) fail('ERR_GRPO_SHAPE', 'a tensor of rank 2 [B, L]', 'logp', `shape [${logp.shape.join(', ')}]`)
  const [B, L] = logp.shape as [number, number]
  checkTokenInputs(B, L, logp.device, { mask, oldLogp, refLogp, rolloutLogp, advantages })
  if (entropy) {
    dtype(entropy, ['f32'], 'entropy')
    shape(entropy, [B, L], 'entropy')
    sameDevice(logp.device, entropy, 'entropy')
  }
  checkLossInputs(o, { oldLogp, refLogp, rolloutLogp })
  if (o.topEntropyQuantile! < 1 && !entropy) {
    invalidArg('an entropy tensor (topEntropyQuantile < 1 selects tokens by entropy)', 'entropy', undefined)
  }
  const nativeInputs = {
    logp: logp.native,
    advantages: advantages.native,
    oldLogp: nativeOf(oldLogp),
    refLogp: nativeOf(refLogp),
    rolloutLogp: nativeOf(rolloutLogp),
    mask: nativeOf(mask),
    entropy: nativeOf(entropy),
  }
  return { inputs: nativeInputs, options: o }
}

function wrapPolicyLoss(r: NativePolicyLoss): PolicyLossResult {
  return { loss: r.loss, stats: r.stats, gradLogp: Tensor.fromNative(r.gradLogp) }
}

/** The GRPO loss from per-token log-probs (docs/math.md §3-4), with ∂loss/∂logp. */
export async function policyLoss(inputs: PolicyLossInputs, opts?: LossOptions): Promise<PolicyLossResult> {
  const p = preparePolicyLoss(inputs, opts)
  return wrapPolicyLoss(await native().policyLoss(p.inputs, p.options, true))
}

export function policyLossSync(inputs: PolicyLossInputs, opts?: LossOptions): PolicyLossResult {
  const p = preparePolicyLoss(inputs, opts)
  return wrapPolicyLoss(native().policyLoss(p.inputs, p.options, false))
}

// ---------------------------------------------------------------------------------------------------------
// grpoLoss (fused)

function prepareGrpoLoss(inputs: GrpoLossInputs, opts: GrpoLossOptions | undefined) {
  const i = inputsObject(inputs, 'grpoLoss inputs')
  const o = resolveLossOptions(parseOptions(GRPO_LOSS_SCHEMA, opts, 'grpoLoss options'), opts, 'grpoLoss options')
  const logits = tensor(i.logits, 'logits')
  const targets = tensor(i.targets, 'targets')
  const advantages = tensor(i.advantages, 'advantages')
  const [oldLogp, refLogp, rolloutLogp, mask] = [
    optionalTensor(i.oldLogp, 'oldLogp'),
    optionalTensor(i.refLogp, 'refLogp'),
    optionalTensor(i.rolloutLogp, 'rolloutLogp'),
    optionalTensor(i.mask, 'mask'),
  ]
  dtype(logits, FLOAT_DTYPES, 'logits')
  if (logits.shape.length !== 3) fail('ERR_GRPO_SHAPE', 'a tensor of rank 3 [B, L, V]', 'logits', `shape [${logits.shape.join(', ')}]`)
  const [B, L] = logits.shape as [number, number, number]
  dtype(targets, ['i32'], 'targets')
  shape(targets, [B, L], 'targets')
  sameDevice(logits.device, targets, 'targets')
  checkTokenInputs(B, L, logits.device, { mask, oldLogp, refLogp, rolloutLogp, advantages })
  checkLossInputs(o, { oldLogp, refLogp, rolloutLogp })
  if (o.gradDtype !== undefined && o.gradDtype !== 'f32' && o.gradDtype !== logits.dtype) {
    invalidArg(`'f32' or '${logits.dtype}'`, 'gradDtype', o.gradDtype)
  }
  if (o.inplace && (o.gradDtype ?? logits.dtype) !== logits.dtype) {
    invalidArg(`gradDtype '${logits.dtype}' (the logits' dtype) with inplace`, 'gradDtype', o.gradDtype)
  }
  const nativeInputs = {
    logits: logits.native,
    targets: targets.native,
    advantages: advantages.native,
    oldLogp: nativeOf(oldLogp),
    refLogp: nativeOf(refLogp),
    rolloutLogp: nativeOf(rolloutLogp),
    mask: nativeOf(mask),
  }
  return { inputs: nativeInputs, options: o, logits }
}

function wrapGrpoLoss(r: NativeGrpoLoss, logits: Tensor, inplace: boolean): GrpoLossResult {
  let gradLogits: Tensor
  if (inplace) {
    r.gradLogits.dispose() // a second handle on the logits' own storage: hand back the caller's tensor instead
    gradLogits = logits
  } else {
    gradLogits = Tensor.fromNative(r.gradLogits)
  }
  return { loss: r.loss, stats: r.stats, logp: Tensor.fromNative(r.logp), gradLogits }
}

/**
 * The fused GRPO step on the logits: log-softmax, ratio, clip, KL, entropy, aggregation, and the gradient
 * with respect to the logits, in one pass over each row.
 */
export async function grpoLoss(inputs: GrpoLossInputs, opts?: GrpoLossOptions): Promise<GrpoLossResult> {
  const p = prepareGrpoLoss(inputs, opts)
  return wrapGrpoLoss(await native().grpoLoss(p.inputs, p.options, true), p.logits, p.options.inplace === true)
}

export function grpoLossSync(inputs: GrpoLossInputs, opts?: GrpoLossOptions): GrpoLossResult {
  const p = prepareGrpoLoss(inputs, opts)
  return wrapGrpoLoss(native().grpoLoss(p.inputs, p.options, false), p.logits, p.options.inplace === true)
}

export {
  linearGrpoLoss,
  linearGrpoLossSync,
  linearTokenLogprobs,
  linearTokenLogprobsSync,
  LINEAR_CHUNK_DEFAULTS,
  LINEAR_GRPO_LOSS_SCHEMA,
  LINEAR_TOKEN_LOGPROBS_SCHEMA,
  type LinearGrpoLossInputs,
  type LinearGrpoLossOptions,
  type LinearGrpoLossResult,
  type LinearHeadInputs,
  type LinearTokenLogprobsOptions,
  type LinearTokenLogprobsResult,
} from './linear-loss.js'

/**
 * The fused linear loss (docs/ops.md "Fused linear loss"): log-probs, the GRPO loss and its gradients computed
 * from the hidden states and the LM head, `logits = hidden · weightᵀ (+ bias)`, without ever holding the
 * [N, V] logits. The work runs in chunks of `chunkTokens` counted tokens × tiles of `chunkVocab` vocabulary
 * columns with an online log-sum-exp; the gradient pass recomputes each logit tile. The math is exactly
 * `grpoLoss` applied to `linear(hidden, weight, {bias})` (docs/math.md); only the memory differs.
 *
 * - `linearTokenLogprobs({hidden, weight, bias?, targets, mask?}, {temperature, entropy, headDtype, ...})`
 *   → `{logp, lse, entropy?}` [B, L]: old and reference log-probs without logits.
 * - `linearGrpoLoss({hidden, weight, bias?, targets, mask?, oldLogp?, refLogp?, advantages, gradWeight?,
 *   gradBias?}, options)` → `{loss, stats, logp, entropy?, gradHidden}`; `gradWeight` [V, H] and `gradBias` [V]
 *   (f32) receive `+=` the head's gradients in place, so micro-batches accumulate.
 *
 * `headDtype`: 'bf16' (default when hidden and weight are both bf16) rounds each logit to bf16 as a bf16
 * `linear` returns it (and the logit gradient to bf16 before the backward products, as a bf16 `grpoLoss`
 * would); 'f32' (the "fp32 LM head") keeps logits and their gradient in f32, widening bf16 operands exactly.
 * Sums are accumulated in f32 either way, the log-sum-exp per row in double.
 */
import type { NativeLinearGrpoLoss, NativeLossStats, NativeTensor, NativeTokenLogprobs } from '../types/binding.js'
import type { DType } from './dtype.js'
import { fail, invalidArg } from './errors.js'
import { native } from './native.js'
import { booleanOption, integerOption, LOSS_SCHEMA, oneOfOption, parseOptions, resolveLossOptions, temperature, type LossOptions, type OptionSpec, type Schema } from './options.js'
import { Tensor } from './tensor.js'
import { checkLossInputs, checkTokenInputs, dtype, inputsObject, optionalTensor, sameDevice, shape, tensor } from './validate.js'

type LossStats = NativeLossStats

/** As ops.tokenLogprobs returns it: f32 [B, L] each. */
export interface LinearTokenLogprobsResult {
  logp: Tensor
  lse: Tensor
  entropy?: Tensor
}
type TokenLogprobsResult = LinearTokenLogprobsResult

type HeadDtype = 'f32' | 'bf16'

/**
 * Default chunk sizes per device. CPU: at most 4096 tokens × 4096 columns, the tokens halved for wider heads so
 * that chunkTokens · H stays within 4M (4096 tokens up to H = 1024, 2048 up to 2048, 1024 beyond: see
 * linearChunkDefaults). The CPU backend never stores an f32 logit tile (the GEMM's epilogue turns each tile into
 * row statistics or into dZ while it is in cache), so the temporary memory is about
 * chunkTokens · (2 · chunkVocab + 4 · H) bytes for a bf16 head (a 32 MiB dZ tile and a 14 MiB f32 gradient
 * accumulator at H = 896), the gathered hidden rows where a mask breaks a chunk, and the GEMM's packed panels.
 * Larger chunks mean fewer passes over the head's weight and its gradient (each chunk packs W twice and reads and
 * writes gradWeight once): measured on 2 Xeon cores at H = 896, N = 8192 (bench/README.md). A `chunkVocab` of V
 * or more asks the CPU backend for the whole-vocabulary mode (no recomputed logits, where the options allow it:
 * docs/ops.md); it is not the default: gradWeight is read and written once per chunk of ~138 tokens there.
 */
export const LINEAR_CHUNK_DEFAULTS: Readonly<Record<'cpu' | 'cuda', { chunkTokens: number; chunkVocab: number }>> = {
  cpu: { chunkTokens: 4096, chunkVocab: 4096 },
  cuda: { chunkTokens: 4096, chunkVocab: 16384 },
}

/** The default chunks for a head of width H on a device: LINEAR_CHUNK_DEFAULTS, on the CPU with the tokens halved
 * per doubling of H past 1024 (chunkTokens · H ≤ 4M, at least 1024 tokens). */
export function linearChunkDefaults(device: 'cpu' | 'cuda', H: number): { chunkTokens: number; chunkVocab: number } {
  const d = LINEAR_CHUNK_DEFAULTS[device]
  if (device !== 'cpu') return { ...d }
  let chunkTokens = d.chunkTokens
  while (chunkTokens > 1024 && chunkTokens * H > 4 * 1024 * 1024) chunkTokens /= 2
  return { chunkTokens, chunkVocab: d.chunkVocab }
}

interface HeadOptions {
  /** Sampling temperature the logits are divided by (default 1). */
  temperature?: number
  /** Precision of the head: 'bf16' (default when hidden and weight are bf16) or 'f32' (the fp32 LM head). */
  headDtype?: HeadDtype
  /** Counted tokens per chunk (default per device, LINEAR_CHUNK_DEFAULTS). */
  chunkTokens?: number
  /** Vocabulary columns per tile (default per device). */
  chunkVocab?: number
}

export interface LinearTokenLogprobsOptions extends HeadOptions {
  /** Also return the entropy of each position. Default false. */
  entropy?: boolean
}

export interface LinearGrpoLossOptions extends LossOptions, HeadOptions {
  /** dtype of gradHidden: hidden's dtype (default) or 'f32'. */
  gradDtype?: DType
  /** Also return the entropy of each position. Default false. */
  entropy?: boolean
}

const HEAD_SCHEMA: Schema<HeadOptions> = {
  temperature,
  headDtype: oneOfOption(['f32', 'bf16'] as const),
  chunkTokens: integerOption(1, undefined, 'a positive integer'),
  chunkVocab: integerOption(1, undefined, 'a positive integer'),
}

export const LINEAR_TOKEN_LOGPROBS_SCHEMA: Schema<LinearTokenLogprobsOptions> = { ...HEAD_SCHEMA, entropy: booleanOption(false) }

export const LINEAR_GRPO_LOSS_SCHEMA: Schema<LinearGrpoLossOptions> = {
  ...LOSS_SCHEMA,
  ...HEAD_SCHEMA,
  gradDtype: oneOfOption(['f32', 'bf16'] as const) as OptionSpec<DType>,
  entropy: booleanOption(false),
}

/** The head and the tokens: hidden [B·L, H] (or [B, L, H]), weight [V, H], bias [V], targets i32 [B, L]. */
export interface LinearHeadInputs {
  hidden: Tensor
  weight: Tensor
  bias?: Tensor
  targets: Tensor
  /** u8 [B, L]: rows with 0 are never read (they may hold anything) and get logp 0 and a zero gradient. */
  mask?: Tensor
}

export interface LinearGrpoLossInputs extends LinearHeadInputs {
  oldLogp?: Tensor
  refLogp?: Tensor
  /** f32 [B, L]: the sampler's log-probs, read only with the rolloutCorrection option (docs/math.md §3.3). */
  rolloutLogp?: Tensor
  advantages: Tensor
  /** f32 [V, H]: receives += ∂loss/∂weight. Omit for a frozen head. */
  gradWeight?: Tensor
  /** f32 [V]: receives += ∂loss/∂bias. */
  gradBias?: Tensor
}

export interface LinearGrpoLossResult {
  loss: number
  stats: LossStats
  logp: Tensor
  entropy?: Tensor
  /** ∂loss/∂hidden [B·L, H] (rows of masked positions are zero). */
  gradHidden: Tensor
}

function nativeOf(t: Tensor | undefined): NativeTensor | undefined {
  return t?.native
}

// Checks the head inputs; returns the native inputs, B, L, V, H and the resolved head options.
function prepareHead(i: LinearHeadInputs, o: HeadOptions) {
  const hidden = tensor(i.hidden, 'hidden')
  const weight = tensor(i.weight, 'weight')
  const targets = tensor(i.targets, 'targets')
  const bias = optionalTensor(i.bias, 'bias')
  const mask = optionalTensor(i.mask, 'mask')
  dtype(targets, ['i32'], 'targets')
  if (targets.shape.length !== 2) fail('ERR_GRPO_SHAPE', 'a tensor of rank 2 [B, L]', 'targets', `shape [${targets.shape.join(', ')}]`)
  const [B, L] = targets.shape as [number, number]
  dtype(hidden, ['f32', 'bf16'], 'hidden')
  dtype(weight, ['f32', 'bf16'], 'weight')
  if (hidden.shape.length < 1) fail('ERR_GRPO_SHAPE', 'a tensor [B·L, H]', 'hidden', 'a scalar')
  const H = hidden.shape[hidden.shape.length - 1]!
  if (hidden.size !== B * L * H) fail('ERR_GRPO_SHAPE', `[${B * L}, H] (B·L rows, from targets' shape)`, 'hidden', `a tensor of shape [${hidden.shape.join(', ')}]`)
  if (weight.shape.length !== 2 || weight.shape[1] !== H || weight.shape[0]! < 1) {
    fail('ERR_GRPO_SHAPE', `shape [V >= 1, ${H}] (H of hidden)`, 'weight', `a tensor of shape [${weight.shape.join(', ')}]`)
  }
  const V = weight.shape[0]!
  if (bias) {
    dtype(bias, ['f32', 'bf16'], 'bias')
    shape(bias, [V], 'bias')
  }
  if (mask) {
    dtype(mask, ['u8'], 'mask')
    shape(mask, [B, L], 'mask')
  }
  for (const [t, what] of [[weight, 'weight'], [targets, 'targets'], [bias, 'bias'], [mask, 'mask']] as const) sameDevice(hidden.device, t, what)
  const bothBf16 = hidden.dtype === 'bf16' && weight.dtype === 'bf16'
  const headDtype: HeadDtype = o.headDtype ?? (bothBf16 ? 'bf16' : 'f32')
  if (headDtype === 'bf16' && !bothBf16) invalidArg("bf16 hidden and weight (or headDtype 'f32')", "headDtype 'bf16'", `${hidden.dtype} hidden and ${weight.dtype} weight`)
  const chunk = linearChunkDefaults(hidden.device === 'cuda' ? 'cuda' : 'cpu', H)
  const options = {
    temperature: o.temperature,
    headDtype,
    chunkTokens: o.chunkTokens ?? chunk.chunkTokens,
    chunkVocab: o.chunkVocab ?? chunk.chunkVocab,
  }
  const inputs = { hidden: hidden.native, weight: weight.native, targets: targets.native, bias: nativeOf(bias), mask: nativeOf(mask) }
  return { inputs, options, B, L, V, H, hidden, mask }
}

function prepareTokenLogprobs(inputs: LinearHeadInputs, opts: LinearTokenLogprobsOptions | undefined) {
  const i = inputsObject(inputs, 'linearTokenLogprobs inputs')
  const o = parseOptions(LINEAR_TOKEN_LOGPROBS_SCHEMA, opts, 'linearTokenLogprobs options')
  const h = prepareHead(i, o)
  return { inputs: h.inputs, options: { ...h.options, entropy: o.entropy } }
}

function wrapTokenLogprobs(r: NativeTokenLogprobs): TokenLogprobsResult {
  const out: TokenLogprobsResult = { logp: Tensor.fromNative(r.logp), lse: Tensor.fromNative(r.lse) }
  if (r.entropy) out.entropy = Tensor.fromNative(r.entropy)
  return out
}

/** Log-probs of the targets (and lse, optional entropy) under softmax((hidden·Wᵀ + b) / T), in tiles. */
export async function linearTokenLogprobs(inputs: LinearHeadInputs, opts?: LinearTokenLogprobsOptions): Promise<TokenLogprobsResult> {
  const p = prepareTokenLogprobs(inputs, opts)
  return wrapTokenLogprobs(await native().linearTokenLogprobs(p.inputs, p.options, true))
}

export function linearTokenLogprobsSync(inputs: LinearHeadInputs, opts?: LinearTokenLogprobsOptions): TokenLogprobsResult {
  const p = prepareTokenLogprobs(inputs, opts)
  return wrapTokenLogprobs(native().linearTokenLogprobs(p.inputs, p.options, false))
}

function prepareLoss(inputs: LinearGrpoLossInputs, opts: LinearGrpoLossOptions | undefined) {
  const i = inputsObject(inputs, 'linearGrpoLoss inputs')
  const o = resolveLossOptions(parseOptions(LINEAR_GRPO_LOSS_SCHEMA, opts, 'linearGrpoLoss options'), opts, 'linearGrpoLoss options')
  const h = prepareHead(i, o)
  const advantages = tensor(i.advantages, 'advantages')
  const [oldLogp, refLogp, rolloutLogp, gradWeight, gradBias] = [
    optionalTensor(i.oldLogp, 'oldLogp'),
    optionalTensor(i.refLogp, 'refLogp'),
    optionalTensor(i.rolloutLogp, 'rolloutLogp'),
    optionalTensor(i.gradWeight, 'gradWeight'),
    optionalTensor(i.gradBias, 'gradBias'),
  ]
  checkTokenInputs(h.B, h.L, h.hidden.device, { mask: h.mask, oldLogp, refLogp, rolloutLogp, advantages })
  checkLossInputs(o, { oldLogp, refLogp, rolloutLogp })
  if (gradWeight) {
    dtype(gradWeight, ['f32'], 'gradWeight')
    shape(gradWeight, [h.V, h.H], 'gradWeight')
    sameDevice(h.hidden.device, gradWeight, 'gradWeight')
  }
  if (gradBias) {
    if (!i.bias) invalidArg('a bias (gradBias is its gradient)', 'bias', undefined)
    dtype(gradBias, ['f32'], 'gradBias')
    shape(gradBias, [h.V], 'gradBias')
    sameDevice(h.hidden.device, gradBias, 'gradBias')
  }
  if (o.gradDtype !== undefined && o.gradDtype !== 'f32' && o.gradDtype !== h.hidden.dtype) invalidArg(`'f32' or '${h.hidden.dtype}'`, 'gradDtype', o.gradDtype)
  const nativeInputs = {
    ...h.inputs,
    advantages: advantages.native,
    oldLogp: nativeOf(oldLogp),
    refLogp: nativeOf(refLogp),
    rolloutLogp: nativeOf(rolloutLogp),
    gradWeight: nativeOf(gradWeight),
    gradBias: nativeOf(gradBias),
  }
  return { inputs: nativeInputs, options: { ...o, ...h.options } }
}

function wrapLoss(r: NativeLinearGrpoLoss): LinearGrpoLossResult {
  const out: LinearGrpoLossResult = { loss: r.loss, stats: r.stats, logp: Tensor.fromNative(r.logp), gradHidden: Tensor.fromNative(r.gradHidden) }
  if (r.entropy) out.entropy = Tensor.fromNative(r.entropy)
  return out
}

/**
 * The GRPO loss of `grpoLoss(linear(hidden, weight, {bias}))` with the gradient with respect to the hidden states,
 * and the head's gradients added into `gradWeight` / `gradBias`, computed in tiles: no [N, V] tensor exists.
 */
export async function linearGrpoLoss(inputs: LinearGrpoLossInputs, opts?: LinearGrpoLossOptions): Promise<LinearGrpoLossResult> {
  const p = prepareLoss(inputs, opts)
  return wrapLoss(await native().linearGrpoLoss(p.inputs, p.options, true))
}

export function linearGrpoLossSync(inputs: LinearGrpoLossInputs, opts?: LinearGrpoLossOptions): LinearGrpoLossResult {
  const p = prepareLoss(inputs, opts)
  return wrapLoss(native().linearGrpoLoss(p.inputs, p.options, false))
}

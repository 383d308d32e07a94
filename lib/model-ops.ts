/**
 * The model ops: the kernels a trainable policy and its optimizer run on the policy's device.
 *
 * - `embeddingBagForward(weight [H, V], ids [..., F], {bias})` → logits `[..., V]`: each output row is
 *   `bias + Σ_f weight[ids[..., f]]`. Ids are i32, padded with -1 (a -1 adds nothing). This padded layout
 *   (rather than CSR offsets) keeps `[B, L, F]` aligned with the `[B, L]` positions of the loss.
 * - `embeddingBagBackward(gradLogits [..., V], ids, gradWeight [H, V], {gradBias, mask})`: the transpose,
 *   accumulated into `gradWeight` / `gradBias` in place. Deterministic: the same bits for any thread count.
 * - `sampleTokens(logits [..., V], {temperature, topP, greedy, seed, step, streams})` → `{tokens, logp}`:
 *   one token per row from softmax(logits / T) restricted to the top-p nucleus. `logp` is the token's log-prob
 *   under the full softmax(logits / T), before top-p truncation: the same quantity `ops.tokenLogprobs` and
 *   `ops.grpoLoss` compute at that temperature, so sampled log-probs can serve as `oldLogp` (ratio 1 on the
 *   first pass). With `greedy`, the token is the argmax (lowest id on ties). Row `r` draws its uniform from a
 *   hash of `(seed, step, streams[r] ?? r)`: reproducible, and independent of the thread count and of the
 *   other rows of the call.
 * - `gradNorm(grads, {maxNorm, scale})` → `{norm, coef}`: the global L2 norm (in double, fixed reduction
 *   order); `coef = min(1, maxNorm / (norm + 1e-6))`, applied in place when `scale` is true. A non-finite norm
 *   is returned as it is, with `coef = 1`.
 * - `adamw({params, grads, m, v}, {lr, beta1, beta2, eps, weightDecay, step, gradScale, zeroGrad})`: one
 *   fused AdamW step in place (decoupled weight decay, bias correction for step t ≥ 1; the gradient is read
 *   as `gradScale · grad`, so a clip coefficient costs no extra pass; `zeroGrad` clears the gradient).
 * - `zeroTensors(tensors)`: fills tensors with zeros in place.
 *
 * - The transformer ops (lib/transformer-ops.ts, re-exported here): rmsNorm, rope, swiglu, embedding, add, cast,
 *   attention (training and decode) and the KV-cache write, each with its backward.
 *
 * Every function checks its inputs and reads its options (lib/options.ts) here, the native side checks what
 * protects memory again, and errors are GrpoErrors ("Expected X for Y but received Z"). Each has a Promise
 * form and a …Sync twin.
 */
import type { NativeTensor } from '../types/binding.js'
import { fail, invalidArg } from './errors.js'
import { native } from './native.js'
import {
  ADAMW_SCHEMA,
  booleanOption,
  counterOption,
  integerOption,
  numberOption,
  parseOptions,
  temperature,
  topP,
  type AdamWOptions,
  type OptionSpec,
  type Schema,
} from './options.js'
import { Tensor } from './tensor.js'
import { dtype, inputsObject, optionalTensor, sameDevice, shape, tensor, tensorOption } from './validate.js'

export * from './transformer-ops.js'

export interface EmbeddingBagForwardOptions {
  /** f32 [V], added to every row. */
  bias?: Tensor
}

export const EMBEDDING_BAG_FORWARD_SCHEMA: Schema<EmbeddingBagForwardOptions> = { bias: tensorOption() }

export interface EmbeddingBagBackwardOptions {
  /** f32 [V]: receives the sum of the gradient rows. */
  gradBias?: Tensor
  /** u8 with the ids' leading shape: rows with 0 are skipped (their gradient rows must be zero anyway). */
  mask?: Tensor
}

export const EMBEDDING_BAG_BACKWARD_SCHEMA: Schema<EmbeddingBagBackwardOptions> = { gradBias: tensorOption(), mask: tensorOption() }

export interface SampleTokensOptions {
  /** Default 1; finite and > 0. */
  temperature?: number
  /** Nucleus mass in (0, 1]; default 1 (no truncation). */
  topP?: number
  /** Take the argmax instead of drawing. Default false. */
  greedy?: boolean
  /** Integers in [0, 2^53): the draw of row r is a function of (seed, step, stream of r). */
  seed?: number
  step?: number
  /** i32 with the logits' leading shape: the stream of each row (default: the row index). */
  streams?: Tensor
}

export const SAMPLE_TOKENS_SCHEMA: Schema<SampleTokensOptions> = {
  temperature,
  topP,
  greedy: booleanOption(false),
  seed: counterOption(0),
  step: counterOption(0),
  streams: tensorOption(),
}

export interface SampledTokens {
  /** i32, the logits' leading shape. */
  tokens: Tensor
  /** f32: log-prob of each token under softmax(logits / T) (before top-p). */
  logp: Tensor
}

export interface GradNormOptions {
  /** Clip threshold (> 0). Without it coef is 1. */
  maxNorm?: number
  /** Multiply the gradients by coef in place. Default false. */
  scale?: boolean
}

export const GRAD_NORM_SCHEMA: Schema<GradNormOptions> = {
  maxNorm: numberOption('a finite number > 0', (v) => v > 0) as OptionSpec<number>,
  scale: booleanOption(false),
}

export interface GradNormResult {
  norm: number
  coef: number
}

export interface AdamWTensors {
  params: readonly Tensor[]
  grads: readonly Tensor[]
  m: readonly Tensor[]
  v: readonly Tensor[]
}

/** One fused step: the AdamW hyperparameters (lib/options.ts, without maxGradNorm, which the AdamW class applies). */
export interface AdamWStepOptions extends Omit<AdamWOptions, 'maxGradNorm'> {
  /** The step number t ≥ 1 (bias correction). Default 1. */
  step?: number
  /** The gradient is read as gradScale · grad (e.g. a clip coefficient). Default 1. */
  gradScale?: number
  /** Set the gradients to zero after the step. Default false. */
  zeroGrad?: boolean
}

const { maxGradNorm: _, ...ADAMW_HYPERPARAMETERS } = ADAMW_SCHEMA

export const ADAMW_STEP_SCHEMA: Schema<AdamWStepOptions> = {
  ...ADAMW_HYPERPARAMETERS,
  step: integerOption(1, 1),
  gradScale: numberOption('a finite number >= 0', (v) => v >= 0, 1) as OptionSpec<number>,
  zeroGrad: booleanOption(false),
}

// ---------------------------------------------------------------------------------------------------------

function tensorList(value: unknown, what: string): Tensor[] {
  if (!Array.isArray(value)) invalidArg('an array of Tensors', what, value)
  const list = value.map((t, i) => tensor(t, `${what}[${i}]`))
  for (const [i, t] of list.entries()) sameDevice(list[0]!.device, t, `${what}[${i}]`)
  return list
}

function table(t: Tensor, what: string): [number, number] {
  dtype(t, ['f32'], what)
  if (t.shape.length !== 2 || t.shape[0]! < 1 || t.shape[1]! < 1) {
    fail('ERR_GRPO_SHAPE', 'a non-empty [H, V] table', what, `a tensor of shape [${t.shape.join(', ')}]`)
  }
  return t.shape as [number, number]
}

function featureIds(ids: Tensor): number[] {
  dtype(ids, ['i32'], 'ids')
  if (ids.shape.length < 2) fail('ERR_GRPO_SHAPE', 'a tensor of rank >= 2 [..., F]', 'ids', `a tensor of shape [${ids.shape.join(', ')}]`)
  return ids.shape.slice(0, -1)
}

// ---------------------------------------------------------------------------------------------------------
// embedding bag

function prepareForward(weight: Tensor, ids: Tensor, opts: EmbeddingBagForwardOptions | undefined) {
  tensor(weight, 'weight')
  tensor(ids, 'ids')
  const o = parseOptions(EMBEDDING_BAG_FORWARD_SCHEMA, opts, 'embeddingBagForward options')
  const [, V] = table(weight, 'weight')
  featureIds(ids)
  sameDevice(weight.device, ids, 'ids')
  const bias = optionalTensor(o.bias, 'bias')
  if (bias) {
    dtype(bias, ['f32'], 'bias')
    shape(bias, [V], 'bias')
    sameDevice(weight.device, bias, 'bias')
  }
  return { weight: weight.native, ids: ids.native, options: { bias: bias?.native } }
}

/** logits[..., :] = bias + Σ_f weight[ids[..., f], :] (ids padded with -1). */
export async function embeddingBagForward(weight: Tensor, ids: Tensor, opts?: EmbeddingBagForwardOptions): Promise<Tensor> {
  const p = prepareForward(weight, ids, opts)
  return Tensor.fromNative(await native().embeddingBagForward(p.weight, p.ids, p.options, true))
}

export function embeddingBagForwardSync(weight: Tensor, ids: Tensor, opts?: EmbeddingBagForwardOptions): Tensor {
  const p = prepareForward(weight, ids, opts)
  return Tensor.fromNative(native().embeddingBagForward(p.weight, p.ids, p.options, false))
}

function prepareBackward(gradLogits: Tensor, ids: Tensor, gradWeight: Tensor, opts: EmbeddingBagBackwardOptions | undefined) {
  tensor(gradLogits, 'gradLogits')
  tensor(ids, 'ids')
  tensor(gradWeight, 'gradWeight')
  const o = parseOptions(EMBEDDING_BAG_BACKWARD_SCHEMA, opts, 'embeddingBagBackward options')
  const [, V] = table(gradWeight, 'gradWeight')
  const lead = featureIds(ids)
  dtype(gradLogits, ['f32'], 'gradLogits')
  shape(gradLogits, [...lead, V], 'gradLogits')
  const gradBias = optionalTensor(o.gradBias, 'gradBias')
  if (gradBias) {
    dtype(gradBias, ['f32'], 'gradBias')
    shape(gradBias, [V], 'gradBias')
  }
  const mask = optionalTensor(o.mask, 'mask')
  if (mask) {
    dtype(mask, ['u8'], 'mask')
    shape(mask, lead, 'mask')
  }
  for (const [t, what] of [[gradLogits, 'gradLogits'], [ids, 'ids'], [gradBias, 'gradBias'], [mask, 'mask']] as const) {
    sameDevice(gradWeight.device, t, what)
  }
  return {
    args: [gradLogits.native, ids.native, gradWeight.native] as const,
    options: { gradBias: gradBias?.native, mask: mask?.native },
  }
}

/** gradWeight[h] += Σ of the gradient rows whose ids contain h; gradBias += Σ of all rows. In place. */
export async function embeddingBagBackward(
  gradLogits: Tensor,
  ids: Tensor,
  gradWeight: Tensor,
  opts?: EmbeddingBagBackwardOptions,
): Promise<void> {
  const p = prepareBackward(gradLogits, ids, gradWeight, opts)
  await native().embeddingBagBackward(...p.args, p.options, true)
}

export function embeddingBagBackwardSync(gradLogits: Tensor, ids: Tensor, gradWeight: Tensor, opts?: EmbeddingBagBackwardOptions): void {
  const p = prepareBackward(gradLogits, ids, gradWeight, opts)
  native().embeddingBagBackward(...p.args, p.options, false)
}

// ---------------------------------------------------------------------------------------------------------
// sampling

function prepareSample(logits: Tensor, opts: SampleTokensOptions | undefined) {
  tensor(logits, 'logits')
  const o = parseOptions(SAMPLE_TOKENS_SCHEMA, opts, 'sampleTokens options')
  dtype(logits, ['f32', 'bf16', 'f16'], 'logits')
  if (logits.shape.length < 1 || logits.shape[logits.shape.length - 1]! < 1) {
    fail('ERR_GRPO_SHAPE', 'a tensor [..., V] with V >= 1', 'logits', `a tensor of shape [${logits.shape.join(', ')}]`)
  }
  const streams = optionalTensor(o.streams, 'streams')
  if (streams) {
    dtype(streams, ['i32'], 'streams')
    shape(streams, logits.shape.slice(0, -1), 'streams')
    sameDevice(logits.device, streams, 'streams')
  }
  return { logits: logits.native, options: { ...o, streams: streams?.native } }
}

function wrapSample(r: { tokens: NativeTensor; logp: NativeTensor }): SampledTokens {
  return { tokens: Tensor.fromNative(r.tokens), logp: Tensor.fromNative(r.logp) }
}

/** One token per row of logits, with its log-prob under softmax(logits / T). */
export async function sampleTokens(logits: Tensor, opts?: SampleTokensOptions): Promise<SampledTokens> {
  const p = prepareSample(logits, opts)
  return wrapSample(await native().sampleTokens(p.logits, p.options, true))
}

export function sampleTokensSync(logits: Tensor, opts?: SampleTokensOptions): SampledTokens {
  const p = prepareSample(logits, opts)
  return wrapSample(native().sampleTokens(p.logits, p.options, false))
}

// ---------------------------------------------------------------------------------------------------------
// optimizer

function prepareGradNorm(grads: readonly Tensor[], opts: GradNormOptions | undefined) {
  const list = tensorList(grads, 'grads')
  list.forEach((t, i) => dtype(t, ['f32'], `grads[${i}]`))
  const o = parseOptions(GRAD_NORM_SCHEMA, opts, 'gradNorm options')
  return { grads: list.map((t) => t.native), options: o }
}

/** Global L2 norm of the gradients, and the clip coefficient for maxNorm (applied in place with scale). */
export async function gradNorm(grads: readonly Tensor[], opts?: GradNormOptions): Promise<GradNormResult> {
  const p = prepareGradNorm(grads, opts)
  return native().gradNorm(p.grads, p.options, true)
}

export function gradNormSync(grads: readonly Tensor[], opts?: GradNormOptions): GradNormResult {
  const p = prepareGradNorm(grads, opts)
  return native().gradNorm(p.grads, p.options, false)
}

function prepareAdamW(tensors: AdamWTensors, opts: AdamWStepOptions | undefined) {
  const t = inputsObject(tensors, 'adamw tensors')
  const params = tensorList(t.params, 'params')
  const lists = { grads: tensorList(t.grads, 'grads'), m: tensorList(t.m, 'm'), v: tensorList(t.v, 'v') }
  for (const [name, list] of Object.entries(lists)) {
    if (list.length !== params.length) {
      fail('ERR_GRPO_SHAPE', `${params.length} tensors (one per parameter)`, name, `${list.length} tensors`)
    }
  }
  params.forEach((p, i) => {
    dtype(p, ['f32'], `params[${i}]`)
    for (const [name, list] of Object.entries(lists)) {
      dtype(list[i]!, ['f32'], `${name}[${i}]`)
      shape(list[i]!, p.shape, `${name}[${i}]`)
      sameDevice(params[0]!.device, list[i], `${name}[${i}]`)
    }
  })
  const o = parseOptions(ADAMW_STEP_SCHEMA, opts, 'adamw options')
  const n = (list: Tensor[]) => list.map((x) => x.native)
  return { tensors: { params: n(params), grads: n(lists.grads), m: n(lists.m), v: n(lists.v) }, options: o }
}

/** One fused AdamW step on every (param, grad, m, v), in place. */
export async function adamw(tensors: AdamWTensors, opts?: AdamWStepOptions): Promise<void> {
  const p = prepareAdamW(tensors, opts)
  await native().adamw(p.tensors, p.options, true)
}

export function adamwSync(tensors: AdamWTensors, opts?: AdamWStepOptions): void {
  const p = prepareAdamW(tensors, opts)
  native().adamw(p.tensors, p.options, false)
}

/** Fills every tensor with zeros, in place. */
export async function zeroTensors(tensors: readonly Tensor[]): Promise<void> {
  await native().zeroTensors(tensorList(tensors, 'tensors').map((t) => t.native), true)
}

export function zeroTensorsSync(tensors: readonly Tensor[]): void {
  native().zeroTensors(tensorList(tensors, 'tensors').map((t) => t.native), false)
}

// ---------------------------------------------------------------------------------------------------------
// the linear layer (lib/linear.ts)
export { linear, linearSync, linearBackward, linearBackwardSync, type LinearOptions, type LinearBackwardOptions } from './linear.js'

/**
 * The transformer ops: the blocks of a Llama/Qwen decoder, forward and backward, on cpu, cuda and simt, in f32 or
 * bf16 (every sum in f32). Exported through `modelOps`. See docs/ops.md "Transformer ops" for the math and the
 * layouts; in short:
 *
 * - Activations are `[T, C]` over the T tokens of a batch: sequences packed back to back (or a padded `[B, L]`
 *   batch flattened). Attention takes `q [T, Hq, D]`, `k`/`v [T, Hkv, D]` (rank 4 `[B, L, H, D]` works too: B
 *   sequences of L tokens), and `seqStarts`/`seqLens` (i32 `[B]`): sequence b is the tokens `[start, start +
 *   len)`, sequences never overlap, tokens outside every sequence are padding (output 0, lse −∞, no gradient).
 *   q head h reads kv head `h / (Hq / Hkv)` (Hugging Face's `repeat_kv` order).
 * - The KV cache is `[B, Hkv, S, D]` per layer: `kvCacheWrite` copies prompt tokens (prefill) or one new token per
 *   sequence (decode) into it, `attentionDecode` attends one query per sequence to its first `cacheLens[b]` rows.
 * - Gradients of activations are new tensors; gradients of weights (`rmsNormBackward`'s `gradWeight`,
 *   `embeddingBackward`) are f32 and accumulated in place, in a fixed order (the same bits for any thread count).
 */
import type { NativeTensor } from '../types/binding.js'
import type { DType } from './dtype.js'
import { fail, invalidArg } from './errors.js'
import { native } from './native.js'
import { Tensor } from './tensor.js'
import { numberOption, parseOptions, valueOption, type Schema } from './options.js'
import { dtype, optionalTensor, sameDevice, shape, tensor } from './validate.js'

const FLOATS: readonly DType[] = ['f32', 'bf16']

export interface RmsNormOptions {
  /** Added to mean(x²) under the square root. Default 1e-6 (Qwen2's `rms_norm_eps`); finite, >= 0. */
  eps?: number
}

export interface RmsNormResult {
  /** x · rstd · weight, in x's dtype and shape. */
  out: Tensor
  /** f32, x's shape without the last dimension: 1 / sqrt(mean(x²) + eps), for the backward. */
  rstd: Tensor
}

export interface RmsNormBackwardOptions {
  /** f32 [C]: receives Σ over rows of gradOut · x · rstd (accumulated). */
  gradWeight?: Tensor
}

export interface RopeOptions {
  /** The base of the frequencies theta^(−2i/D) (`rope_theta`). Default 10000; finite, > 0. */
  theta?: number
  /**
   * The D/2 inverse frequencies themselves, replacing theta^(−2i/D): scaled rope (Hugging Face's `rope_scaling`,
   * e.g. Llama 3's "llama3" or "linear" types) computes them once per model. Finite numbers.
   */
  inverseFrequencies?: ArrayLike<number>
}

export interface SwigluGrads {
  /** The gate's gradient; with the fused form, the gradient of the whole `[..., 2F]` input. */
  gradGate: Tensor
  /** The up projection's gradient (absent in the fused form). */
  gradUp?: Tensor
}

export interface AttentionOptions {
  /** i32 [B]: first token of each sequence (with seqLens). Default: B equal slots of T / B tokens. */
  seqStarts?: Tensor
  /** i32 [B]: tokens of each sequence. Default: the whole slot. */
  seqLens?: Tensor
  /** Multiplies q·k. Default 1 / sqrt(D). */
  scale?: number
}

export interface AttentionResult {
  /** q's shape and dtype. */
  out: Tensor
  /** f32 [T, Hq] (q's shape without D): natural-log log-sum-exp of each row's scaled scores. */
  lse: Tensor
}

export interface AttentionGrads {
  gradQ: Tensor
  gradK: Tensor
  gradV: Tensor
}

export interface AttentionDecodeOptions {
  /** Multiplies q·k. Default 1 / sqrt(D). */
  scale?: number
}

export interface KvCacheWriteOptions {
  /** i32 [B]: the first cache position written for each sequence (0 for a prefill, the current length for a decode step). */
  cacheStarts: Tensor
  /** i32 [B] with seqLens: the tokens of k/v that go to each sequence. Default: B equal slots of T / B tokens. */
  seqStarts?: Tensor
  seqLens?: Tensor
}

// ---------------------------------------------------------------------------------------------------------
// option schemas (lib/options.ts): each rule once; an unknown key names the nearest known one. Tensors in options
// are checked against the other inputs by the functions below.

const anything = (v: unknown) => v !== null
const positiveScale = numberOption('a finite number > 0', (v) => v > 0) as ReturnType<typeof numberOption<number>>

const RMS_NORM_SCHEMA: Schema<RmsNormOptions> = {
  eps: numberOption('a finite number >= 0', (v) => v >= 0, 1e-6) as Schema<RmsNormOptions>['eps'],
}
const RMS_NORM_BACKWARD_SCHEMA: Schema<RmsNormBackwardOptions> = { gradWeight: valueOption('an f32 Tensor [C]', anything) }
const ROPE_SCHEMA: Schema<RopeOptions> = {
  theta: numberOption('a finite number > 0', (v) => v > 0, 10000) as Schema<RopeOptions>['theta'],
  inverseFrequencies: valueOption('an array of finite numbers', (v) => {
    const a = v as ArrayLike<unknown>
    return typeof a === 'object' && a !== null && typeof a.length === 'number' && Array.from(a).every((x) => typeof x === 'number' && Number.isFinite(x))
  }),
}
const ATTENTION_SCHEMA: Schema<AttentionOptions> = {
  seqStarts: valueOption('an i32 Tensor [B]', anything),
  seqLens: valueOption('an i32 Tensor [B]', anything),
  scale: positiveScale as Schema<AttentionOptions>['scale'],
}
const DECODE_SCHEMA: Schema<AttentionDecodeOptions> = { scale: positiveScale as Schema<AttentionDecodeOptions>['scale'] }
const CACHE_WRITE_SCHEMA: Schema<KvCacheWriteOptions> = {
  cacheStarts: valueOption('an i32 Tensor [B] of cache positions', anything),
  seqStarts: valueOption('an i32 Tensor [B]', anything),
  seqLens: valueOption('an i32 Tensor [B]', anything),
}

// ---------------------------------------------------------------------------------------------------------
// argument checks (the native side checks memory safety again)

function floatTensor(value: unknown, what: string): Tensor {
  const t = tensor(value, what)
  dtype(t, FLOATS, what)
  return t
}

function like(t: Tensor | undefined, ref: Tensor, what: string, dims: readonly number[] = ref.shape): void {
  if (!t) return
  dtype(t, [ref.dtype], what)
  shape(t, dims, what)
  sameDevice(ref.device, t, what)
}

function i32(value: unknown, what: string, dims: readonly number[], device: string): Tensor {
  const t = tensor(value, what)
  dtype(t, ['i32'], what)
  shape(t, dims, what)
  sameDevice(device, t, what)
  return t
}

function rankAtLeast(t: Tensor, rank: number, layout: string, what: string): void {
  if (t.shape.length < rank) fail('ERR_GRPO_SHAPE', `a tensor of rank >= ${rank} ${layout}`, what, `a tensor of shape [${t.shape.join(', ')}]`)
}

function headDim(t: Tensor, what: string): number {
  const D = t.shape[t.shape.length - 1]!
  if (D < 16 || D > 256 || D % 16 !== 0) {
    fail('ERR_GRPO_SHAPE', 'a head dimension that is a multiple of 16 in [16, 256]', what, `a tensor of shape [${t.shape.join(', ')}]`)
  }
  return D
}

function nativeOf(t: Tensor | undefined): NativeTensor | undefined {
  return t?.native
}

// ---------------------------------------------------------------------------------------------------------
// RMSNorm

function prepareRmsNorm(x: Tensor, weight: Tensor, opts: RmsNormOptions | undefined) {
  floatTensor(x, 'x')
  rankAtLeast(x, 1, '[..., C]', 'x')
  floatTensor(weight, 'weight')
  shape(weight, [x.shape[x.shape.length - 1]!], 'weight')
  sameDevice(x.device, weight, 'weight')
  const o = parseOptions(RMS_NORM_SCHEMA, opts, 'rmsNorm options')
  return [x.native, weight.native, { eps: o.eps }] as const
}

function wrapNorm(r: { out: NativeTensor; rstd: NativeTensor }): RmsNormResult {
  return { out: Tensor.fromNative(r.out), rstd: Tensor.fromNative(r.rstd) }
}

/** y = x / sqrt(mean(x²) + eps) · weight over the last dimension (Llama/Qwen RMSNorm), with rstd for the backward. */
export async function rmsNorm(x: Tensor, weight: Tensor, opts?: RmsNormOptions): Promise<RmsNormResult> {
  return wrapNorm(await native().rmsNorm(...prepareRmsNorm(x, weight, opts), true))
}

export function rmsNormSync(x: Tensor, weight: Tensor, opts?: RmsNormOptions): RmsNormResult {
  return wrapNorm(native().rmsNorm(...prepareRmsNorm(x, weight, opts), false))
}

function prepareRmsNormBackward(gradOut: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, opts: RmsNormBackwardOptions | undefined) {
  floatTensor(x, 'x')
  rankAtLeast(x, 1, '[..., C]', 'x')
  tensor(gradOut, 'gradOut')
  like(gradOut, x, 'gradOut')
  floatTensor(weight, 'weight')
  const C = x.shape[x.shape.length - 1]!
  shape(weight, [C], 'weight')
  sameDevice(x.device, weight, 'weight')
  tensor(rstd, 'rstd')
  dtype(rstd, ['f32'], 'rstd')
  shape(rstd, x.shape.slice(0, -1), 'rstd')
  sameDevice(x.device, rstd, 'rstd')
  const o = parseOptions(RMS_NORM_BACKWARD_SCHEMA, opts, 'rmsNormBackward options')
  const gradWeight = optionalTensor(o.gradWeight, 'gradWeight')
  if (gradWeight) {
    dtype(gradWeight, ['f32'], 'gradWeight')
    shape(gradWeight, [C], 'gradWeight')
    sameDevice(x.device, gradWeight, 'gradWeight')
  }
  return [gradOut.native, x.native, weight.native, rstd.native, { gradWeight: nativeOf(gradWeight) }] as const
}

/** gradX of rmsNorm; with `gradWeight`, also adds the weight's gradient (f32) into it. */
export async function rmsNormBackward(gradOut: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, opts?: RmsNormBackwardOptions): Promise<Tensor> {
  return Tensor.fromNative(await native().rmsNormBackward(...prepareRmsNormBackward(gradOut, x, weight, rstd, opts), true))
}

export function rmsNormBackwardSync(gradOut: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, opts?: RmsNormBackwardOptions): Tensor {
  return Tensor.fromNative(native().rmsNormBackward(...prepareRmsNormBackward(gradOut, x, weight, rstd, opts), false))
}

// ---------------------------------------------------------------------------------------------------------
// rope

function prepareRope(x: Tensor, positions: Tensor, opts: RopeOptions | undefined, inverse: boolean, what: string) {
  floatTensor(x, what)
  rankAtLeast(x, 3, '[..., heads, D]', what)
  const D = x.shape[x.shape.length - 1]!
  if (D % 2 !== 0) fail('ERR_GRPO_SHAPE', 'an even head dimension', what, `a tensor of shape [${x.shape.join(', ')}]`)
  i32(positions, 'positions', x.shape.slice(0, -2), x.device)
  const o = parseOptions(ROPE_SCHEMA, opts, 'rope options')
  const inv = o.inverseFrequencies === undefined ? undefined : Array.from(o.inverseFrequencies)
  if (inv && inv.length !== D / 2) fail('ERR_GRPO_SHAPE', `${D / 2} inverse frequencies (D / 2)`, 'inverseFrequencies', `${inv.length} values`)
  return [x.native, positions.native, { theta: o.theta, inverse, inverseFrequencies: inv }] as const
}

/**
 * Rotary position embedding in Hugging Face's rotate-half convention on x `[..., heads, D]` with one position per
 * token (`positions` i32, x's shape without the last two dimensions): for i < D/2 and angle = pos · theta^(−2i/D),
 * `out[i] = x[i]·cos − x[i+D/2]·sin`, `out[i+D/2] = x[i+D/2]·cos + x[i]·sin`.
 */
export async function rope(x: Tensor, positions: Tensor, opts?: RopeOptions): Promise<Tensor> {
  return Tensor.fromNative(await native().rope(...prepareRope(x, positions, opts, false, 'x'), true))
}

export function ropeSync(x: Tensor, positions: Tensor, opts?: RopeOptions): Tensor {
  return Tensor.fromNative(native().rope(...prepareRope(x, positions, opts, false, 'x'), false))
}

/** rope's backward: the inverse rotation of gradOut (rope is orthogonal). */
export async function ropeBackward(gradOut: Tensor, positions: Tensor, opts?: RopeOptions): Promise<Tensor> {
  return Tensor.fromNative(await native().rope(...prepareRope(gradOut, positions, opts, true, 'gradOut'), true))
}

export function ropeBackwardSync(gradOut: Tensor, positions: Tensor, opts?: RopeOptions): Tensor {
  return Tensor.fromNative(native().rope(...prepareRope(gradOut, positions, opts, true, 'gradOut'), false))
}

// ---------------------------------------------------------------------------------------------------------
// SwiGLU

function gluShapes(gate: Tensor, up: Tensor | undefined): number[] {
  floatTensor(gate, up ? 'gate' : 'gateUp')
  rankAtLeast(gate, 1, '[..., F]', up ? 'gate' : 'gateUp')
  if (up) {
    tensor(up, 'up')
    like(up, gate, 'up')
    return [...gate.shape]
  }
  const F2 = gate.shape[gate.shape.length - 1]!
  if (F2 % 2 !== 0) fail('ERR_GRPO_SHAPE', 'an even last dimension (gate then up)', 'gateUp', `a tensor of shape [${gate.shape.join(', ')}]`)
  return [...gate.shape.slice(0, -1), F2 / 2]
}

function prepareSwiglu(gate: Tensor, up: Tensor | undefined) {
  gluShapes(gate, up)
  return [gate.native, up?.native] as const
}

/**
 * silu(gate) · up. With one argument `[..., 2F]` (the output of one GEMM against the concatenated gate_proj and
 * up_proj weights), the first F columns are the gate and the last F the up projection.
 */
export async function swiglu(gate: Tensor, up?: Tensor): Promise<Tensor> {
  return Tensor.fromNative(await native().swiglu(...prepareSwiglu(gate, up), true))
}

export function swigluSync(gate: Tensor, up?: Tensor): Tensor {
  return Tensor.fromNative(native().swiglu(...prepareSwiglu(gate, up), false))
}

function prepareSwigluBackward(gradOut: Tensor, gate: Tensor, up: Tensor | undefined) {
  const outShape = gluShapes(gate, up)
  tensor(gradOut, 'gradOut')
  like(gradOut, gate, 'gradOut', outShape)
  return [gradOut.native, gate.native, up?.native] as const
}

function wrapGlu(r: { gradGate: NativeTensor; gradUp?: NativeTensor }): SwigluGrads {
  return r.gradUp ? { gradGate: Tensor.fromNative(r.gradGate), gradUp: Tensor.fromNative(r.gradUp) } : { gradGate: Tensor.fromNative(r.gradGate) }
}

/** Gradients of swiglu: d gate = g·up·σ(gate)·(1 + gate·(1 − σ(gate))), d up = g·silu(gate). */
export async function swigluBackward(gradOut: Tensor, gate: Tensor, up?: Tensor): Promise<SwigluGrads> {
  return wrapGlu(await native().swigluBackward(...prepareSwigluBackward(gradOut, gate, up), true))
}

export function swigluBackwardSync(gradOut: Tensor, gate: Tensor, up?: Tensor): SwigluGrads {
  return wrapGlu(native().swigluBackward(...prepareSwigluBackward(gradOut, gate, up), false))
}

// ---------------------------------------------------------------------------------------------------------
// embedding

function prepareEmbedding(weight: Tensor, ids: Tensor) {
  floatTensor(weight, 'weight')
  if (weight.shape.length !== 2) fail('ERR_GRPO_SHAPE', 'a [V, C] table', 'weight', `a tensor of shape [${weight.shape.join(', ')}]`)
  tensor(ids, 'ids')
  dtype(ids, ['i32'], 'ids')
  sameDevice(weight.device, ids, 'ids')
  return [weight.native, ids.native] as const
}

/** out[..., :] = weight[ids[...], :] (ids i32 in [0, V)); out has ids' shape plus C, in weight's dtype. */
export async function embedding(weight: Tensor, ids: Tensor): Promise<Tensor> {
  return Tensor.fromNative(await native().embedding(...prepareEmbedding(weight, ids), true))
}

export function embeddingSync(weight: Tensor, ids: Tensor): Tensor {
  return Tensor.fromNative(native().embedding(...prepareEmbedding(weight, ids), false))
}

function prepareEmbeddingBackward(gradOut: Tensor, ids: Tensor, gradWeight: Tensor) {
  tensor(gradWeight, 'gradWeight')
  dtype(gradWeight, ['f32'], 'gradWeight')
  if (gradWeight.shape.length !== 2) fail('ERR_GRPO_SHAPE', 'a [V, C] table', 'gradWeight', `a tensor of shape [${gradWeight.shape.join(', ')}]`)
  tensor(ids, 'ids')
  dtype(ids, ['i32'], 'ids')
  sameDevice(gradWeight.device, ids, 'ids')
  floatTensor(gradOut, 'gradOut')
  shape(gradOut, [...ids.shape, gradWeight.shape[1]!], 'gradOut')
  sameDevice(gradWeight.device, gradOut, 'gradOut')
  return [gradOut.native, ids.native, gradWeight.native] as const
}

/** gradWeight[ids[t]] += gradOut[t] (scatter-add, in increasing t for each row: deterministic). */
export async function embeddingBackward(gradOut: Tensor, ids: Tensor, gradWeight: Tensor): Promise<void> {
  await native().embeddingBackward(...prepareEmbeddingBackward(gradOut, ids, gradWeight), true)
}

export function embeddingBackwardSync(gradOut: Tensor, ids: Tensor, gradWeight: Tensor): void {
  native().embeddingBackward(...prepareEmbeddingBackward(gradOut, ids, gradWeight), false)
}

// ---------------------------------------------------------------------------------------------------------
// add, cast

function prepareAdd(a: Tensor, b: Tensor, inplace: boolean) {
  floatTensor(a, 'a')
  floatTensor(b, 'b')
  shape(b, a.shape, 'b')
  sameDevice(a.device, b, 'b')
  return [a.native, b.native, { inplace }] as const
}

/** a + b (the residual add); f32 and bf16 mix freely, the result has a's dtype. Its backward is the identity. */
export async function add(a: Tensor, b: Tensor): Promise<Tensor> {
  return Tensor.fromNative((await native().add(...prepareAdd(a, b, false), true))!)
}

export function addSync(a: Tensor, b: Tensor): Tensor {
  return Tensor.fromNative(native().add(...prepareAdd(a, b, false), false)!)
}

/** a += b in place (gradient accumulation, e.g. a bf16 gradient into an f32 one). */
export async function addInPlace(a: Tensor, b: Tensor): Promise<void> {
  await native().add(...prepareAdd(a, b, true), true)
}

export function addInPlaceSync(a: Tensor, b: Tensor): void {
  native().add(...prepareAdd(a, b, true), false)
}

function prepareCast(x: Tensor, to: unknown) {
  floatTensor(x, 'x')
  if (to !== 'f32' && to !== 'bf16') invalidArg("'f32' or 'bf16'", 'dtype', to)
  return [x.native, { dtype: to }] as const
}

/** x converted to `dtype` (f32 ↔ bf16, rounding to nearest even): bf16 compute copies of f32 master weights. */
export async function cast(x: Tensor, to: 'f32' | 'bf16'): Promise<Tensor> {
  return Tensor.fromNative((await native().cast(...prepareCast(x, to), true))!)
}

export function castSync(x: Tensor, to: 'f32' | 'bf16'): Tensor {
  return Tensor.fromNative(native().cast(...prepareCast(x, to), false)!)
}

function prepareCastInto(x: Tensor, out: Tensor) {
  floatTensor(x, 'x')
  floatTensor(out, 'out')
  shape(out, x.shape, 'out')
  sameDevice(x.device, out, 'out')
  return [x.native, { out: out.native }] as const
}

/** Writes x converted to out's dtype into out (refreshes a compute copy without allocating). */
export async function castInto(x: Tensor, out: Tensor): Promise<void> {
  await native().cast(...prepareCastInto(x, out), true)
}

export function castIntoSync(x: Tensor, out: Tensor): void {
  native().cast(...prepareCastInto(x, out), false)
}

// ---------------------------------------------------------------------------------------------------------
// attention

function attentionArgs(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions | undefined, what: string) {
  floatTensor(q, 'q')
  if (q.shape.length !== 3 && q.shape.length !== 4) {
    fail('ERR_GRPO_SHAPE', 'a tensor of rank 3 [T, heads, D] or 4 [B, L, heads, D]', 'q', `a tensor of shape [${q.shape.join(', ')}]`)
  }
  headDim(q, 'q')
  const rank = q.shape.length
  const Hq = q.shape[rank - 2]!
  tensor(k, 'k')
  dtype(k, [q.dtype], 'k')
  const Hkv = k.shape.length === rank ? k.shape[rank - 2]! : -1
  like(k, q, 'k', [...q.shape.slice(0, -2), Hkv, q.shape[rank - 1]!])
  if (Hkv < 1 || Hq % Hkv !== 0) fail('ERR_GRPO_SHAPE', `a number of kv heads that divides the ${Hq} query heads`, 'k', `a tensor of shape [${k.shape.join(', ')}]`)
  tensor(v, 'v')
  like(v, k, 'v')
  const o = parseOptions(ATTENTION_SCHEMA, opts, what)
  const seqStarts = optionalTensor(o.seqStarts, 'seqStarts')
  const seqLens = optionalTensor(o.seqLens, 'seqLens')
  if (seqStarts && !seqLens) invalidArg('seqLens with seqStarts', 'seqLens', undefined)
  let batch = rank === 4 ? q.shape[0]! : 1
  if (seqLens) {
    tensor(seqLens, 'seqLens')
    dtype(seqLens, ['i32'], 'seqLens')
    if (seqLens.shape.length !== 1 || (!seqStarts && seqLens.shape[0] !== batch)) {
      fail('ERR_GRPO_SHAPE', seqStarts ? 'an i32 tensor [B]' : `shape [${batch}]`, 'seqLens', `a tensor of shape [${seqLens.shape.join(', ')}]`)
    }
    sameDevice(q.device, seqLens, 'seqLens')
    batch = seqLens.shape[0]!
  }
  if (seqStarts) i32(seqStarts, 'seqStarts', [batch], q.device)
  return { seqStarts: nativeOf(seqStarts), seqLens: nativeOf(seqLens), scale: o.scale }
}

function prepareAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions | undefined) {
  // The arguments are checked before any of them is read (q.native of a non-tensor would be a TypeError).
  const args = attentionArgs(q, k, v, opts, 'attention options')
  return [q.native, k.native, v.native, args] as const
}

function wrapAttention(r: { out: NativeTensor; lse: NativeTensor }): AttentionResult {
  return { out: Tensor.fromNative(r.out), lse: Tensor.fromNative(r.lse) }
}

/**
 * Causal self-attention with grouped-query heads over packed (or padded) sequences, flash-style (no [L, L]
 * matrix): out = softmax(scale · q·kᵀ + causal mask) · v per sequence and head, and the log-sum-exp per row.
 */
export async function attention(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): Promise<AttentionResult> {
  return wrapAttention(await native().attention(...prepareAttention(q, k, v, opts), true))
}

export function attentionSync(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): AttentionResult {
  return wrapAttention(native().attention(...prepareAttention(q, k, v, opts), false))
}

function prepareAttentionBackward(gradOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, opts: AttentionOptions | undefined) {
  const o = attentionArgs(q, k, v, opts, 'attentionBackward options')
  tensor(gradOut, 'gradOut')
  like(gradOut, q, 'gradOut')
  tensor(out, 'out')
  like(out, q, 'out')
  tensor(lse, 'lse')
  dtype(lse, ['f32'], 'lse')
  shape(lse, q.shape.slice(0, -1), 'lse')
  sameDevice(q.device, lse, 'lse')
  return [gradOut.native, q.native, k.native, v.native, out.native, lse.native, o] as const
}

function wrapAttentionGrads(r: { gradQ: NativeTensor; gradK: NativeTensor; gradV: NativeTensor }): AttentionGrads {
  return { gradQ: Tensor.fromNative(r.gradQ), gradK: Tensor.fromNative(r.gradK), gradV: Tensor.fromNative(r.gradV) }
}

/** Gradients of attention from its out and lse (score tiles recomputed); gradK/gradV sum over each group's q heads. */
export async function attentionBackward(
  gradOut: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  opts?: AttentionOptions,
): Promise<AttentionGrads> {
  return wrapAttentionGrads(await native().attentionBackward(...prepareAttentionBackward(gradOut, q, k, v, out, lse, opts), true))
}

export function attentionBackwardSync(gradOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, opts?: AttentionOptions): AttentionGrads {
  return wrapAttentionGrads(native().attentionBackward(...prepareAttentionBackward(gradOut, q, k, v, out, lse, opts), false))
}

function cacheShapes(kCache: Tensor, vCache: Tensor): [number, number, number, number] {
  floatTensor(kCache, 'kCache')
  if (kCache.shape.length !== 4) fail('ERR_GRPO_SHAPE', 'a cache [B, Hkv, S, D]', 'kCache', `a tensor of shape [${kCache.shape.join(', ')}]`)
  headDim(kCache, 'kCache')
  tensor(vCache, 'vCache')
  like(vCache, kCache, 'vCache')
  return kCache.shape as [number, number, number, number]
}

function prepareDecode(q: Tensor, kCache: Tensor, vCache: Tensor, cacheLens: Tensor, opts: AttentionDecodeOptions | undefined) {
  const [B, Hkv, , D] = cacheShapes(kCache, vCache)
  floatTensor(q, 'q')
  if (q.shape.length !== 3 || q.shape[0] !== B || q.shape[2] !== D) {
    fail('ERR_GRPO_SHAPE', `a tensor [${B}, heads, ${D}] (one query per cached sequence)`, 'q', `a tensor of shape [${q.shape.join(', ')}]`)
  }
  dtype(kCache, [q.dtype], 'kCache')
  sameDevice(q.device, kCache, 'kCache')
  if (q.shape[1]! % Hkv !== 0) fail('ERR_GRPO_SHAPE', `a number of query heads divisible by the ${Hkv} kv heads`, 'q', `a tensor of shape [${q.shape.join(', ')}]`)
  i32(cacheLens, 'cacheLens', [B], q.device)
  const o = parseOptions(DECODE_SCHEMA, opts, 'attentionDecode options')
  return [q.native, kCache.native, vCache.native, cacheLens.native, { scale: o.scale }] as const
}

/**
 * One new query per sequence (q `[B, Hq, D]`) against the KV cache (`[B, Hkv, S, D]`): query b attends to cache
 * rows `[0, cacheLens[b])`, its own key included (written by kvCacheWrite first). Equals the last row of the full
 * forward over the same tokens.
 */
export async function attentionDecode(q: Tensor, kCache: Tensor, vCache: Tensor, cacheLens: Tensor, opts?: AttentionDecodeOptions): Promise<Tensor> {
  return Tensor.fromNative(await native().attentionDecode(...prepareDecode(q, kCache, vCache, cacheLens, opts), true))
}

export function attentionDecodeSync(q: Tensor, kCache: Tensor, vCache: Tensor, cacheLens: Tensor, opts?: AttentionDecodeOptions): Tensor {
  return Tensor.fromNative(native().attentionDecode(...prepareDecode(q, kCache, vCache, cacheLens, opts), false))
}

function prepareCacheWrite(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, opts: KvCacheWriteOptions) {
  const [B, Hkv, , D] = cacheShapes(kCache, vCache)
  tensor(k, 'k')
  dtype(k, [kCache.dtype], 'k')
  if (k.shape.length !== 3 || k.shape[1] !== Hkv || k.shape[2] !== D) {
    fail('ERR_GRPO_SHAPE', `a tensor [T, ${Hkv}, ${D}]`, 'k', `a tensor of shape [${k.shape.join(', ')}]`)
  }
  sameDevice(kCache.device, k, 'k')
  tensor(v, 'v')
  like(v, k, 'v')
  const o = parseOptions(CACHE_WRITE_SCHEMA, opts, 'kvCacheWrite options')
  if (o.cacheStarts === undefined) invalidArg('an i32 tensor [B] of cache positions', 'cacheStarts', undefined)
  const cacheStarts = i32(o.cacheStarts, 'cacheStarts', [B], kCache.device)
  const seqStarts = optionalTensor(o.seqStarts, 'seqStarts')
  const seqLens = optionalTensor(o.seqLens, 'seqLens')
  if (!seqStarts !== !seqLens) invalidArg('seqStarts and seqLens together', seqStarts ? 'seqLens' : 'seqStarts', undefined)
  if (seqStarts) i32(seqStarts, 'seqStarts', [B], kCache.device)
  if (seqLens) i32(seqLens, 'seqLens', [B], kCache.device)
  if (!seqStarts && k.shape[0]! % B !== 0) {
    fail('ERR_GRPO_SHAPE', `a token count divisible by the batch ${B} (or seqStarts/seqLens)`, 'k', `a tensor of shape [${k.shape.join(', ')}]`)
  }
  return [k.native, v.native, kCache.native, vCache.native, { cacheStarts: cacheStarts.native, seqStarts: nativeOf(seqStarts), seqLens: nativeOf(seqLens) }] as const
}

/** Copies k/v rows `[T, Hkv, D]` into the caches: token seqStarts[b] + i goes to cache row b, position cacheStarts[b] + i. */
export async function kvCacheWrite(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, opts: KvCacheWriteOptions): Promise<void> {
  await native().kvCacheWrite(...prepareCacheWrite(k, v, kCache, vCache, opts), true)
}

export function kvCacheWriteSync(k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, opts: KvCacheWriteOptions): void {
  native().kvCacheWrite(...prepareCacheWrite(k, v, kCache, vCache, opts), false)
}


/**
 * The linear layer, `y = x·Wᵀ (+ b)`, and its backward: the GEMM every transformer layer is made of.
 *
 * - `linear(x [..., K], weight [M, K], {bias, outDtype})` → `y [..., M]`. The weight is in PyTorch's (and
 *   safetensors') layout `[out features, in features]`. `x` and `weight` share one dtype, f32 or bf16; the sums
 *   over K are accumulated in f32 whatever the dtype, then the bias (f32 or bf16, `[M]`) is added and the result
 *   rounded once to `outDtype` (default: the input dtype, so bf16 in gives bf16 out, as in PyTorch; pass
 *   `outDtype: 'f32'` to keep the f32 sums, e.g. for logits).
 * - `linearBackward(gradOutput [..., M], x, weight, {gradWeight, gradBias, gradInput})` → `dx [..., K]` (or null
 *   with `gradInput: false`): `dx = dy·W` (a new tensor in the input dtype); `gradWeight [M, K] += dyᵀ·x` and
 *   `gradBias [M] += Σ dy` are accumulated in place into the tensors you pass (f32 master gradients, or bf16),
 *   so gradient accumulation over micro-batches is free; leave one out to skip it (a frozen weight, no bias).
 *   `gradOutput` has the input dtype.
 *
 * Backends: cpu (packed, blocked, multithreaded GEMM with AMX / AVX512_BF16 / AVX-512 / AVX2 micro-kernels chosen
 * at run time), cuda (cuBLASLt when the library is present, else node-grpo's tensor-core kernels) and simt (those
 * kernels on the CPU). `backend.info().cpu.gemm` and `.cuda.gemm` say which GEMM runs and why.
 */
import type { DType } from './dtype.js'
import { fail } from './errors.js'
import { native } from './native.js'
import { Tensor } from './tensor.js'
import { booleanOption, oneOfOption, parseOptions, type Schema } from './options.js'
import { dtype, optionalTensor, sameDevice, shape, tensor, tensorOption } from './validate.js'

export interface LinearOptions {
  /** `[M]`, f32 or bf16: added to every output row. */
  bias?: Tensor
  /** The output dtype, 'f32' or 'bf16'. Default: the input dtype. */
  outDtype?: 'f32' | 'bf16'
}

export interface LinearBackwardOptions {
  /** `[M, K]` f32 or bf16: receives `+= dyᵀ·x` in place. Omit to skip the weight gradient. */
  gradWeight?: Tensor
  /** `[M]` f32 or bf16: receives `+= Σ_rows dy` in place. Omit to skip it. */
  gradBias?: Tensor
  /** Compute and return `dx = dy·W`. Default true; false returns null (the first layer needs no dx). */
  gradInput?: boolean
}

const COMPUTE: readonly DType[] = ['f32', 'bf16']

export const LINEAR_SCHEMA: Schema<LinearOptions> = { bias: tensorOption(), outDtype: oneOfOption(['f32', 'bf16'] as const) }
export const LINEAR_BACKWARD_SCHEMA: Schema<LinearBackwardOptions> = {
  gradWeight: tensorOption(),
  gradBias: tensorOption(),
  gradInput: booleanOption(true),
}

function shapeText(t: Tensor): string {
  return `a tensor of shape [${t.shape.join(', ')}]`
}

// x [..., K] and weight [M, K] of one float dtype: returns [K, M].
function operands(x: Tensor, weight: Tensor): [number, number] {
  dtype(x, COMPUTE, 'x')
  if (x.shape.length < 1) fail('ERR_GRPO_SHAPE', 'a tensor of rank >= 1 [..., K]', 'x', shapeText(x))
  const K = x.shape[x.shape.length - 1]!
  dtype(weight, [x.dtype], 'weight')
  if (weight.shape.length !== 2 || weight.shape[1] !== K) {
    fail('ERR_GRPO_SHAPE', `shape [M, ${K}] (K of x)`, 'weight', shapeText(weight))
  }
  sameDevice(x.device, weight, 'weight')
  return [K, weight.shape[0]!]
}

function prepareLinear(x: Tensor, weight: Tensor, opts: LinearOptions | undefined) {
  tensor(x, 'x')
  tensor(weight, 'weight')
  const o = parseOptions(LINEAR_SCHEMA, opts, 'linear options')
  const [, M] = operands(x, weight)
  const bias = optionalTensor(o.bias, 'bias')
  if (bias) {
    dtype(bias, COMPUTE, 'bias')
    shape(bias, [M], 'bias')
    sameDevice(x.device, bias, 'bias')
  }
  return { x: x.native, weight: weight.native, options: { bias: bias?.native, outDtype: o.outDtype } }
}

/** y = x·Wᵀ (+ b), with f32 accumulation. */
export async function linear(x: Tensor, weight: Tensor, opts?: LinearOptions): Promise<Tensor> {
  const p = prepareLinear(x, weight, opts)
  return Tensor.fromNative(await native().linear(p.x, p.weight, p.options, true))
}

export function linearSync(x: Tensor, weight: Tensor, opts?: LinearOptions): Tensor {
  const p = prepareLinear(x, weight, opts)
  return Tensor.fromNative(native().linear(p.x, p.weight, p.options, false))
}

function prepareBackward(gradOutput: Tensor, x: Tensor, weight: Tensor, opts: LinearBackwardOptions | undefined) {
  tensor(gradOutput, 'gradOutput')
  tensor(x, 'x')
  tensor(weight, 'weight')
  const o = parseOptions(LINEAR_BACKWARD_SCHEMA, opts, 'linearBackward options')
  const [K, M] = operands(x, weight)
  dtype(gradOutput, [x.dtype], 'gradOutput')
  shape(gradOutput, [...x.shape.slice(0, -1), M], 'gradOutput')
  sameDevice(x.device, gradOutput, 'gradOutput')
  const gradWeight = optionalTensor(o.gradWeight, 'gradWeight')
  const gradBias = optionalTensor(o.gradBias, 'gradBias')
  for (const [t, what, want] of [[gradWeight, 'gradWeight', [M, K]], [gradBias, 'gradBias', [M]]] as const) {
    if (!t) continue
    dtype(t, COMPUTE, what)
    shape(t, want, what)
    sameDevice(x.device, t, what)
    for (const input of [x, weight, gradOutput]) {
      if (t === input) fail('ERR_GRPO_INVALID_ARG', 'a gradient tensor distinct from the inputs', what, 'one of the inputs')
    }
  }
  return {
    args: [gradOutput.native, x.native, weight.native] as const,
    options: { gradWeight: gradWeight?.native, gradBias: gradBias?.native, gradInput: o.gradInput ?? true },
  }
}

/** dx = dy·W (returned; null with gradInput: false), gradWeight += dyᵀ·x, gradBias += Σ dy (in place). */
export async function linearBackward(gradOutput: Tensor, x: Tensor, weight: Tensor, opts?: LinearBackwardOptions): Promise<Tensor | null> {
  const p = prepareBackward(gradOutput, x, weight, opts)
  const dx = await native().linearBackward(...p.args, p.options, true)
  return dx ? Tensor.fromNative(dx) : null
}

export function linearBackwardSync(gradOutput: Tensor, x: Tensor, weight: Tensor, opts?: LinearBackwardOptions): Tensor | null {
  const p = prepareBackward(gradOutput, x, weight, opts)
  const dx = native().linearBackward(...p.args, p.options, false)
  return dx ? Tensor.fromNative(dx) : null
}

/**
 * Argument checks shared by the op wrappers (lib/ops.ts, lib/model-ops.ts). They run before any native call, so
 * a wrong argument fails with the TypeScript name of the thing and an "Expected X for Y but received Z" message;
 * the native side checks again.
 */
import type { DType } from './dtype.js'
import { fail, invalidArg } from './errors.js'
import { Tensor } from './tensor.js'

export const FLOAT_DTYPES: readonly DType[] = ['f32', 'bf16', 'f16']

/**
 * The temperatures the kernels accept. The logits are scaled by 1/T in f32: far outside this range the scale or
 * the scaled logits leave the f32 range (below ~1e-38 the scale is infinite and every result NaN), and no
 * sampling or loss is meaningful anyway. For decoding without randomness, use greedy sampling.
 */
export const MIN_TEMPERATURE = 1e-6
export const MAX_TEMPERATURE = 1e6
export const TEMPERATURE_RULE = 'a number in [1e-6, 1e6]'

export function temperature(value: unknown, what = 'temperature'): void {
  number(value, what, TEMPERATURE_RULE, (v) => v >= MIN_TEMPERATURE && v <= MAX_TEMPERATURE)
}

/** A live Tensor (ERR_GRPO_INVALID_ARG otherwise, ERR_GRPO_DISPOSED for a disposed one). */
export function tensor(value: unknown, what: string): Tensor {
  if (!(value instanceof Tensor)) invalidArg('a Tensor', what, value)
  value.native // throws ERR_GRPO_DISPOSED for a disposed tensor
  return value
}

export function optionalTensor(value: unknown, what: string): Tensor | undefined {
  return value === undefined || value === null ? undefined : tensor(value, what)
}

export function dtype(t: Tensor, allowed: readonly DType[], what: string): void {
  if (!allowed.includes(t.dtype)) fail('ERR_GRPO_DTYPE', `a ${allowed.join(' or ')} tensor`, what, `a ${t.dtype} tensor`)
}

export function shape(t: Tensor, expected: readonly number[], what: string): void {
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
    fail('ERR_GRPO_SHAPE', `shape [${expected.join(', ')}]`, what, `a tensor of shape [${t.shape.join(', ')}]`)
  }
}

/** Ops never copy between devices behind the caller's back: every input of a call must be on `device`. */
export function sameDevice(device: string, t: Tensor | undefined, what: string): void {
  if (t && t.device !== device) invalidArg(`a tensor on ${device} (all inputs of a call on one device)`, what, `a tensor on ${t.device}`)
}

export function options<T extends object>(value: T | undefined, what: string): T {
  if (value === undefined || value === null) return {} as T
  if (typeof value !== 'object' || Array.isArray(value)) invalidArg('an options object', what, value)
  return value
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): void {
  if (value !== undefined && !allowed.includes(value as T)) invalidArg(`one of ${allowed.map((a) => `'${a}'`).join(', ')}`, what, value)
}

/** An optional finite number passing `ok`; with `nullable`, null is accepted too (it turns a feature off). */
export function number(value: unknown, what: string, expected: string, ok: (v: number) => boolean, nullable = false): void {
  if (value === undefined || (nullable && value === null)) return
  if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) invalidArg(expected, what, value)
}

export function boolean(value: unknown, what: string): void {
  if (value !== undefined && typeof value !== 'boolean') invalidArg('a boolean', what, value)
}

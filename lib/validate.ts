/**
 * Checks of the tensors the op wrappers receive (lib/ops.ts, lib/model-ops.ts): kind, dtype, shape, device. They
 * run before any native call, so a wrong input fails with its TypeScript name and an "Expected X for Y but
 * received Z" message; the native side checks the same things again, since they protect memory. Options are
 * read by lib/options.ts.
 */
import type { DType } from './dtype.js'
import { fail, invalidArg } from './errors.js'
import type { LossOptions, OptionSpec } from './options.js'
import { Tensor } from './tensor.js'

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

/** The inputs object of an op ({logits, targets, …}): undefined or null reads as an empty one. */
export function inputsObject<T extends object>(value: T | undefined, what: string): T {
  if (value === undefined || value === null) return {} as T
  if (typeof value !== 'object' || Array.isArray(value)) invalidArg('an inputs object', what, value)
  return value
}

/** A tensor passed among the options (a mask, a bias): its dtype and shape are checked by the op. */
export function tensorOption(): OptionSpec<Tensor> {
  return { expected: 'a Tensor', nullable: true, rule: (v) => v instanceof Tensor }
}

/** Checks mask/old/ref/advantages of shape [B, L] (advantages [B] or [B, L]). */
export function checkTokenInputs(
  B: number,
  L: number,
  device: string,
  inputs: { mask?: Tensor; oldLogp?: Tensor; refLogp?: Tensor; rolloutLogp?: Tensor; advantages: Tensor },
): void {
  const { mask, oldLogp, refLogp, rolloutLogp, advantages } = inputs
  if (mask) {
    dtype(mask, ['u8'], 'mask')
    shape(mask, [B, L], 'mask')
  }
  for (const [t, what] of [[oldLogp, 'oldLogp'], [refLogp, 'refLogp'], [rolloutLogp, 'rolloutLogp']] as const) {
    if (!t) continue
    dtype(t, ['f32'], what)
    shape(t, [B, L], what)
  }
  dtype(advantages, ['f32'], 'advantages')
  const perSequence = advantages.shape.length === 1 && advantages.shape[0] === B
  const perToken = advantages.shape.length === 2 && advantages.shape[0] === B && advantages.shape[1] === L
  if (!perSequence && !perToken) {
    fail('ERR_GRPO_SHAPE', `shape [${B}] or [${B}, ${L}]`, 'advantages', `a tensor of shape [${advantages.shape.join(', ')}]`)
  }
  for (const [t, what] of [[mask, 'mask'], [oldLogp, 'oldLogp'], [refLogp, 'refLogp'], [rolloutLogp, 'rolloutLogp'], [advantages, 'advantages']] as const) {
    sameDevice(device, t, what)
  }
}

/** The rules between the loss options and the inputs present (grpoLoss, policyLoss, linearGrpoLoss). */
export function checkLossInputs(o: LossOptions, inputs: { oldLogp?: Tensor; refLogp?: Tensor; rolloutLogp?: Tensor }): void {
  if (o.beta! > 0 && !inputs.refLogp) invalidArg('a refLogp tensor (beta > 0 needs a reference)', 'refLogp', undefined)
  if (o.rolloutCorrection && !inputs.rolloutLogp) {
    invalidArg('a rolloutLogp tensor (rolloutCorrection weighs tokens by oldLogp − rolloutLogp)', 'rolloutLogp', undefined)
  }
  if (o.rolloutCorrection && !inputs.oldLogp) {
    invalidArg('an oldLogp tensor (rolloutCorrection weighs tokens by oldLogp − rolloutLogp)', 'oldLogp', undefined)
  }
  if (inputs.rolloutLogp && !o.rolloutCorrection) {
    invalidArg('a rolloutCorrection option (rolloutLogp is read only by it)', 'rolloutCorrection', o.rolloutCorrection)
  }
}

/**
 * Bad inputs for every public op and Tensor.from (docs/ops.md "Errors", "Points the math leaves open"):
 * each must throw (…Sync) or reject (Promise form) with a GrpoError of the right code and a message that reads
 * "Expected … for … but received …", and the process must stay alive and usable afterwards.
 */
import t, { type Test } from 'tap'
import { ops, Tensor, backend } from '../../lib/index.js'
import { DEVICE, Scope, begin, checkNoLeaks, expectBoth, expectThrow } from '../helpers/setup.js'

const start = begin(t)

const B = 2, L = 3, V = 4
const INVALID = 'ERR_GRPO_INVALID_ARG'
const SHAPE = 'ERR_GRPO_SHAPE'
const DTYPE = 'ERR_GRPO_DTYPE'
const NONFINITE = 'ERR_GRPO_NONFINITE'
const DISPOSED = 'ERR_GRPO_DISPOSED'

const LOGITS = Float32Array.from({ length: B * L * V }, (_, i) => Math.sin(i) * 2)
const TARGETS = Int32Array.from([0, 1, 2, 3, 0, 1])
const MASK = Uint8Array.from([1, 1, 0, 1, 1, 1]) // position 2 is padding
const LOGP = Float32Array.from([-0.5, -1, -2, -0.1, -3, -0.7])
const OLD = Float32Array.from([-0.6, -1.1, -2, -0.1, -2.9, -0.8])
const REF = Float32Array.from([-0.4, -1.3, -2, -0.2, -3.1, -0.6])
const ENTROPY = Float32Array.from([1, 2, 0.5, 0.1, 3, 1.5])
const ADV = Float32Array.from([0.5, -1])

/** Float32 data with one entry replaced (at a counted position unless said otherwise). */
const withValue = <T extends Float32Array | Int32Array | Uint8Array>(data: T, index: number, value: number): T => {
  const copy = data.slice() as T
  copy[index] = value
  return copy
}

// ---------------------------------------------------------------------------------------------------------

t.test('Tensor.from', async (t) => {
  const from = (...args: unknown[]) => (): unknown => (Tensor.from as (...a: unknown[]) => Tensor)(...args).dispose()
  expectThrow(t, from('abc', [3]), INVALID, 'data is a string')
  expectThrow(t, from(5, [1]), INVALID, 'data is a number')
  expectThrow(t, from(null, [1]), INVALID, 'data is null')
  expectThrow(t, from({ length: 1, 0: 1 }, [1]), INVALID, 'data is an array-like object')
  expectThrow(t, from(new DataView(new ArrayBuffer(4)), [1]), INVALID, 'data is a DataView')
  expectThrow(t, from([1, 'a', 3], [3]), INVALID, 'a string among the numbers')
  expectThrow(t, from([1, 2, 3], '3'), INVALID, 'shape is a string')
  expectThrow(t, from([1, 2, 3], 3), INVALID, 'shape is a number')
  expectThrow(t, from([1, 2, 3], [2]), SHAPE, 'shape product ≠ length')
  expectThrow(t, from([1, 2, 3], [3, 2]), SHAPE, 'shape product > length')
  expectThrow(t, from([1, 2, 3], [-3]), SHAPE, 'negative shape entry')
  expectThrow(t, from([1, 2, 3], [1.5, 2]), SHAPE, 'fractional shape entry')
  expectThrow(t, from([1, 2, 3], [NaN]), SHAPE, 'NaN shape entry')
  expectThrow(t, from([1], [1], { dtype: 'f64' }), DTYPE, 'unknown dtype')
  expectThrow(t, from(new Uint16Array([1]), [1]), DTYPE, 'Uint16Array without a dtype')
  expectThrow(t, from(new Float64Array([1]), [1]), DTYPE, 'Float64Array without a dtype')
  expectThrow(t, from([1], [1], { device: 'gpu' }), INVALID, 'unknown device')
  expectThrow(t, from([1], [1], 5), INVALID, 'options is a number')
  expectThrow(t, from([1.5], [1], { dtype: 'i32' }), INVALID, 'i32 from a fraction')
  expectThrow(t, from([2 ** 31], [1], { dtype: 'i32' }), INVALID, 'i32 out of range')
  expectThrow(t, from([256], [1], { dtype: 'u8' }), INVALID, 'u8 out of range')
  expectThrow(t, from([-1], [1], { dtype: 'u8' }), INVALID, 'u8 negative')
  expectThrow(t, from([NaN], [1], { dtype: 'u8' }), INVALID, 'u8 NaN')
})

// ---------------------------------------------------------------------------------------------------------

t.test('tokenLogprobs', async (t) => {
  using scope = new Scope()
  const logits = scope.f32(LOGITS, [B, L, V])
  const targets = scope.i32(TARGETS, [B, L])
  const mask = scope.u8(MASK, [B, L])
  const run = (x: unknown, y: unknown, o?: unknown) => (async: boolean) =>
    scope.adopt((async ? ops.tokenLogprobs : ops.tokenLogprobsSync)(x as Tensor, y as Tensor, o as object) as object)
  const both = (call: (async: boolean) => unknown, code: string, what: string) => expectBoth(t, call, code, what)

  await both(run(LOGITS, targets), INVALID, 'logits is a Float32Array')
  await both(run(null, targets), INVALID, 'logits is null')
  await both(run(logits, [0, 1, 2, 3, 0, 1]), INVALID, 'targets is an array')
  await both(run(logits, targets, { mask: MASK }), INVALID, 'mask is a Uint8Array')
  await both(run(scope.i32(new Int32Array(B * L * V), [B, L, V]), targets), DTYPE, 'i32 logits')
  await both(run(scope.u8(new Uint8Array(B * L * V), [B, L, V]), targets), DTYPE, 'u8 logits')
  await both(run(logits, scope.f32(TARGETS, [B, L])), DTYPE, 'f32 targets')
  await both(run(logits, targets, { mask: scope.f32(MASK, [B, L]) }), DTYPE, 'f32 mask')
  await both(run(scope.f32(LOGITS, [B * L, V]), targets), SHAPE, 'rank-2 logits')
  await both(run(scope.f32(LOGITS, [1, B, L, V]), targets), SHAPE, 'rank-4 logits')
  await both(run(logits, scope.i32(TARGETS, [B * L])), SHAPE, 'rank-1 targets')
  await both(run(logits, scope.i32(TARGETS, [L, B])), SHAPE, 'transposed targets')
  await both(run(logits, targets, { mask: scope.u8(MASK, [L, B]) }), SHAPE, 'transposed mask')
  await both(run(logits, scope.i32(withValue(TARGETS, 1, -1), [B, L])), INVALID, 'target −1 at a counted position')
  await both(run(logits, scope.i32(withValue(TARGETS, 4, V), [B, L])), INVALID, 'target V at a counted position')
  await both(run(logits, targets, { mask: scope.u8(withValue(MASK, 1, 2), [B, L]) }), INVALID, 'mask value 2')
  await both(run(scope.f32(withValue(LOGITS, 5, NaN), [B, L, V]), targets), NONFINITE, 'NaN logit')
  await both(run(scope.f32(withValue(LOGITS, 9, Infinity), [B, L, V]), targets), NONFINITE, '+∞ logit')
  const banned = LOGITS.slice()
  banned.fill(-Infinity, 4, 8)
  await both(run(scope.f32(banned, [B, L, V]), targets), NONFINITE, 'a row of −∞')
  await both(run(scope.from(withValue(LOGITS, 5, NaN), [B, L, V], 'bf16'), targets), NONFINITE, 'NaN bf16 logit')
  await both(run(scope.from(withValue(LOGITS, 5, NaN), [B, L, V], 'f16'), targets), NONFINITE, 'NaN f16 logit')
  for (const temperature of [0, -1, NaN, Infinity, '1', null]) {
    await both(run(logits, targets, { temperature }), INVALID, `temperature ${String(temperature)}`)
  }
  await both(run(logits, targets, { entropy: 'yes' }), INVALID, 'entropy not a boolean')
  for (const o of [42, 'x', [1]]) await both(run(logits, targets, o), INVALID, `options ${JSON.stringify(o)}`)

  // what padding may hold: out-of-range ids and NaN logits where mask = 0
  const padTargets = scope.i32(withValue(TARGETS, 2, -100), [B, L])
  const padLogits = scope.f32(withValue(withValue(LOGITS, 8, NaN), 9, Infinity), [B, L, V])
  const ok = scope.adopt(await ops.tokenLogprobs(padLogits, padTargets, { mask }))
  t.equal((await ok.logp.toArray())[2], 0, 'padding (−100, NaN, +∞) at a masked position is not an error')
  const okSync = scope.adopt(ops.tokenLogprobsSync(padLogits, padTargets, { mask, temperature: 2 }))
  t.equal(okSync.logp.toArraySync()[2], 0)

  for (const [name, make] of [
    ['logits', (): unknown[] => [scope.f32(LOGITS, [B, L, V]), targets, undefined]],
    ['targets', (): unknown[] => [logits, scope.i32(TARGETS, [B, L]), undefined]],
    ['mask', (): unknown[] => [logits, targets, scope.u8(MASK, [B, L])]],
  ] as const) {
    const [x, y, m] = make()
    const victim = (name === 'logits' ? x : name === 'targets' ? y : m) as Tensor
    victim.dispose()
    await both(run(x, y, m ? { mask: m } : undefined), DISPOSED, `disposed ${name}`)
  }
})

// ---------------------------------------------------------------------------------------------------------

t.test('groupAdvantages', async (t) => {
  using scope = new Scope()
  const run = (r: unknown, o?: unknown) => (async: boolean) =>
    scope.adopt((async ? ops.groupAdvantages : ops.groupAdvantagesSync)(r as number[], o as object) as object)
  const both = (call: (async: boolean) => unknown, code: string, what: string) => expectBoth(t, call, code, what)
  const R = [1, 0, 0, 1]

  for (const r of ['abc', null, {}, 5]) await both(run(r, { groupSize: 2 }), INVALID, `rewards ${JSON.stringify(r)}`)
  await both(run([1, 'a', 0, 1], { groupSize: 2 }), INVALID, 'a string among the rewards')
  await both(run(scope.i32([1, 0, 0, 1], [4]), { groupSize: 2 }), DTYPE, 'i32 rewards tensor')
  await both(run(scope.f32(R, [2, 2]), { groupSize: 2 }), SHAPE, 'rank-2 rewards tensor')
  await both(run(R, { groupSize: 2, groupIds: [0, 0, 1, 1] }), INVALID, 'both groupSize and groupIds')
  await both(run(R, {}), INVALID, 'neither groupSize nor groupIds')
  await both(run(R), INVALID, 'no options')
  for (const g of [0, -2, 1.5, NaN, '2', Infinity]) await both(run(R, { groupSize: g }), INVALID, `groupSize ${String(g)}`)
  await both(run(R, { groupSize: 3 }), SHAPE, 'groupSize does not divide K')
  await both(run(R, { groupIds: [0, 0, 1] }), SHAPE, 'groupIds shorter than rewards')
  await both(run(R, { groupIds: scope.i32([0, 0, 1, 1, 2], [5]) }), SHAPE, 'groupIds tensor longer than rewards')
  await both(run(R, { groupIds: [0, 0.5, 1, 1] }), INVALID, 'fractional group id')
  await both(run(R, { groupIds: [0, 'a', 1, 1] }), INVALID, 'a string group id')
  await both(run(R, { groupIds: 'abcd' }), INVALID, 'groupIds is a string')
  await both(run(R, { groupIds: scope.f32([0, 0, 1, 1], [4]) }), DTYPE, 'f32 groupIds tensor')
  await both(run(R, { groupSize: 2, baseline: 'median' }), INVALID, 'unknown baseline')
  await both(run(R, { groupSize: 2, scale: 'std' }), INVALID, 'unknown scale')
  await both(run(R, { groupSize: 2, nonFinite: 'ignore' }), INVALID, 'unknown nonFinite')
  for (const eps of [-1, NaN, Infinity, '0']) await both(run(R, { groupSize: 2, eps }), INVALID, `eps ${String(eps)}`)
  await both(run(R, 7), INVALID, 'options is a number')
  await both(run([1, NaN, 0, 1], { groupSize: 2 }), NONFINITE, 'NaN reward')
  await both(run(scope.f32([1, 0, Infinity, 1], [4]), { groupIds: [1, 1, 2, 2] }), NONFINITE, '+∞ reward tensor')

  const gone = scope.f32(R, [4])
  gone.dispose()
  await both(run(gone, { groupSize: 2 }), DISPOSED, 'disposed rewards')
  const goneIds = scope.i32([0, 0, 1, 1], [4])
  goneIds.dispose()
  await both(run(R, { groupIds: goneIds }), DISPOSED, 'disposed groupIds')
})

// ---------------------------------------------------------------------------------------------------------

/** Valid policyLoss inputs (every optional one present), fresh tensors in `scope`. */
function policyInputs(scope: Scope): Record<string, Tensor> {
  return {
    logp: scope.f32(LOGP, [B, L]),
    oldLogp: scope.f32(OLD, [B, L]),
    refLogp: scope.f32(REF, [B, L]),
    advantages: scope.f32(ADV, [B]),
    mask: scope.u8(MASK, [B, L]),
    entropy: scope.f32(ENTROPY, [B, L]),
  }
}

/** Valid grpoLoss inputs (every optional one present). */
function grpoInputs(scope: Scope): Record<string, Tensor> {
  return {
    logits: scope.f32(LOGITS, [B, L, V]),
    targets: scope.i32(TARGETS, [B, L]),
    oldLogp: scope.f32(OLD, [B, L]),
    refLogp: scope.f32(REF, [B, L]),
    advantages: scope.f32(ADV, [B]),
    mask: scope.u8(MASK, [B, L]),
  }
}

/** Option values every loss op must refuse with ERR_GRPO_INVALID_ARG. */
const BAD_LOSS_OPTIONS: Array<[string, Record<string, unknown>]> = [
  ['clipLow 1', { clipLow: 1 }],
  ['clipLow −0.1', { clipLow: -0.1 }],
  ['clipLow NaN', { clipLow: NaN }],
  ['clipHigh −0.1', { clipHigh: -0.1 }],
  ['clipHigh ∞', { clipHigh: Infinity }],
  ['clipHigh string', { clipHigh: '0.2' }],
  ['dualClip 1', { dualClip: 1 }],
  ['dualClip 0.5', { dualClip: 0.5 }],
  ['dualClip string', { dualClip: '3' }],
  ['logRatioClamp 0', { logRatioClamp: 0 }],
  ['logRatioClamp −1', { logRatioClamp: -1 }],
  ['logRatioClamp NaN', { logRatioClamp: NaN }],
  ['beta −0.1', { beta: -0.1 }],
  ['beta NaN', { beta: NaN }],
  ['kl k4', { kl: 'k4' }],
  ['entropyCoef NaN', { entropyCoef: NaN }],
  ['entropyCoef ∞', { entropyCoef: Infinity }],
  ['lossAgg mean', { lossAgg: 'mean' }],
  ['normalizer 0', { normalizer: 0 }],
  ['normalizer −1', { normalizer: -1 }],
  ['normalizer NaN', { normalizer: NaN }],
  ['normLength 0', { normLength: 0 }],
  ['normLength ∞', { normLength: Infinity }],
  ['loss ppo', { loss: 'ppo' }],
]

t.test('policyLoss', async (t) => {
  using scope = new Scope()
  const run = (inputs: unknown, o?: unknown) => (async: boolean) =>
    scope.adopt((async ? ops.policyLoss : ops.policyLossSync)(inputs as never, o as object) as object)
  const both = (call: (async: boolean) => unknown, code: string, what: string) => expectBoth(t, call, code, what)
  const valid = policyInputs(scope)
  const replace = (key: string, value: unknown): Record<string, unknown> => ({ ...valid, [key]: value })

  for (const i of [null, 5, 'x']) await both(run(i), INVALID, `inputs ${JSON.stringify(i)}`)
  await both(run({ ...valid, logp: undefined }), INVALID, 'logp missing')
  await both(run({ ...valid, advantages: undefined }), INVALID, 'advantages missing')
  await both(run(replace('logp', LOGP)), INVALID, 'logp is a Float32Array')
  await both(run(replace('oldLogp', OLD)), INVALID, 'oldLogp is a Float32Array')
  await both(run(replace('entropy', [1, 2])), INVALID, 'entropy is an array')
  await both(run(replace('logp', scope.from(LOGP, [B, L], 'bf16'))), DTYPE, 'bf16 logp')
  await both(run(replace('oldLogp', scope.i32(new Int32Array(B * L), [B, L]))), DTYPE, 'i32 oldLogp')
  await both(run(replace('refLogp', scope.from(REF, [B, L], 'f16'))), DTYPE, 'f16 refLogp')
  await both(run(replace('advantages', scope.i32([1, 0], [B]))), DTYPE, 'i32 advantages')
  await both(run(replace('mask', scope.i32(MASK, [B, L]))), DTYPE, 'i32 mask')
  await both(run(replace('entropy', scope.u8(new Uint8Array(B * L), [B, L]))), DTYPE, 'u8 entropy')
  await both(run(replace('logp', scope.f32(LOGP, [B, L, 1]))), SHAPE, 'rank-3 logp')
  await both(run(replace('oldLogp', scope.f32(OLD, [L, B]))), SHAPE, 'transposed oldLogp')
  await both(run(replace('refLogp', scope.f32(REF, [B * L]))), SHAPE, 'rank-1 refLogp')
  await both(run(replace('advantages', scope.f32([1, 2, 3], [3]))), SHAPE, 'advantages [3] for B = 2')
  await both(run(replace('advantages', scope.f32(new Float32Array(B * L), [B, L, 1]))), SHAPE, 'advantages [B, L, 1]')
  await both(run(replace('advantages', scope.f32(new Float32Array(B * L), [L, B]))), SHAPE, 'advantages [L, B]')
  await both(run(replace('mask', scope.u8(MASK, [B * L]))), SHAPE, 'rank-1 mask')
  await both(run(replace('entropy', scope.f32(ENTROPY, [L, B]))), SHAPE, 'transposed entropy')
  await both(run(replace('mask', scope.u8(withValue(MASK, 0, 3), [B, L]))), INVALID, 'mask value 3')
  for (const [key, data] of [['logp', LOGP], ['oldLogp', OLD], ['refLogp', REF], ['entropy', ENTROPY]] as const) {
    for (const bad of [NaN, Infinity, -Infinity]) {
      await both(run(replace(key, scope.f32(withValue(data, 4, bad), [B, L]))), NONFINITE, `${String(bad)} in ${key}`)
    }
  }
  await both(run(replace('advantages', scope.f32([0.5, NaN], [B]))), NONFINITE, 'NaN advantage')
  await both(run(replace('advantages', scope.f32(withValue(new Float32Array(B * L), 3, -Infinity), [B, L]))), NONFINITE, '−∞ per-token advantage')
  for (const [what, o] of BAD_LOSS_OPTIONS) await both(run(valid, o), INVALID, what)
  await both(run({ ...valid, refLogp: undefined }, { beta: 0.1 }), INVALID, 'beta > 0 without refLogp')
  for (const o of [3, 'x']) await both(run(valid, o), INVALID, `options ${JSON.stringify(o)}`)

  // padding may hold anything at masked positions (position 2)
  const padded = {
    ...valid,
    logp: scope.f32(withValue(LOGP, 2, NaN), [B, L]),
    oldLogp: scope.f32(withValue(OLD, 2, Infinity), [B, L]),
    refLogp: scope.f32(withValue(REF, 2, -Infinity), [B, L]),
    entropy: scope.f32(withValue(ENTROPY, 2, NaN), [B, L]),
    advantages: scope.f32(withValue(new Float32Array(B * L).fill(0.3), 2, NaN), [B, L]),
  }
  const ok = scope.adopt(await ops.policyLoss(padded, { beta: 0.1 }))
  t.ok(Number.isFinite(ok.loss), 'non-finite values at a masked position are not read')
  t.equal(ok.gradLogp.toArraySync()[2], 0)

  for (const key of Object.keys(valid)) {
    const fresh = policyInputs(scope)
    fresh[key].dispose()
    await both(run(fresh, { beta: 0.1 }), DISPOSED, `disposed ${key}`)
  }
})

// ---------------------------------------------------------------------------------------------------------

t.test('grpoLoss', async (t) => {
  using scope = new Scope()
  const run = (inputs: unknown, o?: unknown) => (async: boolean) =>
    scope.adopt((async ? ops.grpoLoss : ops.grpoLossSync)(inputs as never, o as object) as object)
  const both = (call: (async: boolean) => unknown, code: string, what: string) => expectBoth(t, call, code, what)
  const valid = grpoInputs(scope)
  const replace = (key: string, value: unknown): Record<string, unknown> => ({ ...valid, [key]: value })

  for (const i of [null, 5, 'x']) await both(run(i), INVALID, `inputs ${JSON.stringify(i)}`)
  for (const key of ['logits', 'targets', 'advantages']) await both(run({ ...valid, [key]: undefined }), INVALID, `${key} missing`)
  await both(run(replace('logits', LOGITS)), INVALID, 'logits is a Float32Array')
  await both(run(replace('targets', Array.from(TARGETS))), INVALID, 'targets is an array')
  await both(run(replace('mask', MASK)), INVALID, 'mask is a Uint8Array')
  await both(run(replace('refLogp', {})), INVALID, 'refLogp is an object')
  await both(run(replace('logits', scope.i32(new Int32Array(B * L * V), [B, L, V]))), DTYPE, 'i32 logits')
  await both(run(replace('targets', scope.f32(TARGETS, [B, L]))), DTYPE, 'f32 targets')
  await both(run(replace('targets', scope.u8(TARGETS, [B, L]))), DTYPE, 'u8 targets')
  await both(run(replace('oldLogp', scope.from(OLD, [B, L], 'bf16'))), DTYPE, 'bf16 oldLogp')
  await both(run(replace('refLogp', scope.i32(new Int32Array(B * L), [B, L]))), DTYPE, 'i32 refLogp')
  await both(run(replace('advantages', scope.from(ADV, [B], 'f16'))), DTYPE, 'f16 advantages')
  await both(run(replace('mask', scope.f32(MASK, [B, L]))), DTYPE, 'f32 mask')
  await both(run(replace('logits', scope.f32(LOGITS, [B * L, V]))), SHAPE, 'rank-2 logits')
  await both(run(replace('targets', scope.i32(TARGETS, [L, B]))), SHAPE, 'transposed targets')
  await both(run(replace('oldLogp', scope.f32(OLD, [B * L]))), SHAPE, 'rank-1 oldLogp')
  await both(run(replace('refLogp', scope.f32(REF, [L, B]))), SHAPE, 'transposed refLogp')
  await both(run(replace('advantages', scope.f32([1], [1]))), SHAPE, 'advantages [1] for B = 2')
  await both(run(replace('mask', scope.u8(MASK, [L, B]))), SHAPE, 'transposed mask')
  await both(run(replace('targets', scope.i32(withValue(TARGETS, 0, -1), [B, L]))), INVALID, 'target −1 at a counted position')
  await both(run(replace('targets', scope.i32(withValue(TARGETS, 5, V + 7), [B, L]))), INVALID, 'target ≥ V at a counted position')
  await both(run({ ...replace('targets', scope.i32(withValue(TARGETS, 2, -100), [B, L])), mask: undefined }), INVALID, '−100 without a mask: every position counts')
  await both(run(replace('mask', scope.u8(withValue(MASK, 4, 255), [B, L]))), INVALID, 'mask value 255')
  await both(run(replace('logits', scope.f32(withValue(LOGITS, 1, NaN), [B, L, V]))), NONFINITE, 'NaN logit')
  await both(run(replace('logits', scope.f32(withValue(LOGITS, 13, Infinity), [B, L, V]))), NONFINITE, '+∞ logit')
  await both(run(replace('logits', scope.from(withValue(LOGITS, 13, NaN), [B, L, V], 'bf16'))), NONFINITE, 'NaN bf16 logit')
  await both(run(replace('logits', scope.from(withValue(LOGITS, 13, Infinity), [B, L, V], 'f16'))), NONFINITE, '+∞ f16 logit')
  const row = LOGITS.slice()
  row.fill(-Infinity, 12, 16) // position 3 (counted)
  await both(run(replace('logits', scope.f32(row, [B, L, V]))), NONFINITE, 'a row of −∞')
  // position 4 has target 0: ban exactly that token
  await both(run(replace('logits', scope.f32(withValue(LOGITS, 4 * V + 0, -Infinity), [B, L, V]))), NONFINITE, 'the target token is banned (logp = −∞)')
  await both(run(replace('oldLogp', scope.f32(withValue(OLD, 0, NaN), [B, L]))), NONFINITE, 'NaN oldLogp')
  await both(run(replace('refLogp', scope.f32(withValue(REF, 5, -Infinity), [B, L]))), NONFINITE, '−∞ refLogp')
  await both(run(replace('advantages', scope.f32([Infinity, 1], [B]))), NONFINITE, '+∞ advantage')
  for (const [what, o] of BAD_LOSS_OPTIONS) await both(run(valid, o), INVALID, what)
  for (const temperature of [0, -2, NaN, Infinity, '1']) await both(run(valid, { temperature }), INVALID, `temperature ${String(temperature)}`)
  await both(run({ ...valid, refLogp: undefined }, { beta: 0.5 }), INVALID, 'beta > 0 without refLogp')
  await both(run(valid, { gradDtype: 'f64' }), INVALID, "gradDtype 'f64'")
  await both(run(valid, { gradDtype: 'bf16' }), INVALID, "gradDtype 'bf16' for f32 logits")
  await both(run(replace('logits', scope.from(LOGITS, [B, L, V], 'f16')), { gradDtype: 'bf16' }), INVALID, "gradDtype 'bf16' for f16 logits")
  await both(run(valid, { inplace: 'yes' }), INVALID, 'inplace not a boolean')
  await both(run(replace('logits', scope.from(LOGITS, [B, L, V], 'bf16')), { inplace: true, gradDtype: 'f32' }), INVALID, 'inplace with gradDtype ≠ the logits dtype')
  for (const o of [3, 'x']) await both(run(valid, o), INVALID, `options ${JSON.stringify(o)}`)

  // padding at masked positions (position 2) may hold anything
  const padded = {
    ...valid,
    logits: scope.f32(withValue(withValue(LOGITS, 2 * V, NaN), 2 * V + 1, Infinity), [B, L, V]),
    targets: scope.i32(withValue(TARGETS, 2, -100), [B, L]),
    oldLogp: scope.f32(withValue(OLD, 2, NaN), [B, L]),
    refLogp: scope.f32(withValue(REF, 2, Infinity), [B, L]),
    advantages: scope.f32(withValue(new Float32Array(B * L).fill(0.3), 2, NaN), [B, L]),
  }
  const ok = scope.adopt(await ops.grpoLoss(padded, { beta: 0.1 }))
  t.ok(Number.isFinite(ok.loss), 'padding at a masked position is not read')
  const okSync = scope.adopt(ops.grpoLossSync(padded, { beta: 0.1, gradDtype: 'f32', inplace: false }))
  t.equal(okSync.loss, ok.loss, 'Promise and Sync agree')

  for (const key of Object.keys(valid)) {
    const fresh = grpoInputs(scope)
    fresh[key].dispose()
    await both(run(fresh, { beta: 0.1 }), DISPOSED, `disposed ${key}`)
  }
})

t.test('mixed devices are refused', { skip: !(backend.info() as { cuda?: { available?: boolean } }).cuda?.available && 'no usable CUDA device' }, async (t) => {
  using scope = new Scope()
  const other = DEVICE === 'cuda' ? 'cpu' : 'cuda'
  const valid = grpoInputs(scope)
  const foreign = scope.add(Tensor.from(TARGETS, [B, L], { device: other }))
  await expectBoth(t, (async) => scope.adopt((async ? ops.grpoLoss : ops.grpoLossSync)({ ...valid, targets: foreign } as never, {}) as object), INVALID, 'targets on another device')
})

t.test('the process is alive and the ops still work', async (t: Test) => {
  using scope = new Scope()
  const r = scope.adopt(await ops.grpoLoss(grpoInputs(scope) as never, { beta: 0.1, entropyCoef: 0.01 }))
  t.ok(Number.isFinite(r.loss))
  const g = await ops.groupAdvantages([1, 0, 0, 1], { groupSize: 2 })
  scope.add(g.advantages)
  t.equal(g.zeroStdFraction, 0)
})

checkNoLeaks(t, start)

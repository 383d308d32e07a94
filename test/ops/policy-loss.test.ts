/**
 * ops.policyLoss / policyLossSync against the float64 reference (docs/math.md §3, §4, §6; docs/ops.md).
 * The inputs are f32 log-probs, so the reference sees exactly what the kernel sees.
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { ops } from '../../lib/index.js'
import { policyLoss as refPolicyLoss, type LossOptions } from '../reference/grpo-reference.js'
import { SEED, TEST_SCALE, genAdvantages, genMask, genOldLogp, genRefLogp, genRolloutLogp, rngFor, type Rng } from '../helpers/random.js'
import { checkRelative, checkScalar, checkStats, checkZeroAt, lossFloor } from '../helpers/compare.js'
import { lossConfigs, type LossConfig } from '../helpers/loss-grid.js'
import { Scope, begin, checkNoLeaks, valuesOf } from '../helpers/setup.js'

const start = begin(t)
/** The statistics of §3.3-3.4 when rolloutCorrection and topEntropyQuantile are off. */
const OFF_VARIANT_STATS = { rolloutWeightMean: 0, rolloutWeightMax: 0, rolloutCorrectedFrac: 0, rolloutGapMean: 0, rolloutGapMax: 0, rolloutKl: 0, entropySelectedFrac: 1, entropyThreshold: 0 }

const MAX_ROWS = Math.max(2, Math.round(512 * TEST_SCALE))

/** Log-probs of sampled tokens: mostly near 0, a tail down to −20 (f32-exact). */
function genLogp(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = -rng.logUniform(1e-4, 20)
  return out
}

async function runCase(t: Test, label: string, c: LossConfig, B: number, L: number): Promise<void> {
  const rng = rngFor(label)
  const mask = genMask(rng, B, L, c.maskKind)
  const logp = genLogp(rng, B * L)
  const options: LossOptions | undefined = c.options
  const o = options ?? {}
  // padding may hold anything: NaN at masked positions of every per-token input
  const oldLogp = c.withOld ? genOldLogp(rng, logp, mask, o, { padValue: NaN }) : undefined
  const refLogp = c.withRef ? genRefLogp(rng, logp, mask, { padValue: NaN }) : undefined
  const rc = o.rolloutCorrection ?? undefined
  const rolloutLogp = c.withRollout && oldLogp ? genRolloutLogp(rng, oldLogp, mask, rc?.level === 'sequence' ? {} : { max: rc?.max === undefined ? 3 : rc.max, min: rc?.min }, { padValue: NaN }) : undefined
  const advantages = genAdvantages(rng, c.perToken ? B * L : B)
  const entropy = c.withEntropy ? Float32Array.from({ length: B * L }, () => rng.range(0, 6)) : undefined
  if (mask) {
    for (let i = 0; i < B * L; i++) {
      if (mask[i] !== 0) continue
      logp[i] = NaN
      if (entropy) entropy[i] = NaN
      if (c.perToken) advantages[i] = NaN
    }
  }
  const ref = refPolicyLoss({ logp, oldLogp, refLogp, rolloutLogp, advantages, mask, entropy, B, L }, o)

  using scope = new Scope()
  const inputs = {
    logp: scope.f32(logp, [B, L]),
    advantages: scope.f32(advantages, c.perToken ? [B, L] : [B]),
    ...(oldLogp ? { oldLogp: scope.f32(oldLogp, [B, L]) } : {}),
    ...(refLogp ? { refLogp: scope.f32(refLogp, [B, L]) } : {}),
    ...(rolloutLogp ? { rolloutLogp: scope.f32(rolloutLogp, [B, L]) } : {}),
    ...(mask ? { mask: scope.u8(mask, [B, L]) } : {}),
    ...(entropy ? { entropy: scope.f32(entropy, [B, L]) } : {}),
  }
  const res = scope.adopt(c.sync ? ops.policyLossSync(inputs, options) : await ops.policyLoss(inputs, options))

  checkScalar(t, res.loss, ref.loss, 'loss', 1e-5, 1e-6, ref.mass.loss, lossFloor(ref.stats.tokens, 1))
  t.equal(res.stats.loss, res.loss, 'stats.loss equals loss')
  checkStats(t, res.stats, ref.stats, ref.mass, 'stats', 1e-5, lossFloor(ref.stats.tokens, 1))
  t.equal(res.gradLogp.dtype, 'f32', 'gradLogp is f32')
  t.same([...res.gradLogp.shape], [B, L], 'gradLogp has shape [B, L]')
  const grad = await valuesOf(res.gradLogp, c.sync)
  checkRelative(t, grad, ref.gradLogp, 1e-5, 'gradLogp')
  if (mask) checkZeroAt(t, grad, [...mask.keys()].filter((i) => mask[i] === 0), 'gradLogp at masked positions')
}

t.test('option grid', async (t) => {
  const configs = lossConfigs('policy', rngFor('policy grid'), 16)
  for (const c of configs) {
    const label = `policy ${c.name}`
    const rng = rngFor(`shape ${label}`)
    const B = rng.intIn(1, 16)
    const L = rng.intIn(1, Math.max(1, Math.floor(MAX_ROWS / B)))
    await t.test(`${c.name} [${B}, ${L}]${c.sync ? ' Sync' : ''}`, (t) => runCase(t, label, c, B, L))
  }
})

t.test('a fully masked batch: loss 0, stats 0, gradient 0', async (t) => {
  for (const lossAgg of ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'] as const) {
    using scope = new Scope()
    const B = 3, L = 4
    const res = scope.adopt(
      await ops.policyLoss(
        {
          logp: scope.f32(new Float32Array(B * L).fill(NaN), [B, L]),
          oldLogp: scope.f32(new Float32Array(B * L).fill(NaN), [B, L]),
          refLogp: scope.f32(new Float32Array(B * L).fill(NaN), [B, L]),
          advantages: scope.f32(new Float32Array(B * L).fill(NaN), [B, L]),
          mask: scope.u8(new Uint8Array(B * L), [B, L]),
        },
        { lossAgg, beta: 0.1 },
      ),
    )
    t.equal(res.loss, 0, `${lossAgg}: loss 0`)
    t.same(res.stats, { loss: 0, pgLoss: 0, klMean: 0, entropyMean: 0, clipFrac: 0, clipFracLower: 0, ratioMean: 0, ratioMax: 0, approxKl: 0, tokens: 0, ...OFF_VARIANT_STATS }, `${lossAgg}: stats 0`)
    t.same([...(await res.gradLogp.toArray())], new Array(B * L).fill(0), `${lossAgg}: gradient 0`)
  }
})

t.test('hand case: clip, dual clip and the log-ratio clamp decide the gradient', async (t) => {
  using scope = new Scope()
  // four tokens of one sequence, token-mean over 4
  const logp = [-1, -1, -1, -1]
  const old = [-1.5, -1.5, -1.1, -3]
  const A = [1, -1, 2, -1]
  const res = scope.adopt(
    ops.policyLossSync(
      { logp: scope.f32(logp, [1, 4]), oldLogp: scope.f32(old, [1, 4]), advantages: scope.f32(A, [1, 4]) },
      { dualClip: 1.5, logRatioClamp: 1.5 },
    ),
  )
  const g = res.gradLogp.toArraySync()
  // token 0: A > 0, r = e^0.5 > 1.2 → clipped, 0; token 1: A < 0, r = e^0.5 → dual cap 1.5 < 1.65 → 0;
  // token 2: inside → −A·r/4; token 3: logr = 2 > 1.5 → clamped → 0
  t.equal(g[0], 0)
  t.equal(g[1], 0)
  t.ok(Math.abs(g[2] - (-2 * Math.exp(0.1)) / 4) < 1e-6, `inside the range: ${g[2]}`)
  t.equal(g[3], 0)
  t.equal(res.stats.clipFrac, 0.25)
  t.equal(res.stats.clipFracLower, 0.5, 'tokens 1 and 3 (r = e^1.5 > 1.5) hit the cap')
  t.ok(Math.abs(res.stats.ratioMax - Math.exp(1.5)) < 1e-5, 'ratioMax uses the clamped ratio')
})

t.test('property: gradLogp is the derivative of the loss in logp (finite differences in f64 on the reference)', async (t) => {
  // the kernel's gradient against central differences of the kernel's own loss would need f32-sized steps;
  // instead compare with the reference's loss on exactly the kernel's inputs, then the kernel's loss to it
  // The variants of §3.1-3.4 whose gradient is the derivative of the loss value: GSPO (per-sequence advantages:
  // GSPO-token's gradient then equals the derivative through the sequence mean), the bias-corrected KL, the
  // constant rollout weights and entropy selection, the ratio cap, and CISPO where its weight is capped (constant).
  const arb = fc.record({
    B: fc.integer({ min: 1, max: 4 }),
    L: fc.integer({ min: 1, max: 5 }),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    variant: fc.constantFrom('plain', 'gspo', 'klBiasCorrection', 'rollout', 'ratioCap', 'topEntropy', 'cispo capped'),
  })
  let failure = ''
  await fc
    .assert(
      fc.asyncProperty(arb, async ({ B, L, seed, variant }) => {
        const rng = rngFor(`fd ${seed}`)
        const o: LossOptions = { beta: 0.1, kl: rng.pick(['k1', 'abs', 'k2', 'k3'] as const), dualClip: rng.pick([null, 1.5]), entropyCoef: 0.01 }
        if (variant === 'gspo') Object.assign(o, { ratioLevel: 'sequence', clipLow: 0.95, clipHigh: 30, dualClip: null })
        if (variant === 'klBiasCorrection') o.klBiasCorrection = true
        if (variant === 'rollout') o.rolloutCorrection = { level: rng.pick(['token', 'sequence'] as const), mode: rng.pick(['truncate', 'mask'] as const), max: 2, min: 0.5 }
        if (variant === 'ratioCap') Object.assign(o, { ratioCap: 1.5, clipHigh: 0.3 })
        if (variant === 'topEntropy') o.topEntropyQuantile = rng.pick([0, 0.3, 0.7])
        if (variant === 'cispo capped') Object.assign(o, { loss: 'cispo', clipHigh: 0.1 })
        const logp = genLogp(rng, B * L)
        const oldLogp =
          variant === 'cispo capped'
            ? Float32Array.from(logp, (v) => v - rng.range(0.2, 1)) // r > e^0.2 > 1.1: the weight is the constant 1.1
            : genOldLogp(rng, logp, undefined, o, { margin: 0.01 })
        const refLogp = genRefLogp(rng, logp, undefined)
        const advantages = genAdvantages(rng, B)
        const rolloutLogp = variant === 'rollout' ? genRolloutLogp(rng, oldLogp, undefined, o.rolloutCorrection!) : undefined
        const entropy = Float32Array.from({ length: B * L }, () => rng.range(0, 6))
        using scope = new Scope()
        const res = scope.adopt(
          await ops.policyLoss(
            {
              logp: scope.f32(logp, [B, L]),
              oldLogp: scope.f32(oldLogp, [B, L]),
              refLogp: scope.f32(refLogp, [B, L]),
              advantages: scope.f32(advantages, [B]),
              entropy: scope.f32(entropy, [B, L]),
              ...(rolloutLogp ? { rolloutLogp: scope.f32(rolloutLogp, [B, L]) } : {}),
            },
            o as Parameters<typeof ops.policyLoss>[1],
          ),
        )
        const grad = await res.gradLogp.toArray()
        const fd = new Float64Array(B * L)
        for (let i = 0; i < B * L; i++) {
          const h = 1e-6
          const at = (dx: number): number => {
            const x = Float64Array.from(logp)
            x[i] += dx
            return refPolicyLoss({ logp: x, oldLogp, refLogp, rolloutLogp, advantages, entropy, B, L }, o).loss
          }
          fd[i] = (at(h) - at(-h)) / (2 * h)
        }
        let diff = 0, n = 0
        for (let i = 0; i < B * L; i++) ((diff += (grad[i] - fd[i]) ** 2), (n += fd[i] ** 2))
        if (!(Math.sqrt(diff) <= 1e-5 * Math.sqrt(n) + 1e-9)) {
          failure = `${variant} B=${B} L=${L} seed=${seed} ${JSON.stringify(o)}: gradLogp ${[...grad]} vs finite differences ${[...fd]}`
          return false
        }
        return true
      }),
      { numRuns: 70, seed: SEED | 0 },
    )
    .then(
      () => t.pass('held on 70 random cases'),
      (e: Error) => t.fail(`${failure}\n${e.message}`),
    )
})

checkNoLeaks(t, start)

t.test('edge cases of the variants (docs/math.md §3.1-3.4) against the reference', async (t) => {
  const B = 2, L = 3
  const logp = Float32Array.from([-0.5, -1.2, -2, -0.1, -3, -0.7])
  const advantages = Float32Array.from([1.5, -0.8])
  const entropy = Float32Array.from([0.5, 2.5, 1, 3, 0.2, 1.7])
  const run = async (inputs: { old?: Float32Array; rollout?: Float32Array; mask?: Uint8Array; entropy?: Float32Array; logp?: Float32Array }, o: LossOptions) => {
    using scope = new Scope()
    const lp = inputs.logp ?? logp
    const res = scope.adopt(
      await ops.policyLoss(
        {
          logp: scope.f32(lp, [B, L]),
          advantages: scope.f32(advantages, [B]),
          ...(inputs.old ? { oldLogp: scope.f32(inputs.old, [B, L]) } : {}),
          ...(inputs.rollout ? { rolloutLogp: scope.f32(inputs.rollout, [B, L]) } : {}),
          ...(inputs.mask ? { mask: scope.u8(inputs.mask, [B, L]) } : {}),
          ...(inputs.entropy ? { entropy: scope.f32(inputs.entropy, [B, L]) } : {}),
        },
        o as Parameters<typeof ops.policyLoss>[1],
      ),
    )
    const ref = refPolicyLoss({ logp: lp, oldLogp: inputs.old, rolloutLogp: inputs.rollout, advantages, mask: inputs.mask, entropy: inputs.entropy, B, L }, o)
    const grad = (await res.gradLogp.toArray()) as Float32Array
    checkScalar(t, res.loss, ref.loss, `${JSON.stringify(o)}: loss`, 1e-5, 1e-6, ref.mass.loss, lossFloor(ref.stats.tokens, 1))
    checkStats(t, res.stats, ref.stats, ref.mass, `${JSON.stringify(o)}: stats`, 1e-5, lossFloor(ref.stats.tokens, 1))
    checkRelative(t, grad, ref.gradLogp, 1e-5, `${JSON.stringify(o)}: gradLogp`)
    return { res, grad, ref }
  }

  // A ratio of exp(40): finite everywhere, the clamp (or the cap) holds it; the rollout weight is truncated.
  const far = Float32Array.from(logp, (v) => v - 40)
  {
    const { res } = await run({ old: far, rollout: Float32Array.from(far, (v) => v - 40) }, { logRatioClamp: null, ratioCap: 3, rolloutCorrection: { max: 2 } })
    t.ok(Number.isFinite(res.loss), `exp(40): finite loss ${res.loss}`)
    t.equal(res.stats.rolloutWeightMax, 2, 'a weight of exp(40) truncated to max')
    t.ok(Math.abs(res.stats.ratioMax - Math.exp(40)) <= 1e-5 * Math.exp(40), 'ratioMax exp(40) without the clamp')
  }
  await run({ old: far }, { ratioLevel: 'sequence', logRatioClamp: null, loss: 'cispo' })
  await run({ old: far, rollout: Float32Array.from(far, (v) => v + 40) }, { rolloutCorrection: { level: 'sequence', mode: 'mask', max: 3 } })

  // A sequence of one token: GSPO's ratio is the token's.
  {
    const old = Float32Array.from(logp, (v) => v + 0.1)
    const oneToken = Uint8Array.from([0, 1, 0, 0, 0, 1])
    const seq = await run({ old, mask: oneToken }, { ratioLevel: 'sequence', beta: 0 })
    const tok = await run({ old, mask: oneToken }, { ratioLevel: 'token', beta: 0 })
    t.same([...seq.grad], [...tok.grad], 'one counted token: sequence and token ratios give the same gradient')
    t.equal(seq.res.loss, tok.res.loss)
  }

  // Every token masked by the correction: no policy term, only the entropy bonus's value remains.
  {
    const old = Float32Array.from(logp, (v) => v + 0.05)
    const { res, grad } = await run({ old, rollout: Float32Array.from(old, (v) => v - 1), entropy }, { rolloutCorrection: { mode: 'mask', max: 2 }, entropyCoef: 0.1 })
    t.equal(res.stats.rolloutCorrectedFrac, 1, 'all corrected')
    t.equal(res.stats.rolloutWeightMean, 0)
    t.equal(res.stats.pgLoss, 0, 'no policy loss')
    t.same([...grad], new Array(B * L).fill(0), 'gradient 0 (the entropy bonus does not depend on logp)')
  }

  // A quantile that selects no token (no counted token) and ρ = 0 (only the highest entropy).
  {
    const { res } = await run({ entropy, mask: new Uint8Array(B * L) }, { topEntropyQuantile: 0.2 })
    t.equal(res.stats.entropySelectedFrac, 0, 'nothing counted: nothing selected')
    t.equal(res.loss, 0)
    const top = await run({ entropy }, { topEntropyQuantile: 0 })
    t.equal(top.res.stats.entropySelectedFrac, 1 / 6, 'ρ = 0: the top token only')
    t.equal(top.res.stats.entropyThreshold, 3)
    t.same([...top.grad].map((g, i) => (i === 3 ? 0 : g)), new Array(B * L).fill(0), 'only token 3 (H = 3) carries a gradient')
    t.not(top.grad[3], 0)
  }

  // rolloutLogp = oldLogp: weights of exactly 1, results identical to no correction.
  {
    const old = Float32Array.from(logp, (v) => v + 0.3)
    for (const level of ['token', 'sequence'] as const) {
      for (const mode of ['truncate', 'mask'] as const) {
        const withCorrection = await run({ old, rollout: old }, { rolloutCorrection: { level, mode, max: 1, min: 1 } })
        const without = await run({ old }, {})
        t.equal(withCorrection.res.stats.rolloutWeightMean, 1, `${level} ${mode}: weights exactly 1`)
        t.equal(withCorrection.res.stats.rolloutCorrectedFrac, 0)
        t.equal(withCorrection.res.stats.rolloutGapMax, 0)
        t.equal(withCorrection.res.stats.rolloutKl, 0)
        t.same([...withCorrection.grad], [...without.grad], `${level} ${mode}: the same gradient bits as without correction`)
        t.equal(withCorrection.res.loss, without.res.loss)
      }
    }
  }
})

t.test('the variant options: rules and messages', async (t) => {
  using scope = new Scope()
  const B = 1, L = 2
  const base = { logp: scope.f32([-1, -2], [B, L]), advantages: scope.f32([1], [B]) }
  const old = scope.f32([-1.1, -2.1], [B, L])
  const rollout = scope.f32([-1.2, -2.2], [B, L])
  const bad = async (inputs: object, o: object, re: RegExp) =>
    t.rejects(ops.policyLoss({ ...base, ...inputs } as never, o as never), { code: 'ERR_GRPO_INVALID_ARG', message: re }, re.source)
  await bad({ oldLogp: old }, { rolloutCorrection: { max: 2 } }, /rolloutLogp/)
  await bad({ rolloutLogp: rollout }, { rolloutCorrection: { max: 2 } }, /oldLogp/)
  await bad({ oldLogp: old, rolloutLogp: rollout }, {}, /rolloutCorrection/)
  await bad({ oldLogp: old, rolloutLogp: rollout }, { rolloutCorrection: { levle: 'token' } }, /did you mean level/)
  await bad({ oldLogp: old, rolloutLogp: rollout }, { rolloutCorrection: { min: 3, max: 2 } }, /min <= max/)
  await bad({ oldLogp: old, rolloutLogp: rollout }, { rolloutCorrection: 'token_mask' }, /rolloutCorrection object/)
  await bad({}, { topEntropyQuantile: 0.5 }, /entropy tensor/)
  await bad({}, { topEntropyQuantile: 1.5 }, /\[0, 1\]/)
  await bad({}, { ratioCap: 1 }, /> 1/)
  await bad({}, { loss: 'nll', ratioLevel: 'sequence' }, /nll/)
  await bad({}, { lossType: 'grpo', lossAgg: 'token-mean' }, /seq-mean-token-mean/)
  await bad({}, { lossType: 'drgrpo' }, /dr_grpo/)
  // explicit defaults and null pass
  const ok = scope.adopt(await ops.policyLoss({ ...base, oldLogp: old }, { lossType: null, rolloutCorrection: null, ratioCap: null, lossAgg: 'token-mean', ratioLevel: 'token' }))
  t.ok(Number.isFinite(ok.loss))
  const lt = scope.adopt(await ops.policyLoss({ ...base, oldLogp: old }, { lossType: 'grpo', lossAgg: 'seq-mean-token-mean' }))
  t.ok(Number.isFinite(lt.loss), 'lossType with its own lossAgg is fine')
})

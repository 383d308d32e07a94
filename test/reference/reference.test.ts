/**
 * Tests of the float64 reference itself: closed forms on hand-sized inputs, the half-precision codecs over every
 * bit pattern, and a finite-difference check that the §5 gradient formula is the derivative of the §3-4 loss
 * for every option combination. None of this needs the native addon.
 */
import t from 'tap'
import {
  K3_VALUE_CLAMP_POINTS,
  bf16BitsToNumber,
  f16BitsToNumber,
  groupAdvantages,
  grpoLoss,
  klTerm,
  lossWeights,
  numberToBf16Bits,
  numberToF16Bits,
  policyLoss,
  rowStats,
  tokenLogprobs,
  tokenTerms,
  type GrpoLossInput,
  type KlEstimator,
  type LossAgg,
  type LossOptions,
} from './grpo-reference.js'
import { genLogits, genMask, genOldLogp, genRefLogp, genTargets, genAdvantages, rngFor, seedComment } from '../helpers/random.js'
import { norm, relativeError } from '../helpers/compare.js'

/** The statistics of §3.3-3.4 when rolloutCorrection and topEntropyQuantile are off. */
const OFF_VARIANT_STATS = { rolloutWeightMean: 0, rolloutWeightMax: 0, rolloutCorrectedFrac: 0, rolloutGapMean: 0, rolloutGapMax: 0, rolloutKl: 0, entropySelectedFrac: 1, entropyThreshold: 0 }

t.comment(seedComment())

const close = (a: number, b: number, tol = 1e-12): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b))

t.test('§1 closed forms', async (t) => {
  t.test('V = 2: logp = −softplus(x_other − x_y), binary entropy', async (t) => {
    for (const [a, b, T] of [
      [1, 3, 1],
      [-2, 0.5, 0.7],
      [40, -40, 2],
    ]) {
      const r = rowStats([a, b], 0, 2, T, 0)
      const za = a / T
      const zb = b / T
      const softplus = (x: number): number => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)))
      t.ok(close(r.logp, -softplus(zb - za)), `logp ${a},${b},T=${T}`)
      t.ok(close(r.lse, za + softplus(zb - za)), 'lse')
      const p = 1 / (1 + Math.exp(zb - za))
      const H = -(p > 0 ? p * Math.log(p) : 0) - (p < 1 ? (1 - p) * Math.log1p(-p) : 0)
      t.ok(close(r.entropy, H, 1e-10), `entropy ${r.entropy} vs ${H}`)
    }
  })
  t.test('confident rows keep full relative precision (gaps 10 to 80)', async (t) => {
    for (const gap of [10, 30, 40, 80]) {
      const tail = Math.exp(-gap) // the other token's weight relative to the target's
      const r = rowStats([gap, 0], 0, 2, 1, 0)
      const logp = -Math.log1p(tail)
      const H = Math.log1p(tail) + (gap * tail) / (1 + tail)
      t.ok(close(r.logp, logp, 1e-14), `gap ${gap}: logp ${r.logp} vs ${logp}`)
      t.ok(close(r.entropy, H, 1e-14), `gap ${gap}: entropy ${r.entropy} vs ${H}`)
      // nll, one token: ∂loss/∂x_y = −(1 − p_y) = −tail / (1 + tail)
      const g = grpoLoss({ logits: [gap, 0], targets: [0], advantages: [0], B: 1, L: 1, V: 2 }, { loss: 'nll' }).gradLogits
      t.ok(close(g[0], -tail / (1 + tail), 1e-14) && close(g[1], tail / (1 + tail), 1e-14), `gap ${gap}: gradient ${g[0]}, ${g[1]}`)
    }
  })
  t.test('banned tokens (−∞) give p = 0 and no NaN', async (t) => {
    const r = rowStats([0, -Infinity, 0], 0, 3, 1, 2)
    t.ok(close(r.logp, -Math.log(2)))
    t.ok(close(r.lse, Math.log(2)))
    t.ok(close(r.entropy, Math.log(2)))
    const only = rowStats([-Infinity, 5, -Infinity], 0, 3, 1, 1)
    t.equal(only.logp, 0)
    t.equal(only.entropy, 0)
    t.equal(only.lse, 5)
  })
  t.test('V = 1: logp 0, entropy 0, lse = x / T', async (t) => {
    const r = rowStats([3], 0, 1, 2, 0)
    t.equal(r.logp, 0)
    t.equal(r.entropy, 0)
    t.equal(r.lse, 1.5)
  })
  t.test('huge logits do not overflow; uniform rows give log V', async (t) => {
    const r = rowStats([1000, 0], 0, 2, 1, 1)
    t.ok(close(r.lse, 1000))
    t.ok(close(r.logp, -1000))
    const u = rowStats(new Array(8).fill(0.25), 0, 8, 1, 3)
    t.ok(close(u.logp, -Math.log(8)))
    t.ok(close(u.entropy, Math.log(8)))
  })
  t.test('batch: masked rows are not read and give 0', async (t) => {
    const logits = [0, 0, NaN, NaN, 1, 2]
    const out = tokenLogprobs({ logits, targets: [1, -100, 0], mask: [1, 0, 1], B: 1, L: 3, V: 2 })
    t.ok(close(out.logp[0], -Math.log(2)))
    t.equal(out.logp[1], 0)
    t.equal(out.lse[1], 0)
    t.equal(out.entropy[1], 0)
    t.ok(close(out.logp[2], -Math.log1p(Math.exp(1))))
  })
})

t.test('half-precision codecs', async (t) => {
  t.test('known values', async (t) => {
    t.equal(numberToBf16Bits(1), 0x3f80)
    t.equal(numberToBf16Bits(-2), 0xc000)
    t.equal(numberToBf16Bits(-0), 0x8000)
    t.equal(numberToBf16Bits(Infinity), 0x7f80)
    t.equal(numberToBf16Bits(-Infinity), 0xff80)
    t.ok(Number.isNaN(bf16BitsToNumber(numberToBf16Bits(NaN))))
    t.equal(numberToBf16Bits(1 + 2 ** -8), 0x3f80, 'tie to even (down)')
    t.equal(numberToBf16Bits(1 + 3 * 2 ** -8), 0x3f82, 'tie to even (up)')
    t.equal(numberToBf16Bits(1 + 2 ** -8 + 2 ** -30), 0x3f81, 'just above the tie rounds up')
    t.equal(numberToBf16Bits(3.4e38), 0x7f80, 'past the largest bf16 rounds to ∞')
    t.equal(numberToBf16Bits(2 ** -133), 0x0001, 'smallest subnormal')
    t.equal(numberToBf16Bits(2 ** -134), 0x0000, 'half the smallest subnormal ties to 0')
    t.equal(numberToF16Bits(1), 0x3c00)
    t.equal(numberToF16Bits(65504), 0x7bff)
    t.equal(numberToF16Bits(65519.99), 0x7bff)
    t.equal(numberToF16Bits(65520), 0x7c00, 'the tie above the largest f16 rounds to ∞')
    t.equal(numberToF16Bits(2 ** -24), 0x0001)
    t.equal(numberToF16Bits(2 ** -25), 0x0000)
    t.equal(numberToF16Bits(3 * 2 ** -25), 0x0002)
    t.equal(numberToF16Bits(2 ** -14), 0x0400, 'smallest normal')
    t.equal(numberToF16Bits(1 / 3), 0x3555)
    t.equal(numberToF16Bits(-0), 0x8000)
    t.equal(numberToF16Bits(-Infinity), 0xfc00)
    t.ok(Number.isNaN(f16BitsToNumber(numberToF16Bits(NaN))))
    t.equal(f16BitsToNumber(0x7bff), 65504)
    t.equal(f16BitsToNumber(0x8001), -(2 ** -24))
    t.equal(bf16BitsToNumber(0x3f81), 1 + 2 ** -7)
  })
  for (const [name, encode, decode] of [
    ['bf16', numberToBf16Bits, bf16BitsToNumber],
    ['f16', numberToF16Bits, f16BitsToNumber],
  ] as const) {
    t.test(`${name}: every bit pattern round-trips; midpoints round to even`, async (t) => {
      let bad = 0
      for (let bits = 0; bits < 0x10000; bits++) {
        const v = decode(bits)
        if (Number.isNaN(v)) continue
        if (encode(v) !== bits) bad++
      }
      t.equal(bad, 0, 'round trip')
      // between consecutive positive finite values: the midpoint goes to the even one, either side of it to the near one
      let midBad = 0
      for (let bits = 0; bits < 0x7fff; bits++) {
        const a = decode(bits)
        const b = decode(bits + 1)
        if (!Number.isFinite(a) || !Number.isFinite(b)) continue
        const mid = (a + b) / 2
        const even = bits % 2 === 0 ? bits : bits + 1
        if (encode(mid) !== even) midBad++
        if (encode(mid - (b - a) / 8) !== bits) midBad++
        if (encode(mid + (b - a) / 8) !== bits + 1) midBad++
        if (encode(-mid) !== (even | 0x8000)) midBad++
      }
      t.equal(midBad, 0, 'midpoints')
    })
  }
})

t.test('§2 advantages by hand', async (t) => {
  const s3 = Math.sqrt(1 / 3) // unbiased std of [1,0,0,1]
  t.test('[1,0,0,1], one group of 4', async (t) => {
    const r = groupAdvantages([1, 0, 0, 1], { groupSize: 4 })
    const a = 0.5 / (s3 + 1e-6)
    t.same([...r.advantages].map((x) => +x.toFixed(12)), [a, -a, -a, a].map((x) => +x.toFixed(12)))
    t.same(r.groupIds, [0])
    t.ok(close(r.groupMean[0], 0.5))
    t.ok(close(r.groupStd[0], s3))
    t.equal(r.zeroStdFraction, 0)
  })
  t.test('[1,0,0,1], groups of 2', async (t) => {
    const r = groupAdvantages([1, 0, 0, 1], { groupSize: 2 })
    const a = 0.5 / (Math.SQRT1_2 + 1e-6)
    t.ok(close(r.advantages[0], a) && close(r.advantages[1], -a) && close(r.advantages[2], -a) && close(r.advantages[3], a))
    t.same(r.groupIds, [0, 1])
  })
  t.test('leave-one-out divides by the whole group std', async (t) => {
    const r = groupAdvantages([1, 0, 0, 1], { groupSize: 4, baseline: 'leave-one-out' })
    t.ok(close(r.advantages[0], (1 - 1 / 3) / (s3 + 1e-6)))
    t.ok(close(r.advantages[1], (0 - 2 / 3) / (s3 + 1e-6)))
  })
  t.test('scale none and batch', async (t) => {
    const none = groupAdvantages([1, 0, 5, 7], { groupSize: 2, scale: 'none' })
    t.same([...none.advantages], [0.5, -0.5, -1, 1])
    const batch = groupAdvantages([1, 0, 5, 7], { groupSize: 2, scale: 'batch', eps: 0 })
    const sd = Math.sqrt(32.75 / 3)
    t.ok(close(batch.advantages[0], 0.5 / sd) && close(batch.advantages[3], 1 / sd))
  })
  t.test('zero spread and singletons give exactly 0', async (t) => {
    const r = groupAdvantages([2, 2, 2, 3, 4, 7], { groupIds: [5, 5, 5, -1, 9, 9] })
    t.same(r.groupIds, [-1, 5, 9])
    t.equal(r.advantages[0], 0)
    t.equal(r.advantages[3], 0, 'singleton')
    t.ok(r.advantages[4] < 0 && r.advantages[5] > 0)
    t.ok(close(r.zeroStdFraction, 2 / 3))
    t.same([...r.groupStd], [0, 0, Math.sqrt(4.5)])
    t.same([...r.groupMean], [3, 2, 5.5])
  })
  t.test('non-finite rewards: error, or excluded from every statistic', async (t) => {
    t.throws(() => groupAdvantages([1, NaN, 0], { groupSize: 3 }))
    const r = groupAdvantages([1, NaN, 0, Infinity, -Infinity, 4], { groupSize: 3, nonFinite: 'exclude' })
    t.equal(r.advantages[1], 0)
    t.ok(close(r.advantages[0], 0.5 / (Math.SQRT1_2 + 1e-6)))
    t.same([...r.advantages.slice(3)], [0, 0, 0], 'the group left with one finite reward')
    t.same([...r.groupMean], [0.5, 4])
    t.same([...r.groupStd], [Math.SQRT1_2, 0])
    t.equal(r.zeroStdFraction, 0.5)
    const none = groupAdvantages([NaN, NaN], { groupSize: 2, nonFinite: 'exclude' })
    t.same([...none.groupMean], [0])
    t.equal(none.zeroStdFraction, 1, 'a group without finite rewards has no spread')
    const batch = groupAdvantages([1, NaN, 3, 0], { groupSize: 2, nonFinite: 'exclude', scale: 'batch', eps: 0 })
    t.equal(batch.advantages[0], 0, 'singleton after exclusion')
    t.ok(close(batch.advantages[2], 1.5 / Math.sqrt(7 / 3)), 'batch std over the finite rewards only')
  })
  t.test('the variance is not E[r²] − E[r]²', async (t) => {
    const big = 1e8
    const r = groupAdvantages([big + 1, big, big, big + 1], { groupSize: 4 })
    t.ok(close(r.groupStd[0], s3, 1e-9))
  })
})

t.test('§3 token terms by hand', async (t) => {
  const e05 = Math.exp(0.5)
  let x = tokenTerms(-1, -1.5, undefined, 1, {})
  t.ok(close(x.pg, -1.2) && x.pgGrad === 0 && x.clipped, 'A > 0, r > 1 + ε: clipped, no gradient')
  x = tokenTerms(-1, -1.5, undefined, -1, {})
  t.ok(close(x.pg, e05) && close(x.pgGrad, e05) && !x.clipped, 'A < 0, r > 1 + ε: unclipped')
  x = tokenTerms(-1, -1.5, undefined, -1, { dualClip: 1.5 })
  t.ok(close(x.pg, 1.5) && x.pgGrad === 0 && x.dualCapped, 'dual clip caps at −c·A')
  x = tokenTerms(-1, -1.5, undefined, -1, { dualClip: 3 })
  t.ok(close(x.pg, e05) && !x.dualCapped, 'cap above the loss: inactive')
  x = tokenTerms(-1, -0.5, undefined, -1, {})
  t.ok(close(x.pg, 0.8) && x.pgGrad === 0 && x.clipped, 'A < 0, r < 1 − ε: clipped')
  x = tokenTerms(-1, -1.1, undefined, 2, {})
  t.ok(close(x.pgGrad, -2 * Math.exp(0.1)) && !x.clipped, 'inside the clip range')
  x = tokenTerms(-1, -1.5, undefined, -1, { logRatioClamp: 0.3 })
  t.ok(close(x.ratio, Math.exp(0.3)) && close(x.pg, Math.exp(0.3)) && x.pgGrad === 0, 'log-ratio clamp: no gradient')
  x = tokenTerms(-1, -1.5, undefined, -1, { logRatioClamp: null })
  t.ok(close(x.ratio, e05), 'clamp disabled')
  x = tokenTerms(-3, -1.5 - 20, undefined, -1, {})
  t.ok(close(x.ratio, Math.exp(18.5)) && x.pgGrad !== 0, 'default clamp 20 inactive at 18.5')
  x = tokenTerms(-3, -1.5 - 30, undefined, -1, {})
  t.ok(close(x.ratio, Math.exp(20)) && x.pgGrad === 0, 'default clamp 20 active at 28.5')
  x = tokenTerms(-1, undefined, undefined, 3, {})
  t.ok(x.ratio === 1 && close(x.pgGrad, -3), 'no old: r = 1, gradient −A')
  x = tokenTerms(-1, -1, undefined, 0, {})
  t.ok(x.pg === 0 && !x.clipped, 'A = 0: tie counts as unclipped')
  x = tokenTerms(-1, -1.5, -0.2, 1, { loss: 'nll' })
  t.ok(x.pg === 1 && x.pgGrad === -1 && !x.clipped && close(x.ratio, e05), 'nll: −logp, ratio kept for monitoring')

  // KL, d = ref − logp = −0.5
  const kl = (k: KlEstimator): { value: number; grad: number } => klTerm(k, -1, -1.5)
  t.ok(close(kl('k1').value, 0.5) && kl('k1').grad === 1, 'k1')
  t.ok(close(kl('abs').value, 0.5) && kl('abs').grad === 1, 'abs')
  t.ok(klTerm('abs', -1, -0.5).grad === -1 && klTerm('abs', -1, -1).grad === 0, 'abs sign, sign(0) = 0')
  t.ok(close(kl('k2').value, 0.125) && close(kl('k2').grad, 0.5), 'k2')
  t.ok(close(kl('k3').value, Math.exp(-0.5) - 0.5) && close(kl('k3').grad, 1 - Math.exp(-0.5)), 'k3')
  t.ok(close(kl('k3+').value, kl('k3').value) && close(kl('k3+').grad, 0.5), 'k3+: k3 value, k2 gradient')
  t.same(klTerm('k3', 0, 3), { value: 10, grad: 0 }, 'k3 value clamp above')
  t.same(klTerm('k3', 0, -25), { value: 10, grad: 0 }, 'k3 d clamp (and value clamp) below')
  t.ok(klTerm('k3', 0, 2.5).value < 10 && klTerm('k3', 0, 2.5).grad !== 0, 'just under the value clamp')
  for (const d of K3_VALUE_CLAMP_POINTS) t.ok(close(Math.exp(d) - d - 1, 10, 1e-12), `exp(d) − d − 1 = 10 at ${d}`)
  t.ok(K3_VALUE_CLAMP_POINTS[0] < -10.9999 && K3_VALUE_CLAMP_POINTS[0] > -11 && K3_VALUE_CLAMP_POINTS[1] > 2.6 && K3_VALUE_CLAMP_POINTS[1] < 2.62)
})

t.test('§4 weights by hand', async (t) => {
  const mask = [1, 1, 0, 1, 0, 0, 0, 0, 0]
  const w = (o: LossOptions): number[] => [...lossWeights(mask, 3, 3, o)]
  t.same(w({}), [1 / 3, 1 / 3, 0, 1 / 3, 0, 0, 0, 0, 0])
  t.same(w({ lossAgg: 'seq-mean-token-mean' }), [0.25, 0.25, 0, 0.5, 0, 0, 0, 0, 0])
  t.same(w({ lossAgg: 'seq-mean-token-sum' }), [0.5, 0.5, 0, 0.5, 0, 0, 0, 0, 0])
  t.same(w({ lossAgg: 'seq-mean-token-sum-norm' }), [1 / 9, 1 / 9, 0, 1 / 9, 0, 0, 0, 0, 0])
  t.same(w({ lossAgg: 'seq-mean-token-sum-norm', normLength: 4 }), [1 / 12, 1 / 12, 0, 1 / 12, 0, 0, 0, 0, 0])
  t.same(w({ normalizer: 10 }), [0.1, 0.1, 0, 0.1, 0, 0, 0, 0, 0])
  t.same(w({ lossAgg: 'seq-mean-token-mean', normalizer: 10 }), [0.05, 0.05, 0, 0.1, 0, 0, 0, 0, 0])
  t.same(w({ lossAgg: 'seq-mean-token-sum-norm', normalizer: 6 }), [1 / 6, 1 / 6, 0, 1 / 6, 0, 0, 0, 0, 0])
  t.same([...lossWeights([0, 0, 0, 0], 2, 2, {})], [0, 0, 0, 0], 'no counted token: w = 0, never NaN')
  t.same([...lossWeights(undefined, 2, 2, { lossAgg: 'seq-mean-token-mean' })], [0.25, 0.25, 0.25, 0.25])
})

t.test('§3-4, §6 policy loss and stats by hand', async (t) => {
  // two sequences of two tokens, the second token of sequence 1 masked
  const logp = [-1, -2, -0.5, 9]
  const old = [-1.1, -1.5, -0.5, NaN]
  const ref = [-1.2, -2.1, -0.4, NaN]
  const A = [1, -1]
  const r = policyLoss({ logp, oldLogp: old, refLogp: ref, advantages: A, mask: [1, 1, 1, 0], entropy: [0.5, 1, 2, 99], B: 2, L: 2 }, { beta: 0.1, kl: 'k2', entropyCoef: 0.01 })
  const r0 = Math.exp(0.1), r1 = Math.exp(-0.5), r2 = 1
  // token 0: A = 1, r = 1.105, inside the range; token 1: A = 1, r = 0.607 < 0.8 but pg1 = −0.607 > pg2 = −0.8, so
  // unclipped; token 2: A = −1, r = 1
  const pg = [-r0, -r1, r2]
  const kl = [0.5 * 0.2 ** 2, 0.5 * 0.1 ** 2, 0.5 * 0.1 ** 2]
  const H = [0.5, 1, 2]
  const loss = [0, 1, 2].reduce((s, i) => s + (pg[i] + 0.1 * kl[i] - 0.01 * H[i]) / 3, 0)
  t.ok(close(r.loss, loss), `loss ${r.loss} vs ${loss}`)
  t.ok(close(r.stats.pgLoss, (pg[0] + pg[1] + pg[2]) / 3))
  t.ok(close(r.stats.klMean, (kl[0] + kl[1] + kl[2]) / 3))
  t.ok(close(r.stats.entropyMean, 3.5 / 3))
  t.equal(r.stats.clipFrac, 0)
  t.ok(close(r.stats.ratioMean, (r0 + r1 + r2) / 3))
  t.ok(close(r.stats.ratioMax, r0))
  t.ok(close(r.stats.approxKl, (-0.1 + 0.5 + 0) / 3))
  t.equal(r.stats.tokens, 3)
  t.equal(r.gradLogp[3], 0)
  t.ok(close(r.gradLogp[0], (-r0 + 0.1 * 0.2) / 3))
  t.ok(close(r.gradLogp[1], (-r1 + 0.1 * 0.1) / 3))
  t.ok(close(r.gradLogp[2], (1 - 0.1 * 0.1) / 3))

  const empty = policyLoss({ logp, advantages: A, mask: [0, 0, 0, 0], B: 2, L: 2 }, {})
  t.same(empty.stats, { loss: 0, pgLoss: 0, klMean: 0, entropyMean: 0, clipFrac: 0, clipFracLower: 0, ratioMean: 0, ratioMax: 0, approxKl: 0, tokens: 0, ...OFF_VARIANT_STATS })

  const nll = policyLoss({ logp: [-1, -2], refLogp: [-1.5, -2], advantages: [5], B: 1, L: 2 }, { loss: 'nll', beta: 1, kl: 'k1' })
  t.ok(close(nll.loss, 1.5) && close(nll.stats.pgLoss, 1.5), 'nll: no KL in the loss')
  t.ok(close(nll.stats.klMean, 0.25), 'klMean still reported')
  t.same([...nll.gradLogp], [-0.5, -0.5])
})

// ---------------------------------------------------------------------------------------------------------
// Finite differences: the §5 gradient is d(loss)/d(logits) of the §3-4 loss, for every option combination.
// ---------------------------------------------------------------------------------------------------------

function fdGradient(input: GrpoLossInput, options: LossOptions): Float64Array {
  const x = Float64Array.from(input.logits)
  const grad = new Float64Array(x.length)
  for (let i = 0; i < x.length; i++) {
    if (x[i] === -Infinity) continue // a banned token stays banned: its derivative is 0
    // fourth-order central stencil: truncation O(h⁴), so h can be large enough to keep rounding noise small
    const h = 1e-4 * Math.max(1, Math.abs(x[i]))
    const keep = x[i]
    const at = (dx: number): number => {
      x[i] = keep + dx
      return grpoLoss({ ...input, logits: x }, options).loss
    }
    grad[i] = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
    x[i] = keep
  }
  return grad
}

t.test('§5 gradient = finite differences of the loss, every option combination', async (t) => {
  const kls: KlEstimator[] = ['k1', 'abs', 'k2', 'k3', 'k3+']
  const aggs: LossAgg[] = ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm']
  const B = 2, L = 2, V = 3
  let combos = 0
  let worst = 0
  let worstRaw = 0
  const failures: string[] = []
  for (const kl of kls)
    for (const lossAgg of aggs)
      for (const dualClip of [null, 1.6])
        for (const logRatioClamp of [20, 0.35])
          for (const beta of [0, 0.3])
            for (const entropyCoef of [0, 0.05])
              for (const temperature of [1, 0.7])
                for (const loss of ['grpo', 'nll'] as const)
                  for (const perToken of [false, true])
                    for (const withOld of [false, true])
                      for (const masked of [false, true]) {
                        const label = `${kl} ${lossAgg} dual=${dualClip} C=${logRatioClamp} β=${beta} cH=${entropyCoef} T=${temperature} ${loss} perToken=${perToken} old=${withOld} mask=${masked}`
                        const rng = rngFor(label)
                        const logits = genLogits(rng, { B, L, V, dtype: 'f32', scale: [0.5, 3], negInfRows: 0.3 })
                        const targets = genTargets(rng, logits, { temperature })
                        const mask = masked ? genMask(rng, B, L, 'random') : undefined
                        const options: LossOptions = { kl, lossAgg, dualClip, logRatioClamp, beta, entropyCoef, temperature, loss }
                        const logp = tokenLogprobs({ logits: logits.values, targets, B, L, V }, { temperature }).logp
                        const oldLogp = withOld ? genOldLogp(rng, logp, mask, options, { wide: 1.5 }) : undefined
                        const refLogp = genRefLogp(rng, logp, mask)
                        const advantages = genAdvantages(rng, perToken ? B * L : B)
                        const input: GrpoLossInput = { logits: logits.values, targets, mask, oldLogp, refLogp, advantages, B, L, V }
                        const got = grpoLoss(input, options)
                        // without old the ratio is exp(logp − stopgrad(logp)): differentiate the loss with old frozen at logp(x0)
                        const frozen: GrpoLossInput = withOld ? input : { ...input, oldLogp: got.logp }
                        const againFrozen = grpoLoss(frozen, options)
                        if (!withOld && (againFrozen.loss !== got.loss || relativeError(againFrozen.gradLogits, got.gradLogits).error > 1e-14)) {
                          failures.push(`${label}: old = logp differs from no old`)
                        }
                        // k3+ is defined with the k2 gradient: differentiate the k2 loss for it, and check its value is k3's
                        const fdOptions: LossOptions = kl === 'k3+' ? { ...options, kl: 'k2' } : options
                        if (kl === 'k3+') {
                          const k3 = grpoLoss(input, { ...options, kl: 'k3' })
                          if (Math.abs(k3.loss - got.loss) > 1e-15 || k3.stats.klMean !== got.stats.klMean) failures.push(`${label}: k3+ value is not k3's`)
                        }
                        const fd = fdGradient(frozen, fdOptions)
                        // the stencil's rounding noise is absolute (≈ 1e-16·|loss|/h per entry): a gradient that is itself
                        // tiny (a target with p ≈ 1) is checked against that floor instead of relatively
                        const noise = 1e-10 * (1 + got.mass.loss)
                        const rel = relativeError(got.gradLogits, fd).error
                        const e = rel * norm(fd) <= noise ? 0 : rel
                        worst = Math.max(worst, e)
                        worstRaw = Math.max(worstRaw, rel)
                        if (!(e <= 1e-6)) failures.push(`${label}: relative error ${e} ${JSON.stringify({ g: [...got.gradLogits], fd: [...fd], x: [...logits.values], targets: [...targets], mask, oldLogp, refLogp, advantages, logp: [...got.logp] })}`)
                        for (let i = 0; i < logits.values.length; i++) {
                          if (logits.values[i] === -Infinity && got.gradLogits[i] !== 0) failures.push(`${label}: banned token gradient ${got.gradLogits[i]}`)
                          if (mask && mask[Math.floor(i / V)] === 0 && got.gradLogits[i] !== 0) failures.push(`${label}: masked row gradient`)
                        }
                        combos++
                      }
  t.same(failures, [], `${combos} combinations, worst relative error ${worst.toExponential(2)} (${worstRaw.toExponential(2)} with near-zero gradients)`)
})

t.test('§5 gradient with normalizer and normLength, and the policyLoss gradient', async (t) => {
  const rng = rngFor('normalizer fd')
  const B = 3, L = 2, V = 4
  for (const [lossAgg, extra] of [
    ['token-mean', { normalizer: 17 }],
    ['seq-mean-token-mean', { normalizer: 5 }],
    ['seq-mean-token-sum', { normalizer: 2.5 }],
    ['seq-mean-token-sum-norm', { normLength: 7 }],
    ['seq-mean-token-sum-norm', { normalizer: 11, normLength: 7 }],
  ] as Array<[LossAgg, LossOptions]>) {
    const logits = genLogits(rng, { B, L, V, dtype: 'f32', scale: [0.3, 3] })
    const targets = genTargets(rng, logits)
    const mask = genMask(rng, B, L, 'padded')
    const logp = tokenLogprobs({ logits: logits.values, targets, B, L, V }).logp
    const options: LossOptions = { lossAgg, ...extra, beta: 0.05, entropyCoef: 0.02 }
    const input: GrpoLossInput = {
      logits: logits.values,
      targets,
      mask,
      oldLogp: genOldLogp(rng, logp, mask, options),
      refLogp: genRefLogp(rng, logp, mask),
      advantages: genAdvantages(rng, B),
      B,
      L,
      V,
    }
    const got = grpoLoss(input, options)
    t.ok(relativeError(got.gradLogits, fdGradient(input, options)).error <= 1e-6, `${lossAgg} ${JSON.stringify(extra)}`)

    // the policyLoss gradient is d(loss)/d(logp): differences in logp, entropy held fixed
    const base = { logp: Float64Array.from(got.logp), oldLogp: input.oldLogp, refLogp: input.refLogp, advantages: input.advantages, mask, entropy: got.entropy, B, L }
    const pl = policyLoss(base, options)
    t.ok(Math.abs(pl.loss - got.loss) <= 1e-15 * Math.max(1, pl.mass.loss), 'policyLoss on the same logp gives the same loss')
    const fd = new Float64Array(B * L)
    for (let i = 0; i < B * L; i++) {
      const h = 1e-6
      const up = Float64Array.from(base.logp)
      const down = Float64Array.from(base.logp)
      up[i] += h
      down[i] -= h
      fd[i] = (policyLoss({ ...base, logp: up }, options).loss - policyLoss({ ...base, logp: down }, options).loss) / (2 * h)
    }
    t.ok(relativeError(pl.gradLogp, fd).error <= 1e-6, 'gradLogp = d(loss)/d(logp)')
  }
})

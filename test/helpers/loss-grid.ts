/**
 * The option grid of the loss ops (policyLoss and grpoLoss). The full product of every option is far too large,
 * so the grid is: every value of every option once on its own (one factor at a time, on top of a base case),
 * a few hand-picked combinations, and a set of seeded random combinations where every option is drawn at once.
 */
import type { KlEstimator, LossAgg, LossOptions } from '../reference/grpo-reference.js'
import type { MaskKind, Rng } from './random.js'

export interface LossConfig {
  name: string
  /** undefined: the op is called without an options argument */
  options: (LossOptions & { gradDtype?: 'f32' | 'same'; inplace?: boolean }) | undefined
  perToken: boolean
  withOld: boolean
  withRef: boolean
  maskKind: MaskKind
  /** policyLoss only: pass an entropy tensor */
  withEntropy: boolean
  /** pass rolloutLogp (read by options.rolloutCorrection) */
  withRollout?: boolean
  sync: boolean
}

const KLS: KlEstimator[] = ['k1', 'abs', 'k2', 'k3', 'k3+']
const AGGS: LossAgg[] = ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm']

export function lossConfigs(op: 'policy' | 'grpo', rng: Rng, randomCount: number): LossConfig[] {
  const base: Omit<LossConfig, 'name' | 'options'> = {
    perToken: false,
    withOld: true,
    withRef: false,
    maskKind: 'none',
    withEntropy: false,
    sync: false,
  }
  const list: LossConfig[] = []
  const add = (name: string, options: LossConfig['options'], over: Partial<LossConfig> = {}): void => {
    list.push({ ...base, name, options, ...over, sync: list.length % 2 === 1 })
  }

  add('no options argument', undefined)
  add('empty options', {})
  for (const kl of KLS) add(`kl ${kl}, beta 0.1`, { kl, beta: 0.1 }, { withRef: true, maskKind: 'random' })
  add('kl default (k3), beta 0.04', { beta: 0.04 }, { withRef: true })
  add('refLogp with beta 0 (klMean for monitoring)', { beta: 0, kl: 'k2' }, { withRef: true })
  for (const lossAgg of AGGS) add(`lossAgg ${lossAgg}`, { lossAgg }, { maskKind: 'padded' })
  add('lossAgg seq-mean-token-sum-norm, normLength 7', { lossAgg: 'seq-mean-token-sum-norm', normLength: 7 }, { maskKind: 'padded' })
  add('normalizer (token-mean)', { normalizer: 100 }, { maskKind: 'padded' })
  add('normalizer (seq-mean-token-mean)', { lossAgg: 'seq-mean-token-mean', normalizer: 3 }, { maskKind: 'random' })
  add('normalizer (seq-mean-token-sum)', { lossAgg: 'seq-mean-token-sum', normalizer: 2.5 })
  add('normalizer (seq-mean-token-sum-norm)', { lossAgg: 'seq-mean-token-sum-norm', normalizer: 50, normLength: 3 })
  add('dualClip 1.5', { dualClip: 1.5 }, { perToken: true })
  add('dualClip 3', { dualClip: 3 })
  add('dualClip null (explicit)', { dualClip: null })
  add('logRatioClamp null', { logRatioClamp: null })
  add('logRatioClamp 0.35', { logRatioClamp: 0.35 }, { perToken: true })
  add('asymmetric clip 0.1 / 0.28', { clipLow: 0.1, clipHigh: 0.28 })
  add('clipLow 0, clipHigh 0', { clipLow: 0, clipHigh: 0 })
  add('entropyCoef 0.01', { entropyCoef: 0.01 }, { withEntropy: true })
  add('entropyCoef −0.03', { entropyCoef: -0.03 }, { withEntropy: true, maskKind: 'padded' })
  add('entropyCoef without an entropy tensor', { entropyCoef: 0.05 })
  add('nll', { loss: 'nll' })
  add('nll with old, ref, beta, entropy', { loss: 'nll', beta: 0.2, kl: 'k3', entropyCoef: 0.02, dualClip: 2 }, { withRef: true, withEntropy: true, maskKind: 'padded' })
  add("loss 'grpo' (explicit)", { loss: 'grpo' })
  add('per-token advantages', {}, { perToken: true, maskKind: 'random' })
  add('no oldLogp', {}, { withOld: false })
  add('no oldLogp, per-token, dual clip', { dualClip: 1.5 }, { withOld: false, perToken: true })
  add('mask all ones', {}, { maskKind: 'ones' })
  add('mask padded with empty sequences', { lossAgg: 'seq-mean-token-mean' }, { maskKind: 'padded' })
  add('everything at once', { kl: 'k3', beta: 0.05, dualClip: 2.5, logRatioClamp: 1.2, entropyCoef: 0.01, lossAgg: 'seq-mean-token-mean', clipLow: 0.15, clipHigh: 0.3 }, { withRef: true, withEntropy: true, perToken: true, maskKind: 'padded' })
  // §3.1-3.4: the variants of TRL and verl
  add('GSPO (ratioLevel sequence), seq-mean-token-mean', { ratioLevel: 'sequence', lossAgg: 'seq-mean-token-mean', clipLow: 3e-4, clipHigh: 4e-4 }, { maskKind: 'padded' })
  add('GSPO, token-mean, per-token advantages', { ratioLevel: 'sequence', clipLow: 0.1, clipHigh: 0.2 }, { perToken: true, maskKind: 'random' })
  add('GSPO without oldLogp (ratio 1)', { ratioLevel: 'sequence' }, { withOld: false })
  add('GSPO with dual clip, bias-corrected KL', { ratioLevel: 'sequence', dualClip: 2, beta: 0.1, klBiasCorrection: true }, { withRef: true, perToken: true })
  add('cispo', { loss: 'cispo' }, { perToken: true })
  add('cispo, clipHigh 4 (TRL epsilon_high 5)', { loss: 'cispo', clipHigh: 4, lossAgg: 'seq-mean-token-sum' }, { maskKind: 'random' })
  add('cispo at sequence level', { loss: 'cispo', ratioLevel: 'sequence' }, { maskKind: 'padded' })
  add('ratioCap 2 (INTELLECT-2 delta)', { ratioCap: 2 }, { perToken: true })
  add('ratioCap 1.5 with dual clip 3', { ratioCap: 1.5, dualClip: 3, clipHigh: 0.28 }, { perToken: true, maskKind: 'random' })
  add('klBiasCorrection, k3', { beta: 0.1, klBiasCorrection: true }, { withRef: true, maskKind: 'random' })
  add('klBiasCorrection, k2, log-ratio clamp 0.35', { beta: 0.2, kl: 'k2', klBiasCorrection: true, logRatioClamp: 0.35 }, { withRef: true, perToken: true })
  add('klBiasCorrection without oldLogp', { beta: 0.1, klBiasCorrection: true }, { withRef: true, withOld: false })
  add('topEntropyQuantile 0.2', { topEntropyQuantile: 0.2 }, { withEntropy: true, maskKind: 'random' })
  add('topEntropyQuantile 0 (the top token only), entropyCoef', { topEntropyQuantile: 0, entropyCoef: 0.02 }, { withEntropy: true })
  add('topEntropyQuantile 0.5, beta, seq-mean-token-mean', { topEntropyQuantile: 0.5, beta: 0.05, lossAgg: 'seq-mean-token-mean' }, { withEntropy: true, withRef: true, maskKind: 'padded' })
  add('rollout token truncate', { rolloutCorrection: { level: 'token', mode: 'truncate', max: 2 } }, { withRollout: true })
  add('rollout token mask [0.5, 2]', { rolloutCorrection: { mode: 'mask', min: 0.5, max: 2 } }, { withRollout: true, maskKind: 'random' })
  add('rollout sequence truncate (default max 3)', { rolloutCorrection: { level: 'sequence' } }, { withRollout: true, maskKind: 'padded' })
  add('rollout sequence mask, min 0.3, no max', { rolloutCorrection: { level: 'sequence', mode: 'mask', min: 0.3, max: null } }, { withRollout: true, maskKind: 'padded' })
  add('rollout sequence mask [0.5, 3], GSPO', { rolloutCorrection: { level: 'sequence', mode: 'mask', min: 0.5, max: 3 }, ratioLevel: 'sequence' }, { withRollout: true })
  add("lossType 'grpo'", { lossType: 'grpo' }, { maskKind: 'padded' })
  add("lossType 'bnpo'", { lossType: 'bnpo' }, { maskKind: 'random' })
  add("lossType 'dapo' (normalizer: the global token count)", { lossType: 'dapo', normalizer: 500 })
  add("lossType 'dr_grpo' (normLength: max_completion_length)", { lossType: 'dr_grpo', normLength: 64 }, { maskKind: 'padded' })
  add('every variant at once', {
    ratioLevel: 'sequence',
    loss: 'grpo',
    ratioCap: 4,
    beta: 0.05,
    klBiasCorrection: true,
    topEntropyQuantile: 0.6,
    entropyCoef: 0.01,
    rolloutCorrection: { level: 'token', mode: 'truncate', max: 2.5, min: 0.4 },
    lossType: 'grpo',
  }, { withRef: true, withEntropy: true, withRollout: true, perToken: true, maskKind: 'padded' })
  if (op === 'grpo') {
    add('temperature 0.7', { temperature: 0.7 }, { maskKind: 'random' })
    add('temperature 1.4, entropyCoef 0.02', { temperature: 1.4, entropyCoef: 0.02 })
    add("gradDtype 'f32'", { gradDtype: 'f32' })
    add('gradDtype = the logits dtype (explicit)', { gradDtype: 'same' })
    add('inplace', { inplace: true }, { maskKind: 'padded' })
    add('inplace with beta, entropy, temperature', { inplace: true, gradDtype: 'same', beta: 0.1, entropyCoef: 0.01, temperature: 0.8 }, { withRef: true })
    add('inplace false (explicit)', { inplace: false })
  }

  for (let i = 0; i < randomCount; i++) {
    const beta = rng.pick([0, 0, 0.02, 0.3])
    const options: NonNullable<LossConfig['options']> = {
      kl: rng.pick(KLS),
      beta,
      lossAgg: rng.pick(AGGS),
      dualClip: rng.pick([null, 1.5, 3]),
      logRatioClamp: rng.pick([20, null, 0.35, 1.2]),
      entropyCoef: rng.pick([0, 0, 0.01, -0.02]),
      clipLow: rng.pick([0.2, 0.1]),
      clipHigh: rng.pick([0.2, 0.28]),
      loss: rng.pick(['grpo', 'grpo', 'grpo', 'nll'] as const),
    }
    if (rng.bool(0.25)) options.normalizer = rng.pick([1.5, 40, 300])
    let withRollout = false
    let withEntropy = rng.bool()
    if (options.loss !== 'nll') {
      if (rng.bool(0.3)) options.loss = 'cispo'
      if (rng.bool(0.3)) options.ratioLevel = 'sequence'
      if (rng.bool(0.2)) options.ratioCap = rng.pick([1.5, 3])
      if (rng.bool(0.25)) options.klBiasCorrection = true
      if (rng.bool(0.25)) {
        options.topEntropyQuantile = rng.pick([0, 0.2, 0.7])
        withEntropy = true
      }
      if (rng.bool(0.3)) {
        options.rolloutCorrection = { level: rng.pick(['token', 'sequence'] as const), mode: rng.pick(['truncate', 'mask'] as const), max: rng.pick([2, 3, null]), min: rng.pick([null, 0.5]) }
        withRollout = true
      }
    }
    if (rng.bool(0.2)) options.normLength = rng.pick([3, 64])
    if (op === 'grpo') {
      if (rng.bool(0.5)) options.temperature = rng.pick([0.6, 0.9, 1.3])
      if (rng.bool(0.3)) options.gradDtype = rng.pick(['f32', 'same'] as const)
      if (rng.bool(0.25)) {
        options.inplace = true
        options.gradDtype = 'same'
      }
    }
    add(`random combination ${i}`, options, {
      perToken: rng.bool(),
      withOld: rng.bool(0.8) || withRollout,
      withRef: beta > 0 || rng.bool(0.3),
      maskKind: rng.pick(['none', 'ones', 'padded', 'random'] as const),
      withEntropy,
      withRollout,
    })
  }
  return list
}

/**
 * The options schema (lib/options.ts): defaults, rules and their messages, null for features that can be off,
 * unknown keys named with the nearest known one, moved keys; and that every public entry point reads its
 * options through it (a typo is an error everywhere, and an option shared by two APIs is one entry).
 */
import t from 'tap'
import { AdamW, LogLinearPolicy, Tensor, Trainer, modelOps, ops } from '../../lib/index.js'
import {
  ADAMW_SCHEMA,
  LOSS_SCHEMA,
  booleanOption,
  counterOption,
  defaultsOf,
  integerOption,
  nearestKey,
  numberOption,
  oneOfOption,
  parseOptions,
  temperature,
  type Schema,
} from '../../lib/options.js'
import { GRPO_LOSS_SCHEMA, TOKEN_LOGPROBS_SCHEMA } from '../../lib/ops.js'
import { ADAMW_STEP_SCHEMA, SAMPLE_TOKENS_SCHEMA } from '../../lib/model-ops.js'
import { EVALUATE_SCHEMA, GRPO_SETTINGS_SCHEMA, TRAINER_SCHEMA } from '../../lib/trainer.js'
import { SAMPLE_OPTIONS_SCHEMA } from '../../lib/policy.js'

interface Demo {
  rate?: number
  clamp?: number | null
  mode?: 'a' | 'b'
  count?: number
  seed?: number
  flag?: boolean
}

const DEMO: Schema<Demo> = {
  rate: numberOption('a finite number > 0', (v) => v > 0, 1) as never,
  clamp: numberOption('a number > 0 or null', (v) => v > 0, 20, true) as never,
  mode: oneOfOption(['a', 'b'] as const, 'a'),
  count: integerOption(2),
  seed: counterOption(0),
  flag: booleanOption(false),
}

t.test('defaults, given values, null', async (t) => {
  t.same(parseOptions(DEMO, undefined, 'demo'), { rate: 1, clamp: 20, mode: 'a', count: undefined, seed: 0, flag: false })
  t.same(parseOptions(DEMO, { rate: 0.5, clamp: null, mode: 'b', count: 7, seed: 2 ** 53 - 1, flag: true }, 'demo'), {
    rate: 0.5,
    clamp: null,
    mode: 'b',
    count: 7,
    seed: 2 ** 53 - 1,
    flag: true,
  })
  t.same(defaultsOf(DEMO), { rate: 1, clamp: 20, mode: 'a', seed: 0, flag: false })
  const given = { rate: 2 }
  parseOptions(DEMO, given, 'demo')
  t.same(given, { rate: 2 }, 'the caller object is not modified')
})

t.test('each rule fails with its own message and ERR_GRPO_INVALID_ARG', async (t) => {
  const bad = (o: object, message: RegExp) => t.throws(() => parseOptions(DEMO, o, 'demo'), { code: 'ERR_GRPO_INVALID_ARG', message })
  bad({ rate: 0 }, /^Expected a finite number > 0 for rate but received 0$/)
  bad({ rate: Infinity }, /a finite number > 0 for rate but received Infinity/)
  bad({ rate: '1' }, /a finite number > 0 for rate but received "1"/)
  bad({ rate: null }, /for rate but received null/)
  bad({ clamp: -1 }, /a number > 0 or null for clamp/)
  bad({ mode: 'c' }, /one of 'a', 'b' for mode but received "c"/)
  bad({ count: 1 }, /an integer >= 2 for count/)
  bad({ count: 2.5 }, /an integer >= 2 for count/)
  bad({ seed: -1 }, /an integer in \[0, 2\^53\) for seed/)
  bad({ seed: 2 ** 53 }, /for seed/)
  bad({ flag: 1 }, /a boolean for flag/)
  t.throws(() => parseOptions(DEMO, null, 'demo'), { message: /^Expected an options object for demo but received null$/ })
  t.throws(() => parseOptions(DEMO, [1], 'demo'), { message: /an options object for demo/ })
  t.throws(() => parseOptions(DEMO, 5, 'demo'), { message: /an options object for demo/ })
})

t.test('an unknown key is an error naming the nearest known key', async (t) => {
  t.equal(nearestKey('clipHihg', Object.keys(LOSS_SCHEMA)), 'clipHigh')
  t.equal(nearestKey('cliphigh', Object.keys(LOSS_SCHEMA)), 'clipHigh', 'case does not count')
  t.equal(nearestKey('lossagg', Object.keys(LOSS_SCHEMA)), 'lossAgg')
  t.equal(nearestKey('temprature', Object.keys(GRPO_LOSS_SCHEMA)), 'temperature')
  t.throws(() => parseOptions(DEMO, { rat: 1 }, 'demo'), {
    code: 'ERR_GRPO_INVALID_ARG',
    message: /^Expected one of the options of demo \(did you mean rate\?\) for rat but received 1$/,
  })
  t.throws(() => parseOptions(DEMO, { lr: 1 }, 'demo', { lr: 'optimizer.lr' }), { message: /\(lr is now optimizer.lr\) for lr/ })
  t.throws(() => parseOptions(DEMO, { extra: undefined }, 'demo'), { message: /did you mean/ }, 'even when undefined')
})

t.test('every entry point reads its options through the schema', async (t) => {
  using logits = Tensor.from(Float32Array.from({ length: 2 * 3 * 5 }, (_, i) => Math.sin(i)), [2, 3, 5], { device: 'cpu' })
  using targets = Tensor.from(Int32Array.from([0, 1, 2, 3, 4, 0]), [2, 3], { device: 'cpu' })
  using advantages = Tensor.from([0.5, -0.5], [2], { device: 'cpu' })
  using logp = Tensor.from(new Float32Array(6).fill(-1), [2, 3], { device: 'cpu' })
  const typo = (run: () => unknown, message: RegExp, what: string) => t.throws(run, { code: 'ERR_GRPO_INVALID_ARG', message }, what)
  typo(() => ops.grpoLossSync({ logits, targets, advantages }, { clipHihg: 0.3 } as never), /did you mean clipHigh\?\) for clipHihg but received 0.3/, 'grpoLoss')
  typo(() => ops.policyLossSync({ logp, advantages }, { betta: 0.1 } as never), /did you mean beta\?/, 'policyLoss')
  typo(() => ops.tokenLogprobsSync(logits, targets, { entropie: true } as never), /did you mean entropy\?/, 'tokenLogprobs')
  typo(() => ops.groupAdvantagesSync([1, 0, 1, 0], { groupsize: 2 } as never), /did you mean groupSize\?/, 'groupAdvantages')
  typo(() => modelOps.sampleTokensSync(logits, { topp: 0.9 } as never), /did you mean topP\?/, 'sampleTokens')
  typo(() => modelOps.gradNormSync([logp], { maxnorm: 1 } as never), /did you mean maxNorm\?/, 'gradNorm')
  typo(() => modelOps.adamwSync({ params: [], grads: [], m: [], v: [] }, { weightdecay: 0 } as never), /did you mean weightDecay\?/, 'adamw')
  typo(() => new AdamW(() => [], { maxGradNrom: 1 } as never), /did you mean maxGradNorm\?/, 'AdamW')
  await using policy = new LogLinearPolicy({ vocabSize: 8, hashSize: 16, device: 'cpu' })
  const base = { policy, decode: (x: Int32Array) => x.join() }
  typo(() => new Trainer({ ...base, groupsize: 4 } as never), /did you mean groupSize\?/, 'Trainer')
  typo(() => new Trainer({ ...base, lr: 0.1 } as never), /\(lr is now optimizer.lr\) for lr but received 0.1/, 'Trainer: an optimizer key at the top level')
  typo(() => new Trainer({ ...base, optimizer: { lr: -1 } }), /a finite number >= 0 for lr/, 'Trainer: the optimizer options are AdamW\'s')
  await using trainer = new Trainer(base)
  t.equal(trainer.optimizer.lr, ADAMW_SCHEMA.lr.default, 'the optimizer takes its defaults from the schema')
  await t.rejects(trainer.evaluate([{ tokens: [1] }], { greddy: true } as never), { message: /did you mean greedy\?/ }, 'evaluate')
  await t.rejects(trainer.train([{ tokens: [1] }], { steps: 1, batchsize: 2 } as never), { message: /did you mean batchSize\?/ }, 'train')
  await t.rejects(trainer.supervisedStep([], { learningRate: 1 } as never), { message: /did you mean/ }, 'supervisedStep')
  await t.rejects(policy.sample([[1]], { maxNewToken: 3 } as never), { message: /did you mean maxNewTokens\?/ }, 'LogLinearPolicy.sample')
})

t.test('an option shared by several APIs is one entry', async (t) => {
  for (const key of ['clipLow', 'clipHigh', 'dualClip', 'logRatioClamp', 'beta', 'kl', 'entropyCoef', 'lossAgg', 'normLength'] as const) {
    t.equal(GRPO_SETTINGS_SCHEMA[key], LOSS_SCHEMA[key], `Trainer ${key} is the loss option`)
    t.equal(GRPO_LOSS_SCHEMA[key], LOSS_SCHEMA[key], `grpoLoss ${key} is the loss option`)
  }
  for (const schema of [GRPO_LOSS_SCHEMA, TOKEN_LOGPROBS_SCHEMA, SAMPLE_TOKENS_SCHEMA, GRPO_SETTINGS_SCHEMA]) t.equal(schema.temperature, temperature)
  t.equal(SAMPLE_TOKENS_SCHEMA.topP, GRPO_SETTINGS_SCHEMA.topP, 'sampling and the Trainer share topP')
  for (const key of ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'] as const) t.equal(ADAMW_STEP_SCHEMA[key], ADAMW_SCHEMA[key], `adamw ${key}`)
  t.equal(TRAINER_SCHEMA.clipLow, LOSS_SCHEMA.clipLow)
  for (const key of ['temperature', 'topP', 'maxNewTokens', 'stop'] as const) t.equal(GRPO_SETTINGS_SCHEMA[key], SAMPLE_OPTIONS_SCHEMA[key], `Trainer ${key} is the sampling option`)
  t.equal(EVALUATE_SCHEMA.n, SAMPLE_OPTIONS_SCHEMA.n)
  t.equal(TRAINER_SCHEMA.seed, SAMPLE_OPTIONS_SCHEMA.seed)
})

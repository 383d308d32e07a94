/**
 * ops.groupAdvantages / groupAdvantagesSync against the float64 reference (docs/math.md §2, docs/ops.md).
 *
 * advantages: relative error ≤ 1e-6 (docs/math.md §7), and exactly 0 wherever the contract says so (singletons, zero
 * spread, excluded rewards). groupMean / groupStd: the contract gives no number; they are float64 outputs of the same
 * reductions, held to the advantages' 1e-6. groupIds and zeroStdFraction are exact.
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { ops, Tensor } from '../../lib/index.js'
import { groupAdvantages as refGroupAdvantages, type GroupAdvantagesOptions } from '../reference/grpo-reference.js'
import { RUN_BIG, SEED, TEST_SCALE, genRewardsByIds, genRewardsBySize, rngFor, type GeneratedRewards, type Rng } from '../helpers/random.js'
import { checkRelative, checkSameBits } from '../helpers/compare.js'
import { DEVICE, Scope, begin, checkNoLeaks, expectBoth } from '../helpers/setup.js'

const start = begin(t)

type RewardsForm = 'tensor' | 'array' | 'float32array'
type IdsForm = 'tensor' | 'array' | 'int32array'

interface Case {
  generated: GeneratedRewards
  options: Omit<GroupAdvantagesOptions, 'groupSize' | 'groupIds'>
  rewardsForm: RewardsForm
  idsForm?: IdsForm
  sync: boolean
}

/** Replaces some rewards by NaN / ±∞ (for nonFinite: 'exclude'). */
function injectNonFinite(rng: Rng, rewards: Float32Array, share: number): Float32Array {
  const out = Float32Array.from(rewards)
  for (let i = 0; i < out.length; i++) if (rng.bool(share)) out[i] = rng.pick([NaN, Infinity, -Infinity])
  return out
}

async function runCase(t: Test, c: Case): Promise<void> {
  const { rewards, groupIds, groupSize } = c.generated
  const ref = refGroupAdvantages(rewards, { ...c.options, groupSize, groupIds })
  using scope = new Scope()
  const rewardsArg =
    c.rewardsForm === 'tensor' ? scope.f32(rewards, [rewards.length]) : c.rewardsForm === 'array' ? Array.from(rewards) : Float32Array.from(rewards)
  let idsArg: Tensor | number[] | Int32Array | undefined
  if (groupIds) idsArg = c.idsForm === 'tensor' ? scope.i32(groupIds, [groupIds.length]) : c.idsForm === 'array' ? Array.from(groupIds) : groupIds
  const options = { ...c.options, ...(groupIds ? { groupIds: idsArg } : { groupSize }) }
  const res = scope.adopt(c.sync ? ops.groupAdvantagesSync(rewardsArg, options) : await ops.groupAdvantages(rewardsArg, options))

  t.equal(res.advantages.dtype, 'f32', 'advantages are f32')
  t.same([...res.advantages.shape], [rewards.length], 'advantages have shape [K]')
  t.equal(res.advantages.device, DEVICE, 'advantages on the device of the rewards (the default device for arrays)')
  const A = Float64Array.from(c.sync ? res.advantages.toArraySync() : await res.advantages.toArray())
  checkRelative(t, A, ref.advantages, 1e-6, 'advantages')
  const shouldBeZero = [...ref.advantages.keys()].filter((k) => ref.advantages[k] === 0)
  const nonZero = shouldBeZero.filter((k) => A[k] !== 0)
  t.same(nonZero, [], 'exactly 0 for singletons, zero-spread groups and excluded rewards')

  t.type(res.groupIds, Int32Array, 'groupIds is an Int32Array')
  checkSameBits(t, res.groupIds, Int32Array.from(ref.groupIds), 'groupIds: distinct ids, ascending')
  t.type(res.groupMean, Float64Array, 'groupMean is a Float64Array')
  t.type(res.groupStd, Float64Array, 'groupStd is a Float64Array')
  checkRelative(t, res.groupMean, ref.groupMean, 1e-6, 'groupMean')
  checkRelative(t, res.groupStd, ref.groupStd, 1e-6, 'groupStd')
  const stdZero = [...ref.groupStd.keys()].filter((i) => ref.groupStd[i] === 0 && res.groupStd[i] !== 0)
  t.same(stdZero, [], 'groupStd exactly 0 for groups with fewer than 2 finite rewards or no spread')
  t.equal(res.zeroStdFraction, ref.zeroStdFraction, 'zeroStdFraction')
}

const BASELINES = ['mean', 'leave-one-out'] as const
const SCALES = ['group', 'batch', 'none'] as const
const GROUPS = Math.max(2, Math.round(24 * TEST_SCALE))

t.test('groupSize: baseline × scale × eps, tensor and array rewards, Promise and Sync', async (t) => {
  let i = 0
  for (const baseline of BASELINES)
    for (const scale of SCALES)
      for (const eps of [undefined, 0, 1e-3]) {
        const label = `size ${baseline} ${scale} eps=${eps}`
        const rng = rngFor(label)
        const generated = genRewardsBySize(rng, rng.intIn(1, GROUPS), rng.intIn(1, 8))
        const rewardsForm = (['tensor', 'array', 'float32array'] as const)[i % 3]
        const sync = i % 2 === 1
        i++
        const options = { baseline, scale, ...(eps === undefined ? {} : { eps }) }
        await t.test(`${label} ${rewardsForm} sync=${sync}`, (t) => runCase(t, { generated, options, rewardsForm, sync }))
      }
})

t.test('groupIds: ragged, shuffled, negative ids, singletons', async (t) => {
  let i = 0
  for (const baseline of BASELINES)
    for (const scale of SCALES) {
      const label = `ids ${baseline} ${scale}`
      const rng = rngFor(label)
      const generated = genRewardsByIds(rng, rng.intIn(1, GROUPS), 9)
      const idsForm = (['tensor', 'array', 'int32array'] as const)[i % 3]
      const rewardsForm = (['tensor', 'array', 'float32array'] as const)[(i + 1) % 3]
      const sync = i % 2 === 0
      i++
      await t.test(`${label} ids=${idsForm} rewards=${rewardsForm} sync=${sync}`, (t) =>
        runCase(t, { generated, options: { baseline, scale, eps: rng.pick([1e-6, 1e-4]) }, rewardsForm, idsForm, sync }),
      )
    }
})

t.test("nonFinite: 'exclude' leaves NaN / ±∞ out of every statistic", async (t) => {
  let i = 0
  for (const baseline of BASELINES)
    for (const scale of SCALES)
      for (const byIds of [false, true]) {
        const label = `exclude ${baseline} ${scale} ids=${byIds}`
        const rng = rngFor(label)
        const generated = byIds ? genRewardsByIds(rng, rng.intIn(2, GROUPS), 8) : genRewardsBySize(rng, rng.intIn(2, GROUPS), rng.intIn(2, 6))
        generated.rewards = injectNonFinite(rng, generated.rewards, 0.2)
        const sync = i++ % 2 === 0
        await t.test(label, (t) =>
          runCase(t, { generated, options: { baseline, scale, nonFinite: 'exclude' }, rewardsForm: sync ? 'tensor' : 'array', idsForm: 'int32array', sync }),
        )
      }
  await t.test('a group whose rewards are all non-finite', (t) =>
    runCase(t, {
      generated: { rewards: Float32Array.from([NaN, Infinity, 1, 2, -Infinity, 3]), groupSize: 2 },
      options: { nonFinite: 'exclude' },
      rewardsForm: 'tensor',
      sync: false,
    }),
  )
})

t.test("nonFinite: 'error' (the default) rejects a non-finite reward", async (t) => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    await expectBoth(t, (async) => (async ? ops.groupAdvantages : ops.groupAdvantagesSync)([1, bad, 0, 1], { groupSize: 2 }), 'ERR_GRPO_NONFINITE', `reward ${bad}`)
    using scope = new Scope()
    const r = scope.f32([0, 1, 2, bad], [4])
    await expectBoth(t, (async) => (async ? ops.groupAdvantages : ops.groupAdvantagesSync)(r, { groupIds: [3, 3, 1, 1], nonFinite: 'error' }), 'ERR_GRPO_NONFINITE', `tensor reward ${bad}`)
  }
})

t.test('hand cases', async (t) => {
  const r = await ops.groupAdvantages([1, 0, 0, 1], { groupSize: 4 })
  const a = 0.5 / (Math.sqrt(1 / 3) + 1e-6)
  const A = await r.advantages.toArray()
  t.ok([a, -a, -a, a].every((v, i) => Math.abs(A[i] - v) <= 1e-6 * Math.abs(v)), `[1,0,0,1] → ${[...A]}`)
  t.same([...r.groupIds], [0])
  t.equal(r.zeroStdFraction, 0)
  r.advantages.dispose()
  const flat = ops.groupAdvantagesSync([2, 2, 2, 5], { groupIds: [0, 0, 0, 1] })
  t.same([...flat.advantages.toArraySync()], [0, 0, 0, 0], 'zero spread and singleton: exactly 0')
  t.equal(flat.zeroStdFraction, 1)
  t.same([...flat.groupStd], [0, 0])
  flat.advantages.dispose()
})

t.test('many groups', { skip: !RUN_BIG && 'GRPO_TEST_SKIP_BIG=1' }, async (t) => {
  const rng = rngFor('many groups')
  await t.test('K = 140007, groupSize 7', (t) =>
    runCase(t, { generated: genRewardsBySize(rng, 20001, 7), options: {}, rewardsForm: 'tensor', sync: false }),
  )
  await t.test('K ≈ 70000 by ids', (t) =>
    runCase(t, { generated: genRewardsByIds(rng, 14000, 9), options: { baseline: 'leave-one-out', scale: 'batch' }, rewardsForm: 'float32array', idsForm: 'int32array', sync: true }),
  )
})

t.test('one group of 20,000 (by size and by ids): linear work, right values (issue 18 item 9)', async (t) => {
  // The CUDA kernel had each thread scan its whole group (all K entries with ids): O(K·G), 4.6 s for this case on
  // the SIMT executor. One block per group makes it O(K) for any grouping.
  const rng = rngFor('one big group')
  const K = 20000
  const rewards = Float32Array.from({ length: K }, () => rng.normal())
  const ids = new Int32Array(K).fill(7)
  using scope = new Scope()
  const tensor = scope.f32(rewards, [K])
  const idTensor = scope.i32(ids, [K])
  // CPU time of this process (all its threads: the pool's, the SIMT executor's), not wall time: the quadratic
  // scan costs seconds of CPU whatever the load, while the time a loaded CI machine gives other processes does
  // not count. (CPU time over several threads can exceed wall time; the healthy cost is far below the bound.)
  const time = async (options: Parameters<typeof ops.groupAdvantages>[1]) => {
    const start = performance.now()
    const cpu = process.cpuUsage()
    scope.adopt(await ops.groupAdvantages(tensor, options))
    const used = process.cpuUsage(cpu)
    return { cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - start }
  }
  const bySize = await time({ groupSize: K })
  const byIds = await time({ groupIds: idTensor, baseline: 'leave-one-out' })
  const show = (x: { cpuMs: number; wallMs: number }) => `${x.cpuMs.toFixed(0)} ms CPU (${x.wallMs.toFixed(0)} ms wall)`
  t.comment(`one group of ${K}: ${show(bySize)} by size, ${show(byIds)} by ids`)
  t.ok(bySize.cpuMs < 1000 && byIds.cpuMs < 1000, `each under 1 s of CPU (4.6 s of wall time and more before, on the SIMT executor)`)
  await runCase(t, { generated: { rewards, groupSize: K }, options: { scale: 'batch' }, rewardsForm: 'tensor', sync: false })
  await runCase(t, { generated: { rewards, groupIds: ids }, options: {}, rewardsForm: 'float32array', idsForm: 'int32array', sync: true })
})

t.test('property: with the mean baseline, advantages sum to ~0 within each group', async (t) => {
  const arb = fc.record({
    groups: fc.array(fc.array(fc.integer({ min: -4, max: 4 }), { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 10 }),
    scale: fc.constantFrom('group', 'batch', 'none'),
    halves: fc.boolean(),
  })
  let failure = ''
  try {
    fc.assert(
      fc.property(arb, ({ groups, scale, halves }) => {
        const rewards: number[] = []
        const ids: number[] = []
        groups.forEach((g, gi) => g.forEach((r) => (rewards.push(halves ? r / 2 : r), ids.push(gi * 3))))
        const res = ops.groupAdvantagesSync(rewards, { groupIds: ids, scale: scale as 'group' })
        const A = res.advantages.toArraySync()
        res.advantages.dispose()
        for (let gi = 0; gi < groups.length; gi++) {
          let sum = 0
          let mass = 0
          for (let k = 0; k < A.length; k++) if (ids[k] === gi * 3) ((sum += A[k]), (mass += Math.abs(A[k])))
          if (!(Math.abs(sum) <= 1e-5 * Math.max(mass, 1e-30))) {
            failure = `group ${gi}: Σ A = ${sum} (Σ|A| = ${mass})`
            return false
          }
        }
        return true
      }),
      { numRuns: 50, seed: SEED | 0 },
    )
    t.pass('held on 50 random batches')
  } catch (e) {
    t.fail(`${failure}\n${(e as Error).message}`)
  }
})

checkNoLeaks(t, start)

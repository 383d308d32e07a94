/**
 * ops.linearGrpoLoss / linearTokenLogprobs (the fused linear loss) against the float64 reference
 * (test/reference/linear-loss-reference.ts: grpoLoss of docs/math.md on hidden·Wᵀ + b), against the unfused path
 * on the same machine (modelOps.linear → ops.grpoLoss → modelOps.linearBackward), by finite differences, and its
 * memory (memoryInfo().peakBytes of the tensors' device: no [N, V] buffer). Runs on cpu, and on simt via test/simt/ops-on-simt.test.ts.
 *
 * Every case uses chunk sizes that do not divide N or V, so the online log-sum-exp merges several tiles and the
 * last chunk and tile are partial. Masked rows hold NaN hidden states and −100 targets (they must not be read).
 * Tolerances: f32 head: loss and stats ≤ 1e-4 (of their mass), logp ≤ 1e-4, gradients ≤ 1e-4 (relative norm);
 * bf16 head: ≤ 2e-3 and gradients ≤ 1e-2 (the logits and their gradient are bf16, as in the unfused bf16 path).
 */
import t, { type Test } from 'tap'
import { backend, ops, modelOps, memoryInfo, resetPeakMemory, type Tensor } from '../../lib/index.js'
import { linearGrpoLossReference, linearTokenLogprobsReference, referenceLogits, type LinearLossInput } from '../reference/linear-loss-reference.js'
import type { LossOptions } from '../reference/grpo-reference.js'
import { RUN_BIG, TEST_SCALE, genAdvantages, genMask, genOldLogp, genRefLogp, genRolloutLogp, rngFor, storageOf, widen, type Rng } from '../helpers/random.js'
import { checkElementwise, checkRelative, checkScalar, checkStats, checkZeroAt } from '../helpers/compare.js'
import { lossConfigs } from '../helpers/loss-grid.js'
import { DEVICE, Scope, begin, checkNoLeaks, expectThrow, valuesOf } from '../helpers/setup.js'

const start = begin(t)
// Every backend runs the fused linear loss (cpu: csrc/cpu/linear_loss.cc; cuda and simt: cuda/linear_loss.cu). On the
// simt executor (every CUDA thread a fiber) the grid shrinks with GRPO_TEST_SCALE and Qwen's vocabulary runs only
// when GRPO_TEST_HUGE=1.
const active = backend.info().active
const simt = active === 'simt'
const test = (name: string, fn: (t: Test) => Promise<void>) => t.test(name, fn)
/** memoryInfo() of the device the suite's tensors live on. */
const memory = () => memoryInfo()[DEVICE]

type Head = 'f32' | 'bf16' | 'bf16 inputs, f32 head'
const TOL = { f32: { stats: 1e-4, logp: 1e-4, grad: 1e-4 }, bf16: { stats: 2e-3, logp: 2e-3, grad: 1e-2 } }

interface Problem {
  B: number
  L: number
  H: number
  V: number
  head: Head
  withBias: boolean
  negInfBias?: number
  maskKind: 'none' | 'ones' | 'padded' | 'random'
  perToken: boolean
  withOld: boolean
  withRef: boolean
  /** the sampler's log-probs (with the rolloutCorrection option) */
  withRollout?: boolean
  options: LossOptions
  scale?: number
  /** finite hidden states at masked rows (the unfused path multiplies them); default NaN */
  finiteMasked?: boolean
}

interface Generated {
  input: LinearLossInput
  hiddenStore: Float32Array | Uint16Array
  weightStore: Float32Array | Uint16Array
  biasStore?: Float32Array | Uint16Array
  storeDtype: 'f32' | 'bf16'
  targetsPadded: Int32Array
  mask?: Uint8Array
  advantages: Float32Array
  oldLogp?: Float32Array
  refLogp?: Float32Array
  rolloutLogp?: Float32Array
}

function generate(rng: Rng, p: Problem): Generated {
  const { B, L, H, V } = p
  const N = B * L
  const storeDtype = p.head === 'f32' ? 'f32' : 'bf16'
  const headDtype = p.head === 'bf16' ? 'bf16' : 'f32'
  const scale = p.scale ?? 2.5
  const hiddenRaw = new Float64Array(N * H)
  for (let n = 0; n < N; n++) {
    const s = scale * rng.logUniform(0.3, 2)
    for (let k = 0; k < H; k++) hiddenRaw[n * H + k] = s * rng.normal()
  }
  const weightRaw = new Float64Array(V * H).map(() => rng.normal() / Math.sqrt(H))
  const mask = genMask(rng, B, L, p.maskKind)
  // masked rows: NaN hidden states (never read)
  if (mask && !p.finiteMasked) for (let n = 0; n < N; n++) if (mask[n] === 0) hiddenRaw.fill(NaN, n * H, (n + 1) * H)
  const hiddenStore = storageOf(storeDtype, hiddenRaw)
  const weightStore = storageOf(storeDtype, weightRaw)
  let biasStore: Float32Array | Uint16Array | undefined
  if (p.withBias) {
    const bias = new Float64Array(V).map(() => rng.normal())
    const banned = Math.min(V - 1, Math.round((p.negInfBias ?? 0) * V))
    for (let i = 0; i < banned; i++) bias[rng.int(V)] = -Infinity
    biasStore = storageOf(storeDtype, bias)
  }
  const hidden = widen(storeDtype, hiddenStore)
  const input: LinearLossInput = {
    hidden,
    weight: widen(storeDtype, weightStore),
    bias: biasStore ? widen(storeDtype, biasStore) : undefined,
    targets: new Int32Array(N),
    mask,
    advantages: new Float32Array(0),
    B,
    L,
    H,
    V,
    headDtype,
  }
  // targets a sampler would pick (|logp| where real models put it), never a banned token
  const T = p.options.temperature ?? 1
  const logits = referenceLogits({ ...input, mask: undefined, hidden: hidden.map((v) => (Number.isNaN(v) ? 0 : v)) })
  const targets = input.targets as Int32Array
  for (let n = 0; n < N; n++) {
    let max = -Infinity
    for (let v = 0; v < V; v++) max = Math.max(max, logits[n * V + v]!)
    let sum = 0
    for (let v = 0; v < V; v++) sum += Math.exp((logits[n * V + v]! - max) / T)
    let u = rng.uniform() * sum
    let pick = -1
    for (let v = 0; v < V; v++) {
      const e = Math.exp((logits[n * V + v]! - max) / T)
      if (e > 0) pick = v
      u -= e
      if (u <= 0 && e > 0) break
    }
    targets[n] = pick
  }
  const targetsPadded = Int32Array.from(targets, (y, n) => (mask && mask[n] === 0 ? -100 : y))
  const exact = linearTokenLogprobsReference({ ...input, mask }, T).logp
  const oldLogp = p.withOld ? genOldLogp(rng, exact, mask, p.options, { padValue: NaN }) : undefined
  const refLogp = p.withRef ? genRefLogp(rng, exact, mask, { padValue: NaN }) : undefined
  const rc = p.options.rolloutCorrection ?? undefined
  const rolloutLogp =
    p.withRollout && oldLogp
      ? genRolloutLogp(rng, oldLogp, mask, rc?.level === 'sequence' ? {} : { max: rc?.max === undefined ? 3 : rc.max, min: rc?.min }, { padValue: NaN })
      : undefined
  const advantages = genAdvantages(rng, p.perToken ? N : B)
  if (mask && p.perToken) for (let n = 0; n < N; n++) if (mask[n] === 0) advantages[n] = NaN
  Object.assign(input, { targets: targetsPadded, advantages, oldLogp, refLogp, rolloutLogp })
  return { input, hiddenStore, weightStore, biasStore, storeDtype, targetsPadded, mask, advantages, oldLogp, refLogp, rolloutLogp }
}

function tensorsOf(scope: Scope, g: Generated, p: Problem, grads: boolean) {
  const { B, L, H, V } = p
  return {
    hidden: scope.from(g.hiddenStore, [B * L, H], g.storeDtype),
    weight: scope.from(g.weightStore, [V, H], g.storeDtype),
    ...(g.biasStore ? { bias: scope.from(g.biasStore, [V], g.storeDtype) } : {}),
    targets: scope.i32(g.targetsPadded, [B, L]),
    advantages: scope.f32(g.advantages, p.perToken ? [B, L] : [B]),
    ...(g.oldLogp ? { oldLogp: scope.f32(g.oldLogp, [B, L]) } : {}),
    ...(g.refLogp ? { refLogp: scope.f32(g.refLogp, [B, L]) } : {}),
    ...(g.rolloutLogp ? { rolloutLogp: scope.f32(g.rolloutLogp, [B, L]) } : {}),
    ...(g.mask ? { mask: scope.u8(g.mask, [B, L]) } : {}),
    ...(grads ? { gradWeight: scope.f32(new Float32Array(V * H), [V, H]) } : {}),
    ...(grads && g.biasStore ? { gradBias: scope.f32(new Float32Array(V), [V]) } : {}),
  }
}

function headOptions(p: Problem, chunk?: [number, number]) {
  return {
    ...(p.head === 'bf16 inputs, f32 head' ? { headDtype: 'f32' as const } : {}),
    ...(chunk ? { chunkTokens: chunk[0], chunkVocab: chunk[1] } : {}),
  }
}

async function runCase(t: Test, label: string, p: Problem, chunk: [number, number] | undefined, sync: boolean): Promise<void> {
  const rng = rngFor(label)
  const g = generate(rng, p)
  const { B, L, H, V } = p
  const tol = TOL[p.head === 'bf16' ? 'bf16' : 'f32']
  using scope = new Scope()
  const inputs = tensorsOf(scope, g, p, true)
  const options = { ...p.options, ...headOptions(p, chunk), entropy: true, gradDtype: 'f32' as const }
  const res = scope.adopt(sync ? ops.linearGrpoLossSync(inputs, options) : await ops.linearGrpoLoss(inputs, options))
  // §3.4's selection ranks tokens by the kernel's f32 entropies (returned, and checked against the exact ones below):
  // near a tie the exact ones may rank two tokens the other way, and either selection is right (grpo-loss.test.ts).
  const selects = (p.options.topEntropyQuantile ?? 1) < 1
  const ref = linearGrpoLossReference(selects ? { ...g.input, selectionEntropy: await valuesOf(res.entropy!) } : g.input, p.options)
  checkScalar(t, res.loss, ref.loss, 'loss', tol.stats, 1e-6, ref.mass.loss)
  checkStats(t, res.stats, ref.stats, ref.mass, 'stats', tol.stats)
  const logp = await valuesOf(res.logp)
  checkElementwise(t, logp, ref.logp, tol.logp * 10, 'logp')
  checkRelative(t, logp, ref.logp, tol.logp, 'logp')
  checkRelative(t, await valuesOf(res.entropy!), ref.entropy, tol.logp, 'entropy')
  t.same([...res.gradHidden.shape], [B * L, H], 'gradHidden [N, H]')
  const gradHidden = await valuesOf(res.gradHidden)
  checkRelative(t, gradHidden, ref.gradHidden, tol.grad, 'gradHidden')
  checkRelative(t, await valuesOf(inputs.gradWeight!), ref.gradWeight, tol.grad, 'gradWeight (accumulated into zeros)')
  if (inputs.gradBias) checkRelative(t, await valuesOf(inputs.gradBias), ref.gradBias, tol.grad, 'gradBias')
  if (g.mask) {
    const zero: number[] = []
    for (let n = 0; n < B * L; n++) if (g.mask[n] === 0) for (let k = 0; k < H; k++) zero.push(n * H + k)
    checkZeroAt(t, gradHidden, zero, 'gradHidden rows of masked positions')
    checkZeroAt(t, logp, [...g.mask.keys()].filter((i) => g.mask![i] === 0), 'logp at masked positions')
  }
}

const fullGrid = lossConfigs('grpo', rngFor('linear grid'), 6).filter((c) => c.options?.inplace !== true)
// Scaled down (simt): every k-th configuration, so that the three head precisions still alternate.
const grid = TEST_SCALE >= 1 ? fullGrid : fullGrid.filter((_, i) => i % Math.max(1, Math.round(1 / TEST_SCALE)) === 0)
test('every loss option against the float64 reference (f32, bf16 and the f32 head on bf16 inputs)', async (t) => {
  const heads: Head[] = ['f32', 'bf16', 'bf16 inputs, f32 head']
  let i = 0
  for (const c of grid) {
    const head = heads[i % 3]!
    const { gradDtype: _g, inplace: _i, ...options } = c.options ?? {}
    const p: Problem = {
      B: 3,
      L: 5,
      H: 16,
      V: 37,
      head,
      withBias: i % 2 === 0,
      negInfBias: i % 4 === 0 ? 0.2 : 0,
      maskKind: c.maskKind,
      perToken: c.perToken,
      withOld: c.withOld,
      withRef: c.withRef,
      withRollout: c.withRollout,
      options,
    }
    const chunk: [number, number] = [1 + (i % 4) * 2, [5, 8, 16, 64][i % 4]!]
    await t.test(`${c.name}, ${head}, chunks ${chunk.join('×')}`, (t) => runCase(t, `linear ${c.name} ${head}`, p, chunk, c.sync))
    i++
  }
})

test('shapes: V from 1 up, N not a multiple of the chunk, the default chunks', async (t) => {
  const base = { withBias: true, maskKind: 'random' as const, perToken: false, withOld: true, withRef: true, options: { beta: 0.04, entropyCoef: 0.01 } }
  const cases: [string, Partial<Problem>, [number, number] | undefined][] = [
    ['V = 1', { B: 2, L: 3, H: 8, V: 1 }, [4, 4]],
    ['V = 2', { B: 2, L: 3, H: 8, V: 2 }, [4, 1]],
    ['V = 4099, default chunks', { B: 2, L: 7, H: 24, V: 4099 }, undefined],
    ['N = 4099 over chunks of 4096 (default at H = 3), H = 3', { B: 1, L: 4099, H: 3, V: 19 }, undefined],
    ['-inf bias entries, bf16', { B: 2, L: 4, H: 16, V: 300, head: 'bf16', negInfBias: 0.5 }, [3, 64]],
  ]
  for (const [name, over, chunk] of cases) {
    const p = { ...base, B: 2, L: 3, H: 8, V: 8, head: 'f32' as Head, ...over }
    await t.test(name, (t) => runCase(t, `linear shape ${name}`, p, chunk, false))
  }
  if (RUN_BIG && (!simt || process.env.GRPO_TEST_HUGE === '1')) {
    const p: Problem = { ...base, B: 1, L: 3, H: 16, V: 151936, head: 'bf16' }
    await t.test("V = 151,936 (Qwen's vocabulary), bf16", (t) => runCase(t, 'linear qwen vocab', p, undefined, false))
    const q: Problem = { ...p, head: 'f32' }
    await t.test("V = 151,936, f32", (t) => runCase(t, 'linear qwen vocab f32', q, [2, 40000], true))
  }
})

// The CPU backend's GEMM-epilogue paths at sizes where the GEMM runs full-width tiles (512 columns, several row
// blocks, the AMX kernel reading A in place where H is a multiple of 32): chunks whose counted rows are consecutive
// (read in place) and broken by the mask (gathered), chunk sizes dividing neither N nor V, and a chunkVocab wider
// than pass 1's statistics tiles (1024 columns), so the two passes cut the vocabulary differently.
test('epilogue tiles: rows in place and gathered, chunks not dividing N or V, masked rows', async (t) => {
  const base = { B: 2, L: 240, V: 2300, withBias: true, negInfBias: 0.02, perToken: false, withOld: true, withRef: true, options: { beta: 0.04, entropyCoef: 0.01 } }
  const cases: [string, Partial<Problem>, [number, number]][] = [
    ['no mask, bf16, H 64, 257 × 1500', { maskKind: 'none', head: 'bf16', H: 64 }, [257, 1500]],
    ['padded mask, f32 head on bf16 inputs, H 64, 300 × 2100', { maskKind: 'padded', head: 'bf16 inputs, f32 head', H: 64 }, [300, 2100]],
    ['random mask, f32, H 40, 129 × 1100', { maskKind: 'random', head: 'f32', H: 40 }, [129, 1100]],
    ['padded mask, bf16, H 40, one chunk, 4096 × 700', { maskKind: 'padded', head: 'bf16', H: 40 }, [4096, 700]],
  ]
  for (const [name, over, chunk] of cases) {
    const p = { ...base, H: 64, head: 'f32' as Head, maskKind: 'none' as const, ...over } as Problem
    if (simt && TEST_SCALE < 1) Object.assign(p, { L: 40, V: 1201 }) // the CUDA kernels on the SIMT executor: smaller
    await t.test(name, (t) => runCase(t, `linear epilogue ${name}`, p, chunk, false))
  }
})

test('the same results as linear → grpoLoss → linearBackward on this machine', async (t) => {
  for (const head of ['f32', 'bf16'] as const) {
    const p: Problem = { B: 4, L: 9, H: 32, V: Math.max(64, Math.round(3000 * TEST_SCALE)), head, withBias: true, negInfBias: 0.05, maskKind: 'padded', perToken: true, withOld: true, withRef: true, options: { beta: 0.1, entropyCoef: 0.02, temperature: 0.9 }, finiteMasked: true }
    const g = generate(rngFor(`unfused ${head}`), p)
    using scope = new Scope()
    const inputs = { ...tensorsOf(scope, g, p, true), hidden: scope.from(g.hiddenStore, [p.B, p.L, p.H], g.storeDtype) }
    const fused = scope.adopt(await ops.linearGrpoLoss(inputs, { ...p.options, chunkTokens: 5, chunkVocab: 700 }))
    const logits = scope.add(await modelOps.linear(inputs.hidden, inputs.weight, { bias: inputs.bias }))
    const u = scope.adopt(await ops.grpoLoss({ logits, targets: inputs.targets, mask: inputs.mask, oldLogp: inputs.oldLogp, refLogp: inputs.refLogp, advantages: inputs.advantages }, p.options))
    const gradW = scope.f32(new Float32Array(p.V * p.H), [p.V, p.H])
    const gradB = scope.f32(new Float32Array(p.V), [p.V])
    const dx = scope.add((await modelOps.linearBackward(u.gradLogits, inputs.hidden, inputs.weight, { gradWeight: gradW, gradBias: gradB }))!)
    const tol = head === 'f32' ? 1e-5 : 1e-2
    checkScalar(t, fused.loss, u.loss, `${head}: loss`, tol)
    checkRelative(t, await valuesOf(fused.logp), await valuesOf(u.logp), head === 'f32' ? 1e-6 : 1e-4, `${head}: logp`)
    checkRelative(t, await valuesOf(fused.gradHidden), await valuesOf(dx), tol, `${head}: gradHidden`)
    checkRelative(t, await valuesOf(inputs.gradWeight!), await valuesOf(gradW), tol, `${head}: gradWeight`)
    checkRelative(t, await valuesOf(inputs.gradBias!), await valuesOf(gradB), tol, `${head}: gradBias`)
  }
})

test('linearTokenLogprobs against the reference and against linearGrpoLoss', async (t) => {
  for (const head of ['f32', 'bf16'] as Head[]) {
    const p: Problem = { B: 3, L: 6, H: 12, V: 501, head, withBias: true, negInfBias: 0.1, maskKind: 'random', perToken: false, withOld: false, withRef: false, options: { temperature: 1.3 } }
    const g = generate(rngFor(`token logprobs ${head}`), p)
    const ref = linearTokenLogprobsReference(g.input, 1.3)
    using scope = new Scope()
    const inputs = tensorsOf(scope, g, p, false)
    const r = scope.adopt(ops.linearTokenLogprobsSync(inputs, { temperature: 1.3, entropy: true, chunkTokens: 4, chunkVocab: 100 }))
    const tol = TOL[head === 'bf16' ? 'bf16' : 'f32'].logp
    checkRelative(t, await valuesOf(r.logp), ref.logp, tol, `${head}: logp`)
    checkRelative(t, await valuesOf(r.lse), ref.lse, tol, `${head}: lse`)
    checkRelative(t, await valuesOf(r.entropy!), ref.entropy, tol, `${head}: entropy`)
    const r2 = scope.adopt(await ops.linearTokenLogprobs(inputs, { temperature: 1.3 }))
    t.equal(r2.entropy, undefined, 'no entropy unless asked')
    checkRelative(t, await valuesOf(r2.logp), await valuesOf(r.logp), 1e-6, `${head}: default chunks give the same logp`)
  }
})

test('a confident target (1 − p_y from 1e-3 down to 1e-9): its gradient entry g·(1 − p_y) keeps its precision', async (t) => {
  // The target's entry of dZ is g·(1 − p_y). Formed as g − g·p_y it cancels when p_y is near 1 (an error of
  // 6e-8/(1 − p_y) relative: GRPO_TEST_SEED=449104054 had a row at 1 − p_y = 1.7e-4 and missed 1e-4); the kernels
  // take 1 − p_y from the sums without the target (core/softmax_totals.h). One row per call, so that row is the
  // whole gradient; chunks of one and three columns put the target alone in its tile, and with others.
  const rng = rngFor('confident target')
  for (const V of [2, 7])
    for (const gap of [7, 12, 20]) {
      const H = 4, B = 1, L = 1
      const target = rng.int(V)
      // hidden = (gap, r1, r2, r3): the target's weight row (1, 0, 0, 0) gives it a logit gap above the others'
      // (0, small random): 1 − p_y ≈ (V − 1)·e^(−gap).
      const hidden = Float32Array.from([gap, rng.range(-1, 1), rng.range(-1, 1), rng.range(-1, 1)])
      const weight = new Float32Array(V * H)
      for (let v = 0; v < V; v++) for (let k = 1; k < H; k++) weight[v * H + k] = 0.05 * rng.normal()
      weight[target * H] = 1
      const targets = Int32Array.from([target])
      const advantages = Float32Array.from([rng.bool() ? 1 : -1])
      const options = { entropyCoef: 0.01 }
      const ref = linearGrpoLossReference({ hidden, weight, targets, advantages, B, L, H, V, headDtype: 'f32' }, options)
      for (const chunkVocab of [1, 3]) {
        using scope = new Scope()
        const gradWeight = scope.f32(new Float32Array(V * H), [V, H])
        const inputs = { hidden: scope.f32(hidden, [1, H]), weight: scope.f32(weight, [V, H]), targets: scope.i32(targets, [B, L]), advantages: scope.f32(advantages, [B]), gradWeight }
        const res = scope.adopt(ops.linearGrpoLossSync(inputs, { ...options, chunkTokens: 1, chunkVocab, gradDtype: 'f32' }))
        const what = `V = ${V}, gap ${gap}, chunks of ${chunkVocab}`
        checkRelative(t, await valuesOf(res.gradHidden), ref.gradHidden, 1e-5, `${what}: gradHidden`)
        checkRelative(t, await valuesOf(gradWeight), ref.gradWeight, 1e-5, `${what}: gradWeight`)
        checkRelative(t, await valuesOf(res.logp), Float32Array.from(ref.logp), 1e-5, `${what}: logp`)
      }
    }
})

test('finite differences of the loss on the hidden states and the weight (f32)', async (t) => {
  // With oldLogp given (without it the ratio is exp(logp − stop-gradient(logp)) = 1: its value does not move) and
  // a clip range wide enough that no token changes branch within ±eps.
  const p: Problem = { B: 2, L: 3, H: 6, V: 11, head: 'f32', withBias: true, maskKind: 'none', perToken: false, withOld: true, withRef: true, options: { beta: 0.2, entropyCoef: 0.05, clipLow: 0.95, clipHigh: 100 }, scale: 1 }
  const g = generate(rngFor('finite differences'), p)
  const opts = { ...p.options, chunkTokens: 4, chunkVocab: 4 }
  using scope = new Scope()
  const inputs = tensorsOf(scope, g, p, true)
  const res = scope.adopt(ops.linearGrpoLossSync(inputs, { ...opts, gradDtype: 'f32' }))
  const gradHidden = await valuesOf(res.gradHidden)
  const gradWeight = await valuesOf(inputs.gradWeight!)
  const lossAt = (hidden: Float32Array, weight: Float32Array): number => {
    using s = new Scope()
    const r = ops.linearGrpoLossSync({ ...inputs, hidden: s.f32(hidden, [p.B * p.L, p.H]), weight: s.f32(weight, [p.V, p.H]), gradWeight: undefined, gradBias: undefined }, opts)
    s.adopt(r)
    return r.loss
  }
  const eps = 3e-3
  const h0 = Float32Array.from(g.hiddenStore as Float32Array)
  const w0 = Float32Array.from(g.weightStore as Float32Array)
  const scaleH = Math.max(...gradHidden.map(Math.abs))
  const scaleW = Math.max(...gradWeight.map(Math.abs))
  for (let k = 0; k < 6; k++) {
    const i = (k * 7) % h0.length
    const hp = Float32Array.from(h0); hp[i] += eps
    const hm = Float32Array.from(h0); hm[i] -= eps
    const fd = (lossAt(hp, w0) - lossAt(hm, w0)) / ((hp[i]! - hm[i]!))
    t.ok(Math.abs(fd - gradHidden[i]!) <= 2e-2 * scaleH, `∂loss/∂hidden[${i}]: ${gradHidden[i]} vs finite difference ${fd}`)
    const j = (k * 13) % w0.length
    const wp = Float32Array.from(w0); wp[j] += eps
    const wm = Float32Array.from(w0); wm[j] -= eps
    const fdw = (lossAt(h0, wp) - lossAt(h0, wm)) / ((wp[j]! - wm[j]!))
    t.ok(Math.abs(fdw - gradWeight[j]!) <= 2e-2 * scaleW, `∂loss/∂weight[${j}]: ${gradWeight[j]} vs finite difference ${fdw}`)
  }
})

test('gradWeight and gradBias accumulate (+=) across calls', async (t) => {
  const p: Problem = { B: 2, L: 4, H: 8, V: 50, head: 'f32', withBias: true, maskKind: 'none', perToken: false, withOld: true, withRef: false, options: {} }
  const g = generate(rngFor('accumulate'), p)
  using scope = new Scope()
  const inputs = tensorsOf(scope, g, p, true)
  scope.adopt(await ops.linearGrpoLoss(inputs, { chunkTokens: 3, chunkVocab: 16 }))
  const once = await valuesOf(inputs.gradWeight!)
  const onceB = await valuesOf(inputs.gradBias!)
  scope.adopt(await ops.linearGrpoLoss(inputs, { chunkTokens: 5, chunkVocab: 7 }))
  checkRelative(t, await valuesOf(inputs.gradWeight!), once.map((v) => 2 * v), 1e-6, 'gradWeight doubled')
  checkRelative(t, await valuesOf(inputs.gradBias!), onceB.map((v) => 2 * v), 1e-6, 'gradBias doubled')
})

test('memory: the peak stays at the chunk buffers, far below the [N, V] logits', async (t) => {
  const p: Problem = { B: 4, L: 64, H: 32, V: 8000, head: 'f32', withBias: false, maskKind: 'none', perToken: false, withOld: true, withRef: false, options: {} }
  const g = generate(rngFor('memory'), p)
  using scope = new Scope()
  const inputs = tensorsOf(scope, g, p, true)
  // fewer, larger tiles on the simt executor (each kernel launch costs it milliseconds), still 1/16 of the logits
  const options = simt ? { chunkTokens: 64, chunkVocab: 2000 } : { chunkTokens: 32, chunkVocab: 512 }
  scope.adopt(await ops.linearGrpoLoss(inputs, options)) // warm: the GEMM's per-thread buffers exist from here on
  const before = memory()
  resetPeakMemory()
  scope.adopt(await ops.linearGrpoLoss(inputs, options))
  const extra = memory().peakBytes - (before.bytes + before.scratchBytes)
  const logitsBytes = p.B * p.L * p.V * 4
  t.comment(`peak extra ${extra} bytes; the f32 logits alone would be ${logitsBytes}`)
  t.ok(extra > 0, 'the peak counts the op')
  t.ok(extra < logitsBytes / 8, `peak extra memory ${extra} < 1/8 of the logits' ${logitsBytes} bytes`)
})

// cpu: a tile of the whole vocabulary (chunkVocab >= V) with per-token options skips the
// recomputation (3 GEMMs); GSPO's sequence ratio, the entropy selection, vocabulary tiles and inputs that would
// throw take the recompute path. Both must give the reference's results, and each other's.
test('the whole-vocabulary mode (no recomputation) and the recompute path agree', async (t) => {
  const heads: Head[] = ['f32', 'bf16', 'bf16 inputs, f32 head']
  const variants: [string, LossOptions, boolean][] = [
    ['k3 KL, entropy bonus, temperature', { beta: 0.05, entropyCoef: 0.02, temperature: 0.8 }, false],
    ['token rollout correction', { beta: 0.05, rolloutCorrection: { level: 'token', mode: 'truncate', max: 2 } }, true],
    ['sequence rollout correction, dapo', { lossType: 'dapo', rolloutCorrection: { level: 'sequence', mode: 'mask', min: 0.5, max: 2 } }, true],
    ['GSPO (falls back: the sequence ratio needs every logp first)', { ratioLevel: 'sequence' }, false],
    ['top-entropy selection (falls back)', { topEntropyQuantile: 0.5 }, false],
  ]
  let i = 0
  for (const [name, options, withRollout] of variants) {
    for (const head of heads) {
      const p: Problem = { B: 3, L: 7, H: 24, V: 301, head, withBias: true, negInfBias: 0.1, maskKind: 'random', perToken: i % 2 === 0, withOld: true, withRef: true, withRollout, options }
      const whole: [number, number] = [4, p.V]
      await t.test(`${name}, ${head}: whole vocabulary`, (t) => runCase(t, `linear whole ${name} ${head}`, p, whole, i % 2 === 1))
      await t.test(`${name}, ${head}: vocabulary tiles`, (t) => runCase(t, `linear whole ${name} ${head}`, p, [4, 64], false))
      i++
    }
  }
  // The two modes on the same inputs, directly.
  for (const head of heads) {
    const p: Problem = { B: 2, L: 9, H: 16, V: 500, head, withBias: true, negInfBias: 0.05, maskKind: 'padded', perToken: false, withOld: true, withRef: true, options: { beta: 0.1, entropyCoef: 0.01 } }
    const g = generate(rngFor(`whole vs tiles ${head}`), p)
    using scope = new Scope()
    const a = tensorsOf(scope, g, p, true)
    const b = tensorsOf(scope, g, p, true)
    const extra = { ...p.options, ...headOptions(p), entropy: true, gradDtype: 'f32' as const, chunkTokens: 5 }
    const ra = scope.adopt(await ops.linearGrpoLoss(a, { ...extra, chunkVocab: p.V }))
    const rb = scope.adopt(await ops.linearGrpoLoss(b, { ...extra, chunkVocab: 128 }))
    const tol = head === 'bf16' ? 1e-2 : 1e-5
    checkScalar(t, ra.loss, rb.loss, `${head}: loss`, tol)
    checkRelative(t, await valuesOf(ra.logp), await valuesOf(rb.logp), tol, `${head}: logp`)
    checkRelative(t, await valuesOf(ra.gradHidden), await valuesOf(rb.gradHidden), tol, `${head}: gradHidden`)
    checkRelative(t, await valuesOf(a.gradWeight!), await valuesOf(b.gradWeight!), tol, `${head}: gradWeight`)
    checkRelative(t, await valuesOf(a.gradBias!), await valuesOf(b.gradBias!), tol, `${head}: gradBias`)
  }
})

test('the whole-vocabulary mode: inputs that throw leave gradWeight untouched, and its buffer is the chunk of logits', async (t) => {
  const p: Problem = { B: 2, L: 40, H: 8, V: 3000, head: 'bf16', withBias: true, maskKind: 'none', perToken: false, withOld: true, withRef: false, options: {} }
  const g = generate(rngFor('whole errors'), p)
  using scope = new Scope()
  const inputs = tensorsOf(scope, g, p, true)
  // A problem in the last chunk: the whole-vocabulary mode would have added the earlier chunks into gradWeight.
  const N = p.B * p.L
  const old = Float32Array.from(g.oldLogp!)
  old[N - 1] = NaN
  expectThrow(t, () => ops.linearGrpoLossSync({ ...inputs, oldLogp: scope.f32(old, [p.B, p.L]) }, { chunkTokens: 8, chunkVocab: p.V }), 'ERR_GRPO_NONFINITE', 'a NaN oldLogp in the last chunk')
  const hidden = Uint16Array.from(g.hiddenStore as Uint16Array)
  hidden[(N - 1) * p.H] = 0x7fc0 // NaN
  expectThrow(t, () => ops.linearGrpoLossSync({ ...inputs, hidden: scope.from(hidden, [N, p.H], 'bf16') }, { chunkTokens: 8, chunkVocab: p.V }), 'ERR_GRPO_NONFINITE', 'a NaN hidden state in the last chunk')
  const weight = Uint16Array.from(g.weightStore as Uint16Array)
  weight[weight.length - 1] = 0x7f80 // +inf
  expectThrow(t, () => ops.linearGrpoLossSync({ ...inputs, weight: scope.from(weight, [p.V, p.H], 'bf16') }, { chunkTokens: 8, chunkVocab: p.V }), 'ERR_GRPO_NONFINITE', 'an infinite weight')
  t.ok((await valuesOf(inputs.gradWeight!)).every((v) => v === 0), 'gradWeight untouched by the failed calls')
  t.ok((await valuesOf(inputs.gradBias!)).every((v) => v === 0), 'gradBias untouched by the failed calls')
  if (active !== 'cpu') return // the mode is the CPU backend's (simt runs the CUDA kernels' vocabulary tiles)
  // The buffer: chunkTokens × V bf16 logits in the whole-vocabulary mode; the recompute path (GSPO) holds the
  // bf16 dZ tile of the same size and no f32 tile (its logits live only in the GEMM's epilogue).
  const peak = async (options: LossOptions) => {
    const o = { ...options, chunkTokens: 16, chunkVocab: p.V }
    scope.adopt(await ops.linearGrpoLoss(inputs, o))
    const before = memory()
    resetPeakMemory()
    scope.adopt(await ops.linearGrpoLoss(inputs, o))
    return memory().peakBytes - (before.bytes + before.scratchBytes)
  }
  const whole = await peak({})
  const recompute = await peak({ ratioLevel: 'sequence' })
  const buffer = 16 * p.V * 2
  t.comment(`peak extra: whole vocabulary ${whole}, recompute ${recompute} bytes`)
  t.ok(whole >= buffer, `whole vocabulary: one bf16 buffer of ${buffer} bytes (peak extra ${whole})`)
  t.ok(recompute >= buffer, `recompute: the bf16 dZ tile of ${buffer} bytes (peak extra ${recompute})`)
  // The two paths run different GEMMs whose packing scratch differs too (in the 2-core CI, with GRPO_CPU_ISA=avx512,
  // which widens the bf16 operands to f32 for packing, the recompute path's peak was 22–108 KB above the whole-vocabulary
  // mode's, varying from run to run with which thread packs what): an f32 tile beside the bf16 one would add 192 KB
  // on top of that, so the bound is one f32 tile.
  const f32Tile = 16 * p.V * 4
  t.ok(recompute < whole + f32Tile, `recompute: no f32 tile beside it (peak extra ${recompute}, whole vocabulary ${whole}, an f32 tile ${f32Tile})`)
})

test('errors name the input', async (t) => {
  const p: Problem = { B: 1, L: 2, H: 4, V: 5, head: 'f32', withBias: false, maskKind: 'none', perToken: false, withOld: false, withRef: false, options: {} }
  const g = generate(rngFor('errors'), p)
  using scope = new Scope()
  const inputs = tensorsOf(scope, g, p, false)
  expectThrow(t, () => ops.linearGrpoLossSync({ ...inputs, weight: scope.f32(new Float32Array(15), [5, 3]) }), 'ERR_GRPO_SHAPE', 'weight of another H')
  expectThrow(t, () => ops.linearGrpoLossSync({ ...inputs, hidden: scope.f32(new Float32Array(12), [3, 4]) }), 'ERR_GRPO_SHAPE', 'hidden with another row count')
  expectThrow(t, () => ops.linearGrpoLossSync(inputs, { headDtype: 'bf16' }), 'ERR_GRPO_INVALID_ARG', "headDtype 'bf16' on f32 inputs")
  expectThrow(t, () => ops.linearGrpoLossSync(inputs, { chunkTokens: 0 }), 'ERR_GRPO_INVALID_ARG', 'chunkTokens 0')
  expectThrow(t, () => ops.linearGrpoLossSync(inputs, { chunkVocab: 1.5 } as never), 'ERR_GRPO_INVALID_ARG', 'chunkVocab 1.5')
  expectThrow(t, () => ops.linearGrpoLossSync(inputs, { beta: 0.1 }), 'ERR_GRPO_INVALID_ARG', 'beta without refLogp')
  expectThrow(t, () => ops.linearGrpoLossSync({ ...inputs, targets: scope.i32([0, 5], [1, 2]) }), 'ERR_GRPO_INVALID_ARG', 'a target past V')
  expectThrow(t, () => ops.linearGrpoLossSync({ ...inputs, gradBias: scope.f32(new Float32Array(5), [5]) }), 'ERR_GRPO_INVALID_ARG', 'gradBias without a bias')
  expectThrow(t, () => ops.linearGrpoLossSync(inputs, { chunkToken: 4 } as never), 'ERR_GRPO_INVALID_ARG', 'a misspelled option')
  const nan = Float32Array.from(g.hiddenStore as Float32Array)
  nan[1] = NaN
  expectThrow(t, () => ops.linearGrpoLossSync({ ...inputs, hidden: scope.f32(nan, [2, 4]) }), 'ERR_GRPO_NONFINITE', 'a NaN hidden state at a counted row')
  const banned = scope.f32([-Infinity, -Infinity, -Infinity, -Infinity, -Infinity], [5])
  expectThrow(t, () => ops.linearTokenLogprobsSync({ ...inputs, bias: banned }), 'ERR_GRPO_NONFINITE', 'every token banned')
})

checkNoLeaks(t, start)

export type { Tensor }

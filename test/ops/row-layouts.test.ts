/**
 * The row layouts the kernels treat specially, against the float64 reference (docs/math.md §1, §5, §7):
 * - rows processed in chunks (2048 entries on the CPU) where whole chunks are −∞, or the running max jumps
 *   from one chunk to the next (the fused loss keeps each chunk's exponentials against its own running max
 *   and rescales them in the gradient pass);
 * - NaN and +∞ wherever they can hide: inside a finite chunk, in a chunk that is otherwise all −∞, at the
 *   target, with the sign bit set, in every dtype;
 * - gradients large enough to be written with streaming stores (the CPU backend streams outputs of 16 MB and
 *   more), with rows that do and do not start on a cache line.
 */
import t, { type Test } from 'tap'
import { ops } from '../../lib/index.js'
import { grpoLoss as refGrpoLoss, tokenLogprobs as refTokenLogprobs } from '../reference/grpo-reference.js'
import { RUN_BIG, Rng, SEED, rngFor, storageOf, widen, type FloatDType } from '../helpers/random.js'
import { checkElementwise, checkRelative, checkZeroAt } from '../helpers/compare.js'
import { Scope, begin, checkNoLeaks, expectBoth, valuesOf } from '../helpers/setup.js'

const start = begin(t)
const DTYPES: FloatDType[] = ['f32', 'bf16', 'f16']
const GRAD_TOL: Record<FloatDType, number> = { f32: 1e-5, bf16: 8e-3, f16: 1e-3 }
const NONFINITE = 'ERR_GRPO_NONFINITE'

interface RowCase {
  values: Float64Array // exactly representable in the dtype
  targets: Int32Array
  B: number
  L: number
  V: number
}

/** grpoLoss and tokenLogprobs of `c` against the reference: logp, entropy, loss, gradient, zeros at −∞. */
async function checkAgainstReference(t: Test, c: RowCase, dtype: FloatDType, options: { temperature?: number; entropyCoef?: number; gradDtype?: 'f32' }, withTokenLogprobs = true): Promise<void> {
  using s = new Scope()
  const { B, L, V } = c
  const rng = rngFor(`advantages ${dtype} ${V}`)
  const advantages = Float64Array.from({ length: B }, () => rng.range(-1, 1))
  const logits = s.from(storageOf(dtype, c.values), [B, L, V], dtype)
  const targets = s.i32(c.targets, [B, L])
  const T = options.temperature ?? 1
  if (withTokenLogprobs) {
    const refRows = refTokenLogprobs({ logits: c.values, targets: c.targets, B, L, V }, { temperature: T })
    const rows = s.adopt(await ops.tokenLogprobs(logits, targets, { temperature: T, entropy: true }))
    checkElementwise(t, await valuesOf(rows.logp), refRows.logp, 1e-4, 'tokenLogprobs logp')
    checkRelative(t, await valuesOf(rows.logp), refRows.logp, 1e-5, 'tokenLogprobs logp')
    checkRelative(t, await valuesOf(rows.entropy!), refRows.entropy, 1e-5, 'tokenLogprobs entropy')
  }

  const lossOptions = { temperature: T, entropyCoef: options.entropyCoef ?? 0, loss: 'nll' as const }
  const ref = refGrpoLoss({ logits: c.values, targets: c.targets, advantages, B, L, V }, lossOptions)
  const res = s.adopt(
    await ops.grpoLoss({ logits, targets, advantages: s.f32(advantages, [B]) }, { ...lossOptions, gradDtype: options.gradDtype }),
  )
  checkRelative(t, await valuesOf(res.logp), ref.logp, 1e-5, 'grpoLoss logp')
  const grad = await valuesOf(res.gradLogits)
  const outDtype = (options.gradDtype ?? dtype) as FloatDType
  checkRelative(t, grad, ref.gradLogits, GRAD_TOL[outDtype], `gradient (${outDtype})`)
  const banned: number[] = []
  for (let i = 0; i < c.values.length; i++) if (c.values[i] === -Infinity) banned.push(i)
  checkZeroAt(t, grad, banned, 'gradient at −∞ logits')
}

/** Rows of V values: normal(0, scale) with whole −∞ stretches, the target drawn among the finite entries. */
function rowsWith(rng: Rng, dtype: FloatDType, B: number, L: number, V: number, build: (row: Float64Array, r: number) => void): RowCase {
  const values = new Float64Array(B * L * V)
  const targets = new Int32Array(B * L)
  for (let r = 0; r < B * L; r++) {
    const row = values.subarray(r * V, (r + 1) * V)
    for (let j = 0; j < V; j++) row[j] = rng.normal() * 3
    build(row, r)
    const finite: number[] = []
    for (let j = 0; j < V; j++) if (row[j] !== -Infinity) finite.push(j)
    targets[r] = rng.pick(finite)
  }
  return { values: widen(dtype, storageOf(dtype, values)), targets, B, L, V }
}

t.test('whole chunks of −∞, and a running max that jumps between chunks', async (t) => {
  for (const dtype of DTYPES) {
    const rng = rngFor(`chunks ${dtype}`)
    const V = 7001
    const c = rowsWith(rng, dtype, 2, 3, V, (row, r) => {
      if (r % 3 === 0) row.fill(-Infinity, 0, 4500) // the first two chunks and part of the third
      if (r % 3 === 1) row.fill(-Infinity, 2048, 4096) // one whole chunk in the middle
      if (r % 3 === 2) for (let j = 0; j < V; j++) row[j] += j >= 6000 ? 40 : j >= 2048 ? 20 : 0 // max rises twice
      if (r === 5) row[V - 1] = 90 // the row's max is its very last entry
    })
    for (const options of [{}, { temperature: 0.7, entropyCoef: 0.05 }, { entropyCoef: 0.02, gradDtype: 'f32' as const }]) {
      await t.test(`${dtype} ${JSON.stringify(options)}`, (t) => checkAgainstReference(t, c, dtype, options))
    }
  }
})

t.test('NaN and +∞ are found wherever they are', async (t) => {
  const V = 5000
  const base = new Float64Array(2 * V)
  const rng = rngFor('nonfinite')
  for (let i = 0; i < base.length; i++) base[i] = rng.normal()
  const targets = [17, 4321]
  // bit patterns: a NaN with the sign bit set, in each dtype
  const negativeNaN: Record<FloatDType, number> = { f32: 0xffc00000, bf16: 0xffc0, f16: 0xfe00 }
  const placements: [string, (row: Float64Array) => number | undefined][] = [
    ['NaN inside a finite chunk', (row) => ((row[V + 3000] = NaN), undefined)],
    ['NaN in a chunk that is otherwise −∞', (row) => (row.fill(-Infinity, V + 2048, V + 4096), (row[V + 3000] = NaN), undefined)],
    ['NaN in a row that is otherwise −∞', (row) => (row.fill(-Infinity, V, 2 * V), (row[V + 10] = NaN), undefined)],
    ['NaN at the target', (row) => ((row[V + targets[1]!] = NaN), undefined)],
    ['+∞ at the end of the row', (row) => ((row[2 * V - 1] = Infinity), undefined)],
    ['NaN with the sign bit set', () => V + 2500],
  ]
  using s = new Scope()
  const y = s.i32(targets, [1, 2])
  for (const dtype of DTYPES) {
    for (const [what, place] of placements) {
      const values = base.slice()
      const rawAt = place(values)
      const stored = storageOf(dtype, values)
      if (rawAt !== undefined) {
        if (dtype === 'f32') new Uint32Array(stored.buffer)[rawAt] = negativeNaN.f32
        else (stored as Uint16Array)[rawAt] = negativeNaN[dtype]
      }
      const logits = s.from(stored, [1, 2, V], dtype)
      const advantages = s.f32([1], [1])
      await expectBoth(t, (async) => (async ? ops.tokenLogprobs : ops.tokenLogprobsSync)(logits, y), NONFINITE, `tokenLogprobs ${dtype}: ${what}`)
      await expectBoth(t, (async) => (async ? ops.grpoLoss : ops.grpoLossSync)({ logits, targets: y, advantages }), NONFINITE, `grpoLoss ${dtype}: ${what}`)
    }
  }
})

t.test('gradients written with streaming stores (>= 16 MB), rows on and off cache-line boundaries', { skip: !RUN_BIG && 'GRPO_TEST_SKIP_BIG=1' }, async (t) => {
  // 84 rows x 50257 f32 = 16.9 MB: row starts fall anywhere in a cache line. 56 x 151936 bf16 = 17 MB: the
  // 16-bit store path.
  // (test/cpu/ops-on-each-isa runs the whole row-kernel suite with every gradient streamed, on small shapes.)
  const cases: [FloatDType, number, number, { entropyCoef?: number; gradDtype?: 'f32'; temperature?: number }][] = [
    ['f32', 84, 50257, { entropyCoef: 0.01, temperature: 0.9 }],
    ['bf16', 56, 151936, {}],
  ]
  for (const [dtype, L, V, options] of cases) {
    const rng = rngFor(`stream ${dtype} ${V}`)
    const c = rowsWith(rng, dtype, 1, L, V, (row, r) => {
      if (r % 7 === 3) row.fill(-Infinity, 100, 30000)
    })
    await t.test(`${dtype} [1, ${L}, ${V}] ${JSON.stringify(options)}`, (t) => checkAgainstReference(t, c, dtype, options, false))
  }
})

t.comment(`seed ${SEED}`)
checkNoLeaks(t, start)

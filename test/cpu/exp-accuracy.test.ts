/**
 * The CPU row kernels' exponential (expScaled in csrc/cpu/row_kernels.inc: 2^(d·log2(e)/T) for d = x − max)
 * against float64, for every instruction set this CPU runs (docs/math-exp.md has the full-range numbers):
 * - the native sweep: every 509th f32 input from −0 to −∞ (4.2 million per run) against std::exp2 in double;
 * - an independent check in JavaScript: random inputs against Math.exp(d / T), which shares nothing with the
 *   kernel's base-2 formulation;
 * - the special values: 0 → 1 exactly, −∞ → 0 exactly (banned tokens), NaN → NaN (so a NaN logit is caught).
 * Tolerances: 2.5 ulp (2.5e-7 relative) where the result is at least 2^-124.99; exactly 0 below 2^-126.6
 * (the flush, see the kernel's comment); either in between.
 */
import t from 'tap'
import { native } from '../../lib/native.js'
import { Rng, SEED } from '../helpers/random.js'

const ALL = ['avx512-bf16', 'avx512', 'avx2', 'generic']
const runs = (isa: string): boolean => {
  try {
    native().kernelExp2(new Float32Array(1), { isa })
    return true
  } catch {
    return false
  }
}
const isas = ALL.filter(runs)
t.comment(`instruction sets on this CPU: ${isas.join(', ')}; seed ${SEED}`)

for (const isa of isas) {
  t.test(isa, async (t) => {
    for (const temperature of [1, 0.7, 3.3]) {
      const a = native().measureExp2Accuracy({ isa, temperature, stride: 509 })
      t.equal(a.isa, isa, 'the requested kernels ran')
      t.ok(a.checked > 1e6, `T = ${temperature}: ${a.checked} inputs in the accurate range`)
      t.ok(a.maxUlp <= 2.5, `T = ${temperature}: max error ${a.maxUlp.toFixed(2)} ulp <= 2.5 (at d = ${a.worstInput})`)
      t.ok(a.maxRelError <= 2.5e-7, `T = ${temperature}: max relative error ${a.maxRelError.toExponential(2)} <= 2.5e-7`)
      t.ok(Math.abs(a.meanRelError) <= 1e-8, `T = ${temperature}: mean relative error ${a.meanRelError.toExponential(2)} (no bias a row sum would accumulate)`)
      t.equal(a.flushViolations, 0, `T = ${temperature}: 0 for all ${a.flushChecked} inputs below 2^-126.6`)

      const rng = new Rng(SEED ^ 0xe4e4)
      const n = 100_000
      const d = new Float32Array(n)
      for (let i = 0; i < n; i++) d[i] = -rng.range(0, 130) * temperature * Math.LN2 * (i % 3 === 0 ? rng.uniform() : 1)
      const got = native().kernelExp2(d, { isa, temperature })
      let worst = 0, worstAt = 0, flushBad = 0
      for (let i = 0; i < n; i++) {
        const want = Math.exp(d[i]! / temperature)
        const tExp = d[i]! * Math.LOG2E / temperature
        if (tExp >= -124.99) {
          const rel = Math.abs(got[i]! / want - 1)
          if (rel > worst) [worst, worstAt] = [rel, d[i]!]
        } else if (tExp < -126.6 && got[i] !== 0) flushBad++
      }
      t.ok(worst <= 2.5e-7, `T = ${temperature}: against Math.exp, max relative error ${worst.toExponential(2)} (d = ${worstAt})`)
      t.equal(flushBad, 0, `T = ${temperature}: flushed to exactly 0 below 2^-126.6`)
      const special = native().kernelExp2(Float32Array.from([0, -0, -Infinity, NaN, -3.4e38, -1e-30]), { isa, temperature })
      t.equal(special[0], 1, 'd = 0 gives exactly 1 (the row max contributes exactly 1 to its sum)')
      t.equal(special[1], 1, 'd = -0 gives exactly 1')
      t.equal(special[2], 0, 'd = -inf gives exactly 0 (a banned token)')
      t.ok(Number.isNaN(special[3]), 'd = NaN gives NaN')
      t.equal(special[4], 0, 'd = -3.4e38 gives 0')
      t.equal(special[5], 1, 'd = -1e-30 gives 1')
    }
  })
}

t.test('bad arguments are GrpoErrors', async (t) => {
  t.throws(() => native().kernelExp2(new Float32Array(1), { isa: 'sse9' }), { code: 'ERR_GRPO_INVALID_ARG' })
  t.throws(() => native().kernelExp2([1] as unknown as Float32Array), { code: 'ERR_GRPO_INVALID_ARG' })
  t.throws(() => native().measureExp2Accuracy({ stride: 0 }), { code: 'ERR_GRPO_INVALID_ARG' })
  t.throws(() => native().measureExp2Accuracy({ temperature: 0 }), { code: 'ERR_GRPO_INVALID_ARG' })
})

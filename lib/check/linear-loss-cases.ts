/**
 * The GPU check's correctness cases for the fused linear loss (lib/linear-loss.ts): ops.linearTokenLogprobs and
 * ops.linearGrpoLoss on an f32 head, a bf16 head and the f32 head over bf16 inputs, with chunk sizes that divide
 * neither the counted tokens nor the vocabulary (several tiles merged by the online log-sum-exp, partial last
 * chunk and tile), a bias with banned (−∞) entries, padded rows holding NaN hidden states (never read), and the
 * head's gradients accumulated into non-zero tensors.
 *
 * Like cases.ts, each case runs on the CPU backend and on the backend under test with the same inputs. Tolerances:
 * the suite's bounds against float64 (test/ops/linear-grpo-loss.test.ts) times PAIR; a bf16 head rounds each logit
 * and each logit gradient to bf16, so two correct backends whose GEMMs sum in another order part by an ulp there.
 */
import * as ops from '../ops.js'
import { type CheckCase, EXACT, type Outputs, norm, onDevice, values } from './case-kit.js'
import { PAIR, type Tolerance } from './compare.js'
import { type Rng, advantages, lossInputs, mask, storage } from './inputs.js'
import { lossTolerances } from './loss-tolerances.js'

type Head = 'f32' | 'bf16' | 'bf16 inputs, f32 head'

interface LinearShape {
  B: number
  L: number
  H: number
  V: number
  chunk: [number, number]
  dry?: { B: number; L: number; H: number; V: number; chunk: [number, number] }
}

const TOL = { f32: { stats: 1e-4, logp: 1e-4, grad: 1e-4 }, bf16: { stats: 2e-3, logp: 2e-3, grad: 1e-2 } }

interface HeadInputs {
  B: number
  L: number
  H: number
  V: number
  chunk: [number, number]
  dt: 'f32' | 'bf16'
  headDtype?: 'f32'
  hidden: Float32Array | Uint16Array
  weight: Float32Array | Uint16Array
  bias: Float32Array | Uint16Array
  targets: Int32Array
  mask: Uint8Array
}

function headInputs(rng: Rng, s: LinearShape, head: Head, dry: boolean): HeadInputs {
  const { B, L, H, V, chunk } = dry && s.dry ? s.dry : s
  const dt = head === 'f32' ? 'f32' : 'bf16'
  const m = mask(rng, B, L)
  const hidden = new Float32Array(B * L * H)
  for (let n = 0; n < B * L; n++) {
    const scale = 2.5 * rng.logUniform(0.3, 2)
    for (let k = 0; k < H; k++) hidden[n * H + k] = m[n] ? scale * rng.normal() : NaN
  }
  const weight = Float32Array.from({ length: V * H }, () => rng.normal() / Math.sqrt(H))
  const bias = Float32Array.from({ length: V }, () => rng.normal())
  for (let i = 0; i < Math.floor(V / 20); i++) bias[1 + rng.int(V - 1)] = -Infinity // token 0 is never banned
  const targets = Int32Array.from({ length: B * L }, (_, n) => {
    if (!m[n]) return -100
    for (;;) {
      const y = rng.int(V)
      if (bias[y] !== -Infinity) return y
    }
  })
  return {
    B, L, H, V, chunk, dt,
    headDtype: head === 'bf16 inputs, f32 head' ? 'f32' : undefined,
    hidden: storage(dt, hidden),
    weight: storage(dt, weight),
    bias: storage(dt, bias),
    targets,
    mask: m,
  }
}

function tensorsOf(s: { from: (d: Float32Array | Uint16Array | Int32Array | Uint8Array, shape: number[], dt?: 'f32' | 'bf16' | 'i32' | 'u8') => import('../tensor.js').Tensor }, x: HeadInputs) {
  return {
    hidden: s.from(x.hidden, [x.B * x.L, x.H], x.dt),
    weight: s.from(x.weight, [x.V, x.H], x.dt),
    bias: s.from(x.bias, [x.V], x.dt),
    targets: s.from(x.targets, [x.B, x.L], 'i32'),
    mask: s.from(x.mask, [x.B, x.L], 'u8'),
  }
}

function headOptions(x: HeadInputs) {
  return { chunkTokens: x.chunk[0], chunkVocab: x.chunk[1], ...(x.headDtype ? { headDtype: x.headDtype } : {}) }
}

function linearTokenLogprobsCase(name: string, head: Head, shape: LinearShape): CheckCase {
  return {
    op: 'ops.linearTokenLogprobs',
    name: `linearTokenLogprobs ${head} ${name}`,
    edge: shape === WIDE,
    async prepare(ctx) {
      const x = headInputs(ctx.rng, shape, head, ctx.dry)
      const tol = TOL[head === 'bf16' ? 'bf16' : 'f32']
      const row = norm(PAIR * tol.logp)
      return {
        shape: `hidden [${x.B * x.L}, ${x.H}], weight [${x.V}, ${x.H}] ${x.dt}, chunks ${x.chunk.join('×')}`,
        tolerances: { logp: row, lse: row, entropy: row },
        run: (device) =>
          onDevice(device, async (s) => {
            const r = s.keep(await ops.linearTokenLogprobs(tensorsOf(s, x), { ...headOptions(x), temperature: 1.2, entropy: true }))
            return { logp: await values(r.logp), lse: await values(r.lse), entropy: await values(r.entropy!) }
          }),
      }
    },
  }
}

function linearGrpoLossCase(name: string, head: Head, shape: LinearShape, options: { beta?: number; entropyCoef?: number; temperature?: number }): CheckCase {
  return {
    op: 'ops.linearGrpoLoss',
    name: `linearGrpoLoss ${head} ${name}`,
    edge: shape === WIDE,
    async prepare(ctx) {
      const x = headInputs(ctx.rng, shape, head, ctx.dry)
      const { B, L, H, V } = x
      // The CPU's log-probs, so that old and ref can be placed away from every branch point of the loss.
      const ref0 = await ctx.reference((device) =>
        onDevice(device, async (s) => {
          const r = s.keep(await ops.linearTokenLogprobs(tensorsOf(s, x), { ...headOptions(x), temperature: options.temperature }))
          return { logp: await values(r.logp) }
        }),
      )
      const near = lossInputs(ctx.rng, ref0.logp as Float32Array, { clipLow: 0.2, clipHigh: 0.2 })
      const adv = advantages(ctx.rng, B)
      const gw0 = Float32Array.from({ length: V * H }, () => 0.01 * ctx.rng.normal())
      const gb0 = Float32Array.from({ length: V }, () => 0.01 * ctx.rng.normal())
      const tol = TOL[head === 'bf16' ? 'bf16' : 'f32']
      const tokens = x.mask.reduce((a, v) => a + v, 0)
      // Each scalar relative to the mass of its terms (a loss over advantages of both signs, approxKl = mean(old −
      // logp), cancel: the dry run with --seed 1161075533 held an approxKl of 1.1e-3 to 2e-4 of itself, 2.1e-7).
      const loss = lossTolerances(
        { B, L, maxEntropy: Math.log(Math.max(2, V)), logp: ref0.logp as Float32Array, old: near.old, ref: near.ref, adv, perToken: false, mask: x.mask, options },
        PAIR * tol.stats,
      )
      const count: Tolerance = { kind: 'scalar', rtol: 0, atol: (head === 'bf16' ? 2.5 : 0.5) / Math.max(1, tokens) }
      const tolerances: Record<string, Tolerance> = {
        loss: loss.loss!,
        'stats.loss': loss['stats.loss']!,
        'stats.pgLoss': loss['stats.pgLoss']!,
        'stats.klMean': loss['stats.klMean']!,
        'stats.entropyMean': loss['stats.entropyMean']!,
        'stats.clipFrac': count,
        'stats.ratioMean': loss['stats.ratioMean']!,
        'stats.approxKl': loss['stats.approxKl']!,
        'stats.tokens': EXACT,
        logp: norm(PAIR * tol.logp),
        entropy: norm(PAIR * tol.logp),
        gradHidden: norm(PAIR * tol.grad),
        gradWeight: norm(PAIR * tol.grad),
        gradBias: norm(PAIR * tol.grad),
      }
      return {
        shape: `hidden [${B * L}, ${H}], weight [${V}, ${H}] ${x.dt}, chunks ${x.chunk.join('×')}`,
        tolerances,
        run: (device) =>
          onDevice(device, async (s) => {
            const gradWeight = s.from(gw0, [V, H], 'f32')
            const gradBias = s.from(gb0, [V], 'f32')
            const r = s.keep(
              await ops.linearGrpoLoss(
                {
                  ...tensorsOf(s, x),
                  oldLogp: s.from(near.old, [B, L], 'f32'),
                  refLogp: s.from(near.ref, [B, L], 'f32'),
                  advantages: s.from(adv, [B], 'f32'),
                  gradWeight,
                  gradBias,
                },
                { ...options, ...headOptions(x), entropy: true, gradDtype: 'f32' },
              ),
            )
            const out: Outputs = {
              loss: r.loss,
              'stats.loss': r.stats.loss,
              'stats.pgLoss': r.stats.pgLoss,
              'stats.klMean': r.stats.klMean,
              'stats.entropyMean': r.stats.entropyMean,
              'stats.clipFrac': r.stats.clipFrac,
              'stats.ratioMean': r.stats.ratioMean,
              'stats.approxKl': r.stats.approxKl,
              'stats.tokens': r.stats.tokens,
              logp: await values(r.logp),
              entropy: await values(r.entropy!),
              gradHidden: await values(r.gradHidden),
              gradWeight: await values(gradWeight),
              gradBias: await values(gradBias),
            }
            return out
          }),
      }
    },
  }
}

// Odd sizes past one GEMM tile in each direction; on a GPU also a Qwen-sized head slice (H 896, V 151936 would be
// 0.5 GB of weight per case: V 32771 keeps the check quick while still running many full tiles).
const SMALL: LinearShape = { B: 3, L: 23, H: 72, V: 1031, chunk: [29, 300], dry: { B: 3, L: 7, H: 40, V: 300, chunk: [8, 128] } }
const WIDE: LinearShape = { B: 4, L: 130, H: 896, V: 32771, chunk: [200, 8192], dry: { B: 2, L: 9, H: 40, V: 700, chunk: [7, 256] } }

export function linearLossCases(): CheckCase[] {
  const heads: Head[] = ['f32', 'bf16', 'bf16 inputs, f32 head']
  return [
    ...heads.map((h) => linearTokenLogprobsCase('small', h, SMALL)),
    ...heads.map((h) => linearGrpoLossCase('small k3 beta 0.04, entropy 0.01, T 0.9', h, SMALL, { beta: 0.04, entropyCoef: 0.01, temperature: 0.9 })),
    linearGrpoLossCase('wide', 'bf16', WIDE, { beta: 0.04 }),
    linearTokenLogprobsCase('wide', 'f32', WIDE),
  ]
}

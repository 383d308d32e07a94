/**
 * Child process of native.test.ts: generated arguments straight into the native binding (no TypeScript
 * checks in front), including tensors with huge zero-size shapes, out-of-range ids and targets, NaN and
 * infinite values, disposed handles and wrong types. Prints one JSON line: the cases run and every failure
 * that was not a GrpoError. A crash of this process is the other kind of failure (the parent sees the signal).
 * argv: seed, number of cases.
 */
import fc from 'fast-check'
import { GrpoError } from '../../lib/index.js'
import { native } from '../../lib/native.js'
import type { NativeTensor } from '../../types/binding.js'

const seed = Number(process.argv[2])
const numRuns = Number(process.argv[3])
const b = native()

type Spec = { dtype: string; shape: number[]; fill: number; disposed: boolean }
const live: NativeTensor[] = []
function make(s: Spec): NativeTensor {
  const t = new b.NativeTensor(null, s.shape, s.dtype as never, 'cpu')
  const n = s.shape.reduce((a, x) => a * x, 1)
  if (n > 0 && s.fill !== 0) {
    const data =
      s.dtype === 'f32' ? new Float32Array(n).fill(s.fill) : s.dtype === 'i32' ? new Int32Array(n).fill(s.fill) : s.dtype === 'u8' ? new Uint8Array(n).fill(s.fill) : new Uint16Array(n).fill(s.fill)
    t.write(0, data, false)
  }
  if (s.disposed) t.dispose()
  live.push(t)
  return t
}

const dtype = fc.constantFrom('f32', 'bf16', 'f16', 'i32', 'u8')
const small = fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 4 })
const hugeEmpty = fc.constantFrom([2 ** 31, 0], [0, 2 ** 40], [2 ** 26, 0, 8], [2 ** 21, 2 ** 21, 2 ** 21, 0], [0], [1, 0, 2 ** 31])
const fill = fc.constantFrom(0, 1, -1, 3, 255, 2 ** 31 - 1, -(2 ** 31), NaN, Infinity, -Infinity, 0x7fc0, 0x7c00)
const spec: fc.Arbitrary<Spec> = fc.record({ dtype, shape: fc.oneof({ weight: 4, arbitrary: small }, { weight: 1, arbitrary: hugeEmpty }), fill, disposed: fc.boolean() })
  .map((s) => ({ ...s, fill: s.dtype === 'u8' ? Math.abs(s.fill) % 256 || 0 : s.dtype === 'i32' && !Number.isFinite(s.fill) ? 7 : s.fill, disposed: s.disposed && s.shape.length % 2 === 1 }))

const scalar = fc.constantFrom<unknown>(undefined, null, true, 0, -1, 1, 0.5, 1e-40, 3e-323, 1e39, 3e38, NaN, Infinity, 2 ** 53, -(2 ** 31), 'x', 'f32', 'cpu', 'cuda', 'mean', 'k3', [], {}, [1, 2])
const value: fc.Arbitrary<unknown> = fc.oneof({ weight: 3, arbitrary: spec }, { weight: 2, arbitrary: scalar }, { weight: 1, arbitrary: fc.array(spec, { maxLength: 3 }) })
const keys = ['logits', 'targets', 'mask', 'oldLogp', 'refLogp', 'advantages', 'logp', 'entropy', 'params', 'grads', 'm', 'v', 'temperature', 'topP', 'groupSize', 'groupIds', 'baseline', 'scale', 'eps',
  'nonFinite', 'clipLow', 'clipHigh', 'dualClip', 'logRatioClamp', 'beta', 'kl', 'entropyCoef', 'lossAgg', 'normalizer', 'normLength', 'loss', 'gradDtype', 'inplace', 'bias', 'gradBias', 'greedy',
  'seed', 'step', 'streams', 'maxNorm', 'lr', 'beta1', 'beta2', 'weightDecay', 'gradScale', 'zeroGrad']
const object = fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 8 })
const arg = fc.oneof({ weight: 3, arbitrary: value }, { weight: 2, arbitrary: object })

function materialize(v: unknown, depth = 0): unknown {
  if (v && typeof v === 'object' && 'dtype' in v && 'shape' in v && 'fill' in v) return make(v as Spec)
  if (depth > 1) return v
  if (Array.isArray(v)) return v.map((x) => materialize(x, depth + 1))
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, materialize(x, depth + 1)]))
  return v
}

type Target = { name: string; arity: number; call: (args: unknown[]) => unknown }
const fn = (name: string, arity: number): Target => ({ name, arity, call: (a) => (b as unknown as Record<string, (...x: unknown[]) => unknown>)[name]!(...a) })
const targets: Target[] = [
  fn('tokenLogprobs', 4), fn('groupAdvantages', 3), fn('policyLoss', 3), fn('grpoLoss', 3), fn('embeddingBagForward', 4), fn('embeddingBagBackward', 5),
  fn('sampleTokens', 3), fn('gradNorm', 3), fn('adamw', 3), fn('zeroTensors', 2),
  { name: 'new NativeTensor', arity: 4, call: (a) => new b.NativeTensor(...(a as [never, never, never, never])) },
  { name: 'write', arity: 4, call: (a) => (a[0] as NativeTensor).write(a[1] as never, a[2] as never, a[3] as never) },
  { name: 'to', arity: 3, call: (a) => (a[0] as NativeTensor).to(a[1] as never, a[2] as never) },
  { name: 'read', arity: 1, call: (a) => (a[0] as NativeTensor).read() },
]

const failures: string[] = []
let cases = 0
for (const [i, target] of targets.entries()) {
  const samples = fc.sample(fc.tuple(...Array.from({ length: target.arity }, () => arg), fc.boolean()), { numRuns: Math.ceil(numRuns / targets.length), seed: (seed + i * 7919) >>> 0 })
  for (const sample of samples) {
    cases++
    const args = sample.slice(0, target.arity).map((x) => materialize(x))
    // The async flag is the last argument of every op; give it a boolean most of the time.
    if (target.name !== 'new NativeTensor' && target.name !== 'read') args[target.arity - 1] = sample[target.arity]
    const typedMethod = target.name === 'write' || target.name === 'to' || target.name === 'read'
    if (typedMethod && !(args[0] instanceof b.NativeTensor)) continue
    try {
      let r = target.call(args)
      if (r instanceof Promise) r = await r
    } catch (error) {
      if (!(error instanceof GrpoError)) failures.push(`${target.name}: ${(error as Error)?.constructor?.name}: ${String((error as Error)?.message ?? error).slice(0, 160)}`)
    }
    for (const t of live.splice(0)) t.dispose()
  }
}
process.stdout.write(JSON.stringify({ cases, failures: [...new Set(failures)].slice(0, 20) }) + '\n')

/**
 * The fuzz suite's shared parts: a fixed budget of cases per run, the run's seed (printed, GRPO_TEST_SEED replays
 * it; fast-check reports the failing case's path too), the pool of values a hostile or careless caller passes,
 * and the check every call must pass: it returns, or it throws (rejects) a GrpoError with one of the stable codes.
 */
import fc from 'fast-check'
import { GrpoError, Tensor } from '../../lib/index.js'
import { SEED } from '../helpers/random.js'

export { SEED }

/** Cases per run of the whole suite (GRPO_FUZZ_CASES; default 3000): each file takes its share. */
export const FUZZ_CASES: number = (() => {
  const n = Number(process.env.GRPO_FUZZ_CASES ?? '3000')
  return Number.isSafeInteger(n) && n > 0 ? n : 3000
})()

export const CODES = new Set([
  'ERR_GRPO_INVALID_ARG',
  'ERR_GRPO_SHAPE',
  'ERR_GRPO_DTYPE',
  'ERR_GRPO_NONFINITE',
  'ERR_GRPO_DISPOSED',
  'ERR_GRPO_NO_CUDA',
  'ERR_GRPO_CUDA',
  'ERR_GRPO_OOM',
  'ERR_GRPO_BINDING_LOAD',
  'ERR_GRPO_ABORTED',
])

/** What a caller's own code throws (a getter, a callback): it must come back to the caller unchanged. */
export class CallerError extends Error {
  override name = 'CallerError'
}

const throwingGetter = (): object =>
  Object.defineProperty({}, 'length', {
    get() {
      throw new CallerError('a getter of the caller')
    },
    enumerable: true,
  })

const cyclic = (): object => {
  const o: Record<string, unknown> = { a: 1 }
  o.self = o
  return o
}

const deepArray = (depth: number): unknown => {
  let v: unknown = 1
  for (let i = 0; i < depth; i++) v = [v]
  return v
}

const holes = (): unknown[] => {
  const a = [1, 2, 3]
  delete a[1]
  return a
}

/** Scalars, strings and small objects of every kind JavaScript has. */
export const badScalar: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(undefined, null, true, false, 0, -0, -1, 1, 0.5, 3, 1e-45, 1e-39, 1e39, -1e39, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), Number.MAX_VALUE),
  fc.constantFrom(1n, -1n, 2n ** 64n),
  fc.constantFrom('', 'x', 'cpu', 'cuda', 'f32', 'i32', 'nope', '__proto__', 'constructor', '\u0000', '-1', '1e400'),
  fc.double(),
  fc.integer(),
  fc.string({ maxLength: 20 }),
)

/** Containers and exotic objects. */
export const badObject: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>({}, [], [[]], [1, 2, 3], [NaN], ['a'], [1, 'a'], [null], [undefined], new Map(), new Set(), new Date(0), /x/, new ArrayBuffer(8), new Error('x')),
  fc.constant(null).map(() => Object.create(null) as unknown),
  fc.constant(null).map(() => holes() as unknown),
  fc.constant(null).map(() => cyclic() as unknown),
  fc.constant(null).map(() => deepArray(20000)),
  fc.constant(null).map(() => throwingGetter() as unknown),
  fc.constant(null).map(() => new DataView(new ArrayBuffer(8)) as unknown),
  fc.constant(null).map(() => Symbol('s') as unknown),
  fc.constant(null).map(() => ((x: unknown) => x) as unknown),
  fc.constant(null).map(() => Promise.resolve(1) as unknown),
  fc.constantFrom('Float32Array', 'Float64Array', 'Int32Array', 'Uint8Array', 'Uint16Array', 'Int8Array', 'BigInt64Array').chain((kind) =>
    fc.integer({ min: 0, max: 6 }).map((n) => {
      if (kind === 'BigInt64Array') return new BigInt64Array(n) as unknown
      const Ctor = globalThis[kind as 'Float32Array'] as unknown as new (n: number) => ArrayLike<number> & { fill(v: number): unknown }
      const a = new Ctor(n)
      a.fill(kind === 'Float32Array' || kind === 'Float64Array' ? NaN : 7)
      return a as unknown
    }),
  ),
  fc.array(fc.oneof(fc.double(), fc.integer(), fc.constantFrom(null, 'a', -1, 2 ** 31)), { maxLength: 6 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.double(), fc.string({ maxLength: 4 }), fc.constant(null)), { maxKeys: 4 }),
)

export const bad: fc.Arbitrary<unknown> = fc.oneof(badScalar, badObject)

/** A valid value most of the time, else a bad one: calls then get past their first check to the later ones. */
export function mostly<T>(valid: fc.Arbitrary<T> | T, weightValid = 2): fc.Arbitrary<unknown> {
  const arb = valid instanceof fc.Arbitrary ? valid : fc.constant(valid)
  return fc.oneof({ weight: weightValid, arbitrary: arb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: bad })
}

/** An options object: each key absent, valid or bad; sometimes not an object at all. */
export function options(keys: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const record = fc.record(
    Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, fc.oneof(v, bad)])),
    { requiredKeys: [] },
  )
  return fc.oneof({ weight: 5, arbitrary: record as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: bad })
}

export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown }

/** Runs a call, awaiting a promise and draining (a few items of) an async iterator it returns. */
export async function outcome(call: () => unknown): Promise<Outcome> {
  try {
    let value = call()
    if (value instanceof Promise) value = await value
    if (value && typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
      let n = 0
      for await (const item of value as AsyncIterable<unknown>) {
        release(item)
        if (++n > 100) break
      }
    }
    return { ok: true, value }
  } catch (error) {
    return { ok: false, error }
  }
}

/** Disposes the tensors a call returned (directly or one level inside an object or array). */
export function release(value: unknown): void {
  if (value instanceof Tensor) value.dispose()
  else if (Array.isArray(value)) value.forEach((v) => v instanceof Tensor && v.dispose())
  else if (value && typeof value === 'object') {
    let values: unknown[]
    try {
      values = Object.values(value)
    } catch (e) {
      // A call may hand back the caller's own object (toPlain returns what it does not convert): a throwing
      // getter of the caller's is not the library's error, and such an object holds no tensor of ours.
      if (e instanceof CallerError) return
      throw e
    }
    for (const v of values) if (v instanceof Tensor) v.dispose()
    if (typeof (value as { dispose?: unknown }).dispose === 'function' && !(value instanceof Tensor)) {
      try {
        ;(value as { dispose(): void }).dispose()
      } catch {
        // a disposable the call returned half-made: nothing to release
      }
    }
  }
}

/** Why an outcome breaks the promise (null when it keeps it): any error must be a GrpoError with a stable code. */
export function broken(result: Outcome): string | null {
  if (result.ok) {
    release(result.value)
    return null
  }
  const e = result.error
  if (e instanceof CallerError) return null
  if (e instanceof GrpoError) {
    if (!CODES.has(e.code)) return `GrpoError with an unknown code ${String(e.code)}: ${e.message}`
    if (typeof e.message !== 'string' || e.message === '') return `GrpoError ${e.code} without a message`
    return null
  }
  const name = (e as Error)?.constructor?.name ?? typeof e
  return `${name}: ${String((e as Error)?.message ?? e).slice(0, 200)}`
}

export function describeArgs(args: readonly unknown[]): string {
  return args
    .map((a) => {
      if (a instanceof Tensor) return a.toString()
      if (typeof a === 'bigint') return `${a}n`
      if (typeof a === 'symbol' || typeof a === 'function') return String(a)
      try {
        const s = JSON.stringify(a)
        return s === undefined ? String(a) : s.slice(0, 80)
      } catch {
        return Object.prototype.toString.call(a)
      }
    })
    .join(', ')
}

/**
 * One property per target: `numRuns` generated argument lists, each call checked with `broken`. Failures are
 * collected (the first few reported with their arguments) rather than shrunk: a report lists every kind of break.
 */
export async function fuzzTarget(
  name: string,
  args: fc.Arbitrary<unknown[]>,
  call: (args: unknown[]) => unknown,
  numRuns: number,
  seed: number,
): Promise<string[]> {
  const failures: string[] = []
  const samples = fc.sample(args, { numRuns, seed })
  const trace = process.env.GRPO_FUZZ_TRACE === '1'
  for (const sample of samples) {
    if (trace) process.stderr.write(`${name}(${describeArgs(sample)})\n`)
    const why = broken(await outcome(() => call(sample)))
    if (why !== null && failures.length < 5 && !failures.some((f) => f.startsWith(why.slice(0, 60)))) failures.push(`${why}   ← ${name}(${describeArgs(sample)})`)
  }
  return failures
}

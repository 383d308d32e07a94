/**
 * The single-process result of every collective of collectives-worker.ts, computed in double precision from
 * every rank's inputs, and the check of each rank's results against it (collectives.test.ts, cuda.test.ts).
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { N, bf16, f32, values } from './inputs.js'

/** The single-process results, from every rank's inputs. */
export function expected(seed: number, size: number) {
  const all = (label: string, n: number) => Array.from({ length: size }, (_, r) => f32(values(seed, r, label, n)))
  const reduce = (xs: Float64Array[], op: (a: number, b: number) => number) => xs.reduce((a, b) => a.map((v, i) => op(v, b[i]!)))
  const sum = (xs: Float64Array[]) => reduce(xs, (a, b) => a + b)
  const gather = Array.from({ length: size }, (_, r) => Array.from(f32(values(seed, r, 'gather', N.gather)))).flat()
  const scatter = sum(all('scatter', size * N.scatter))
  const bf16Scatter = sum(Array.from({ length: size }, (_, r) => bf16(values(seed, r, 'scatter', size * N.scatter))))
  return {
    sum: sum(all('sum', N.sum)),
    max: reduce(all('sum', N.sum), Math.max),
    min: reduce(all('sum', N.sum), Math.min),
    bucket: N.bucket.map((n, k) => sum(all(`bucket${k}`, n))),
    bf16: sum(Array.from({ length: size }, (_, r) => bf16(values(seed, r, 'bf16', N.bf16)))),
    large: sum(all('large', N.large)),
    flight: Array.from({ length: N.flight }, (_, k) => (k % 2 === 0 ? sum : (xs: Float64Array[]) => reduce(xs, Math.max))(all(`flight${k}`, 64))[0]!),
    bcast: f32(values(seed, size - 1, 'bcast', 9)),
    gather,
    scatter: (r: number) => scatter.slice(r * N.scatter, (r + 1) * N.scatter),
    bf16Scatter: (r: number) => bf16(bf16Scatter.slice(r * N.scatter, (r + 1) * N.scatter)),
  }
}

function close(t: Tap.Test, got: readonly number[], want: ArrayLike<number>, tol: (w: number) => number, what: string) {
  let worst = 0
  let at = -1
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!) / tol(want[i]!)
    if (!(d <= worst)) (worst = d), (at = i)
  }
  t.ok(got.length === want.length && worst <= 1, `${what}: ${want.length} values within tolerance${at >= 0 ? ` (worst [${at}] ${got[at]} vs ${want[at]})` : ''}`)
}

/** Checks <dir>/rank-<r>.json of every rank of a world of `size`. */
export async function checkRanks(t: Tap.Test, dir: string, size: number, seed: number): Promise<void> {
  const want = expected(seed, size)
  // f32 sums of `size` terms in any order: a few ulps of the largest partial sum.
  const f32tol = () => 4 * size * 2 ** -23
  // bf16 sums: the exact sum rounded once to bf16 (1 bf16 ulp of slack for the f32 rounding before it).
  const bf16tol = (w: number) => Math.max(Math.abs(w), 2 ** -126) * 2 ** -8 + 2 ** -24
  for (let rank = 0; rank < size; rank++) {
    const r = JSON.parse(await readFile(join(dir, `rank-${rank}.json`), 'utf8'))
    t.match(r, { rank, size, launcher: size === 1 ? 'none' : /mpirun|mpiexec/, initialized: true }, `rank ${rank} of ${size}`)
    close(t, r['allReduce.sum'], want.sum, f32tol, `rank ${rank} allReduce sum`)
    t.same(r['allReduce.max'], Array.from(want.max), `rank ${rank} allReduce max (exact)`)
    t.same(r['allReduce.min'], Array.from(want.min), `rank ${rank} allReduce min (exact)`)
    want.bucket.forEach((b, k) => close(t, r['allReduce.bucket'][k], b, f32tol, `rank ${rank} bucket tensor ${k}`))
    close(t, r['allReduce.bf16'], bf16(want.bf16), bf16tol, `rank ${rank} allReduce bf16`)
    close(t, r['allReduce.large'], [want.large[0]!, want.large[12345]!, want.large[N.large - 1]!], f32tol, `rank ${rank} allReduce of ${N.large} values`)
    close(t, r['allReduce.flight'], want.flight, f32tol, `rank ${rank}: ${N.flight} collectives in flight, each with its own result`)
    t.same(r.broadcast, {
      f32: Array.from(want.bcast),
      i32: [0, 1, 2, 3].map((k) => (size - 1) * 100 + k),
      u8: [0, 1, 2],
    }, `rank ${rank} broadcast from the last rank and from rank 0`)
    t.same(r.allGather.whole, want.gather, `rank ${rank} allGather`)
    t.same(r.allGather.split, want.gather, `rank ${rank} allGather into two tensors`)
    close(t, r.reduceScatter.whole, want.scatter(rank), f32tol, `rank ${rank} reduceScatter`)
    close(t, r.reduceScatter.split, want.scatter(rank), f32tol, `rank ${rank} reduceScatter from three tensors`)
    close(t, r.reduceScatter.bf16, want.bf16Scatter(rank), bf16tol, `rank ${rank} reduceScatter bf16`)
    const ranks = Array.from({ length: size }, (_, k) => k)
    t.same(r.values, {
      sum: [ranks.reduce((a, b) => a + b), -ranks.reduce((a, b) => a + b), 1.5 * size],
      max: [size - 1, 0, 1.5],
      min: [0, -(size - 1), 1.5],
    }, `rank ${rank} allReduceValues`)
    t.same(r.json, ranks.map((k) => ({ rank: k, text: 'x'.repeat(k * 3), nested: [k] })), `rank ${rank} allGatherJSON`)
    const total = (size * (size + 1)) / 2
    t.same(r.sync, { allReduce: [total], allGather: Array(size).fill(total), reduceScatter: [total * size], values: [ranks.reduce((a, b) => a + b)] }, `rank ${rank} the Sync twins`)
  }
}

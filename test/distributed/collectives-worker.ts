/**
 * One rank of the collectives test (collectives.test.ts runs it under mpirun with 2 and 3 ranks): every
 * collective on inputs derived from (seed, rank), results written to <out>/rank-<rank>.json for the test to
 * check against the single-process result it computes from every rank's inputs.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as distributed from '../../lib/distributed.js'
import { Tensor } from '../../lib/tensor.js'
import { N, values } from './inputs.js'

const [seedText, out] = process.argv.slice(2)
const seed = Number(seedText)
// GRPO_TEST_DEVICE=cuda runs the same collectives on cuda tensors (cuda.test.ts: NCCL, or host staging over MPI).
const device = (process.env.GRPO_TEST_DEVICE ?? 'cpu') as 'cpu' | 'cuda'
const world = distributed.init({ timeout: 900 })
const { rank, size } = world
const mine = (label: string, n: number) => Float32Array.from(values(seed, rank, label, n))
const read = async (t: Tensor) => Array.from(await t.toFloat32Array())
const results: Record<string, unknown> = { rank, size, launcher: world.launcher, initialized: world.initialized }

// allReduce: sum, max, min of one f32 tensor
for (const op of ['sum', 'max', 'min'] as const) {
  using t = Tensor.from(mine('sum', N.sum), [N.sum], { device })
  await distributed.allReduce(t, { op })
  results[`allReduce.${op}`] = await read(t)
}
// a bucket of three tensors (one collective) and bf16
{
  const ts = N.bucket.map((n, k) => Tensor.from(mine(`bucket${k}`, n), [n], { device }))
  await distributed.allReduce(ts)
  results['allReduce.bucket'] = await Promise.all(ts.map(read))
  ts.forEach((t) => t.dispose())
  using b = Tensor.from(mine('bf16', N.bf16), [N.bf16], { dtype: 'bf16', device })
  await distributed.allReduce(b)
  results['allReduce.bf16'] = await read(b)
  using big = Tensor.from(mine('large', N.large), [N.large], { device })
  await distributed.allReduce(big)
  const v = await big.toFloat32Array()
  results['allReduce.large'] = [v[0], v[12345], v[N.large - 1]]
}
// several in flight at once: each Promise settles with its own result, in submission order on every rank
{
  const ts = Array.from({ length: N.flight }, (_, k) => Tensor.from(mine(`flight${k}`, 64), [64], { device }))
  await Promise.all(ts.map((t, k) => (k % 2 === 0 ? distributed.allReduce(t) : distributed.allReduce(t, { op: 'max' }))))
  results['allReduce.flight'] = await Promise.all(ts.map(async (t) => (await read(t))[0]))
  ts.forEach((t) => t.dispose())
}
// broadcast from the last rank: several dtypes in one call, and one tensor from rank 0
{
  using f = Tensor.from(mine('bcast', 9), [9], { device })
  using i = Tensor.from(Int32Array.from({ length: 4 }, (_, k) => rank * 100 + k), [4], { device })
  using u = Tensor.from(Uint8Array.from({ length: 3 }, (_, k) => rank * 10 + k), [3], { device })
  await distributed.broadcast([f], { root: size - 1 })
  await distributed.broadcast([i], { root: size - 1 })
  await distributed.broadcast(u)
  results.broadcast = { f32: await read(f), i32: Array.from((await i.toArray()) as Int32Array), u8: Array.from((await u.toArray()) as Uint8Array) }
}
// allGather into one tensor and into two (read as their concatenation)
{
  using input = Tensor.from(mine('gather', N.gather), [N.gather], { device })
  using whole = Tensor.zeros([size * N.gather], { device })
  await distributed.allGather(input, whole)
  const cut = Math.floor((size * N.gather) / 3)
  using a = Tensor.zeros([cut], { device })
  using b = Tensor.zeros([size * N.gather - cut], { device })
  await distributed.allGather(input, [a, b])
  results.allGather = { whole: await read(whole), split: [...(await read(a)), ...(await read(b))] }
}
// reduceScatter from one tensor and from three (read as their concatenation), f32 and bf16
{
  using input = Tensor.from(mine('scatter', size * N.scatter), [size * N.scatter], { device })
  using output = Tensor.zeros([N.scatter], { device })
  await distributed.reduceScatter(input, output)
  const all = mine('scatter', size * N.scatter)
  const parts = [all.slice(0, 2), all.slice(2, 3 + size), all.slice(3 + size)].map((p) => Tensor.from(p, [p.length], { device }))
  using split = Tensor.zeros([N.scatter], { device })
  await distributed.reduceScatter(parts, split)
  parts.forEach((p) => p.dispose())
  using bIn = Tensor.from(mine('scatter', size * N.scatter), [size * N.scatter], { dtype: 'bf16', device })
  using bOut = Tensor.zeros([N.scatter], { dtype: 'bf16', device })
  await distributed.reduceScatter(bIn, bOut)
  results.reduceScatter = { whole: await read(output), split: await read(split), bf16: await read(bOut) }
}
// numbers and JSON
results.values = {
  sum: Array.from(await distributed.allReduceValues([rank, -rank, 1.5])),
  max: Array.from(await distributed.allReduceValues([rank, -rank, 1.5], { op: 'max' })),
  min: Array.from(await distributed.allReduceValues(new Float64Array([rank, -rank, 1.5]), { op: 'min' })),
}
results.json = await distributed.allGatherJSON({ rank, text: 'x'.repeat(rank * 3), nested: [rank] })
// the synchronous twins
{
  using t = Tensor.from([rank + 1], [1], { device })
  distributed.allReduceSync(t)
  distributed.broadcastSync(t, { root: 0 })
  using g = Tensor.zeros([size], { device })
  distributed.allGatherSync(t, g)
  using s = Tensor.zeros([1], { device })
  distributed.reduceScatterSync(g, s)
  distributed.barrierSync()
  results.sync = { allReduce: await read(t), allGather: await read(g), reduceScatter: await read(s), values: Array.from(distributed.allReduceValuesSync([rank])) }
}
await distributed.barrier()
results.collectives = distributed.info().collectives
writeFileSync(join(out!, `rank-${rank}.json`), JSON.stringify(results))

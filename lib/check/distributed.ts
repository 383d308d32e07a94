/**
 * Step "distributed" of the GPU check: the data-parallel layer's CUDA path on the one GPU of the device machine.
 *
 * A process started alone is a world of one, and on cuda tensors its collectives still go through NCCL (a
 * communicator of one rank made from its own unique id, no MPI needed): all-reduce (sum, max, min; a bucket of
 * several tensors as one grouped call), broadcast, all-gather and reduce-scatter (into and from one tensor, and
 * through the device staging buffer when several tensors are read or written as their concatenation), f32 and
 * bf16, the Promise forms and their Sync twins. With one rank every result is known exactly: the in-place
 * collectives leave their tensors as they were, the others copy their input into outputs filled with a sentinel
 * beforehand (so a collective that did nothing fails). Then the path's own checks: the binding's refusals (mixed
 * devices or dtypes, a wrong output size, an unknown op) leave the world working, NCCL is the transport, and the
 * count of collectives adds up. Last, the Trainer's data-parallel step on the device (ZeRO-0 and ZeRO-1: the
 * gradient buckets, reduce-scatter and all-gather of the sharded AdamW) against the plain Trainer: a world of one
 * must train exactly as one process does.
 *
 * It runs in a child process (`--child distributed`), since NCCL is loaded once per process and a fault in it
 * must not end the run; the runner finds libnccl.so.2 (PyTorch's nvidia-nccl wheel on the device machine) and
 * passes it as GRPO_NCCL_LIBRARY. Without NCCL the cuda cases are skipped with the loader's reason. The dry run
 * runs the same cases on host tensors (the SIMT executor): the collectives' host path and the Trainer's.
 */
import * as distributed from '../distributed.js'
import type { Device } from '../dtype.js'
import { GrpoError } from '../errors.js'
import { LogLinearPolicy } from '../log-linear-policy.js'
import { Tensor } from '../tensor.js'
import { Trainer, type TrainerPrompt } from '../trainer.js'
import { Rng } from './inputs.js'

export interface DistributedCase {
  name: string
  status: 'passed' | 'failed' | 'error' | 'skipped'
  seconds: number
  error?: string
  reason?: string
}

export interface DistributedReport {
  target: 'cuda' | 'simt'
  device: Device
  seed: number
  /** distributed.info() after init: transport, NCCL version or the reason it is absent, MPI */
  world?: Record<string, unknown>
  /** the NCCL library asked for (GRPO_NCCL_LIBRARY), if any */
  ncclLibrary?: string
  cases: DistributedCase[]
  passed: number
  failed: number
  errors: number
  skipped: number
}

/** A failed expectation inside a case (the case is 'failed'; any other exception makes it 'error'). */
class Mismatch extends Error {}

function expect(ok: boolean, what: string): void {
  if (!ok) throw new Mismatch(what)
}

/** The first index where two arrays differ bit for bit (as f32), or -1. */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length)
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i
  return -1
}

function expectEqual(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  const i = firstDifference(got, want)
  if (i >= 0) {
    throw new Mismatch(
      got.length !== want.length
        ? `${what}: expected ${want.length} values but received ${got.length}`
        : `${what}: expected ${want[i]} at index ${i} (of ${want.length}) but received ${got[i]}`,
    )
  }
}

async function expectRefusal(run: () => unknown, code: string, what: string): Promise<void> {
  try {
    await run()
  } catch (e) {
    expect(e instanceof GrpoError && e.code === code, `${what}: expected a GrpoError ${code} but received ${(e as Error).message}`)
    return
  }
  throw new Mismatch(`${what}: expected a GrpoError ${code} but the call succeeded`)
}

export interface DistributedOptions {
  target: 'cuda' | 'simt'
  seed: number
  deadline: number
  log: (line: string) => void
  /** called after every case with the report so far (the child writes it, so a crash keeps what was done) */
  onProgress?: (r: DistributedReport) => void
}

function tally(r: DistributedReport): void {
  r.passed = r.cases.filter((c) => c.status === 'passed').length
  r.failed = r.cases.filter((c) => c.status === 'failed').length
  r.errors = r.cases.filter((c) => c.status === 'error').length
  r.skipped = r.cases.filter((c) => c.status === 'skipped').length
}

/** Runs the step's cases in this process (on host tensors under whatever host backend is selected, or cuda). */
export async function runDistributedCheck(o: DistributedOptions): Promise<DistributedReport> {
  const device: Device = o.target === 'cuda' ? 'cuda' : 'cpu'
  const report: DistributedReport = { target: o.target, device, seed: o.seed, ncclLibrary: process.env.GRPO_NCCL_LIBRARY || undefined, cases: [], passed: 0, failed: 0, errors: 0, skipped: 0 }
  const rng = new Rng(o.seed)
  // The dry run's sizes are small (its inputs are made and compared in JavaScript on a loaded 2-core machine); on
  // the device they are large enough for NCCL's chunked, multi-channel path.
  const dry = o.target === 'simt'
  const big = dry ? 10_007 : 1_000_003
  const made: Tensor[] = []
  const keep = (t: Tensor) => (made.push(t), t)
  const values = (n: number, scale = 4) => Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * scale)
  const from = (v: Float32Array | Int32Array | Uint8Array, dtype: 'f32' | 'bf16' | 'i32' | 'u8') => keep(Tensor.from(v, [v.length], { dtype, device }))
  const filled = (n: number, dtype: 'f32' | 'bf16', value = -1234.5) => from(new Float32Array(n).fill(value), dtype)
  const read = async (t: Tensor) => Array.from(t.dtype === 'i32' || t.dtype === 'u8' ? ((await t.toArray()) as ArrayLike<number>) : await t.toFloat32Array())

  let skipAll: string | undefined
  let collectivesBefore = 0
  let submitted = 0
  const run = async (name: string, body: () => Promise<void>, needs?: () => string | undefined) => {
    const t0 = performance.now()
    const c: DistributedCase = { name, status: 'passed', seconds: 0 }
    const why = skipAll ?? needs?.() ?? (Date.now() > o.deadline ? 'time budget' : undefined)
    if (why) {
      c.status = 'skipped'
      c.reason = why
    } else {
      try {
        await body()
      } catch (e) {
        c.status = e instanceof Mismatch ? 'failed' : 'error'
        c.error = e instanceof GrpoError ? `${e.code}: ${e.message}` : (e as Error).message
      } finally {
        for (const t of made.splice(0)) t.dispose()
      }
    }
    c.seconds = (performance.now() - t0) / 1000
    report.cases.push(c)
    tally(report)
    // A skip for the reason already printed (NCCL absent) is one short line.
    const why2 = c.reason && c.reason !== skipAll ? `: ${c.reason}` : ''
    o.log(`  ${c.status === 'passed' ? 'ok  ' : c.status === 'skipped' ? 'skip' : c.status.toUpperCase().padEnd(4)} ${name} (${c.seconds.toFixed(2)} s)${c.error ? `: ${c.error}` : why2}`)
    o.onProgress?.(report)
  }

  await run('distributed.init: a world of one', async () => {
    const w = distributed.init({ timeout: 120 })
    report.world = { ...distributed.info() }
    o.log(`  world: rank ${w.rank} of ${w.size}, launcher ${w.launcher}, cuda transport ${w.cudaTransport}, NCCL ${w.nccl.available ? w.nccl.version : `absent: ${w.nccl.reason}`}, MPI ${w.mpi.available ? `${w.mpi.library} ${w.mpi.version}` : `absent: ${w.mpi.reason}`}`)
    expect(w.initialized && w.size === 1 && w.rank === 0, `expected an initialized world of one but received rank ${w.rank} of ${w.size} (initialized ${w.initialized})`)
    if (device === 'cuda') {
      // Without NCCL, cuda tensors would go through host memory: that is not what this step is for.
      if (!w.nccl.available) {
        skipAll = `NCCL is not available: ${w.nccl.reason}`
        o.log(`  the cuda cases are skipped: ${skipAll}`)
      }
      else expect(w.cudaTransport === 'nccl', `expected cuda tensors to travel over NCCL but the transport is ${w.cudaTransport}`)
    }
    collectivesBefore = w.collectives
  })
  const init = report.cases[0]!.status
  if ((init === 'failed' || init === 'error') && !skipAll) skipAll = 'distributed.init failed'

  for (const dtype of ['f32', 'bf16'] as const) {
    await run(`allReduce ${dtype}: sum, max and min of ${big} values leave a world of one's tensor as it was`, async () => {
      for (const op of ['sum', 'max', 'min'] as const) {
        const t = from(values(big), dtype)
        const before = await read(t)
        await distributed.allReduce(t, { op })
        submitted++
        expectEqual(await read(t), before, `allReduce ${op}`)
      }
    })
    await run(`allReduce ${dtype}: a bucket of three tensors in one grouped call, and several in flight at once`, async () => {
      const bucket = [7, 4096, dry ? 3001 : 300_001].map((n) => from(values(n), dtype))
      const before = await Promise.all(bucket.map(read))
      await distributed.allReduce(bucket)
      submitted++
      for (let k = 0; k < bucket.length; k++) expectEqual(await read(bucket[k]!), before[k]!, `bucket tensor ${k}`)
      const flight = Array.from({ length: 6 }, () => from(values(4099), dtype))
      const was = await Promise.all(flight.map(read))
      await Promise.all(flight.map((t, k) => distributed.allReduce(t, { op: k % 2 ? 'max' : 'sum' })))
      submitted += flight.length
      for (let k = 0; k < flight.length; k++) expectEqual(await read(flight[k]!), was[k]!, `in-flight tensor ${k}`)
    })
    await run(`allGather ${dtype}: into a sentinel-filled tensor, and into two read as their concatenation (staging)`, async () => {
      const n = dry ? 8192 : 1 << 20
      const input = from(values(n), dtype)
      const want = await read(input)
      const whole = filled(n, dtype)
      await distributed.allGather(input, whole)
      submitted++
      expectEqual(await read(whole), want, 'allGather into one tensor')
      const cut = Math.floor(n / 3) + 1
      const a = filled(cut, dtype), b = filled(n - cut, dtype)
      await distributed.allGather(input, [a, b])
      submitted++
      expectEqual([...(await read(a)), ...(await read(b))], want, 'allGather into two tensors')
    })
    await run(`reduceScatter ${dtype}: from one tensor, and from three read as their concatenation (staging)`, async () => {
      const n = dry ? 7777 : 777_777
      const input = from(values(n), dtype)
      const want = await read(input)
      const out = filled(n, dtype)
      await distributed.reduceScatter(input, out)
      submitted++
      expectEqual(await read(out), want, 'reduceScatter from one tensor')
      const parts = [2, Math.floor(n / 7), n - 2 - Math.floor(n / 7)].map((m) => from(values(m), dtype))
      const concat = (await Promise.all(parts.map(read))).flat()
      const split = filled(n, dtype)
      await distributed.reduceScatter(parts, split, { op: 'max' })
      submitted++
      expectEqual(await read(split), concat, 'reduceScatter from three tensors')
    })
  }

  await run('broadcast: f32, bf16, i32 and u8 from rank 0, in place', async () => {
    const f = from(values(10_001), 'f32'), b = from(values(513), 'bf16')
    const i = from(Int32Array.from({ length: 4097 }, (_, k) => k * 7919 - 100_000), 'i32')
    const u = from(Uint8Array.from({ length: 255 }, (_, k) => k), 'u8')
    const before = await Promise.all([f, b, i, u].map(read))
    await distributed.broadcast([f])
    await distributed.broadcast(b, { root: 0 })
    await distributed.broadcast(i)
    await distributed.broadcast([u])
    submitted += 4
    const after = await Promise.all([f, b, i, u].map(read))
    after.forEach((x, k) => expectEqual(x, before[k]!, `broadcast of tensor ${k}`))
  })

  await run('the Sync twins: allReduceSync, broadcastSync, allGatherSync, reduceScatterSync, barrierSync', async () => {
    const t = from(Float32Array.of(3.5, -2, 1e-3), 'f32')
    distributed.allReduceSync(t)
    distributed.broadcastSync(t)
    const g = filled(3, 'f32')
    distributed.allGatherSync(t, g)
    const s = filled(3, 'bf16')
    const tb = from(Float32Array.of(3.5, -2, 0.25), 'bf16')
    distributed.reduceScatterSync(tb, s)
    distributed.barrierSync()
    submitted += 5
    expectEqual(await read(t), [3.5, -2, Math.fround(1e-3)], 'allReduceSync and broadcastSync')
    expectEqual(await read(g), [3.5, -2, Math.fround(1e-3)], 'allGatherSync')
    expectEqual(await read(s), [3.5, -2, 0.25], 'reduceScatterSync')
  })

  await run(`a large bucket: allGather of ${dry ? 1 : 64} MiB of f32 into a sentinel-filled tensor`, async () => {
    const n = dry ? 1 << 18 : 16 << 20
    const input = keep(Tensor.from(Float32Array.from({ length: n }, (_, k) => (k % 65521) - 32760), [n], { device }))
    const out = filled(n, 'f32')
    const t0 = performance.now()
    await distributed.allGather(input, out)
    submitted++
    const ms = performance.now() - t0
    const got = await out.toFloat32Array()
    let wrong = -1
    for (let k = 0; k < n && wrong < 0; k++) if (got[k] !== (k % 65521) - 32760) wrong = k
    expect(wrong < 0, `allGather of ${n} values: expected ${(wrong % 65521) - 32760} at ${wrong} but received ${got[wrong]}`)
    o.log(`    ${(n * 4) / 2 ** 20} MiB allGather (a copy in a world of one): ${ms.toFixed(2)} ms host time`)
  })

  await run("the binding's refusals leave the world working", async () => {
    const a = from(values(8), 'f32')
    const h = keep(Tensor.from(values(8), [8], { device: 'cpu' }))
    const b16 = from(values(8), 'bf16')
    const i32 = from(Int32Array.of(1, 2, 3), 'i32')
    if (device === 'cuda') await expectRefusal(() => distributed.allReduce([a, h]), 'ERR_GRPO_INVALID_ARG', 'a bucket of a cuda and a cpu tensor')
    await expectRefusal(() => distributed.allReduce([a, b16]), 'ERR_GRPO_DTYPE', 'a bucket of f32 and bf16')
    await expectRefusal(() => distributed.allReduce(i32), 'ERR_GRPO_DTYPE', 'an i32 all-reduce')
    await expectRefusal(() => distributed.allGather(a, filled(9, 'f32')), 'ERR_GRPO_SHAPE', 'an all-gather output of the wrong size')
    await expectRefusal(() => distributed.allReduce(a, { op: 'prod' as 'sum' }), 'ERR_GRPO_INVALID_ARG', 'an unknown reduce op')
    await expectRefusal(() => distributed.broadcast(a, { root: 1 }), 'ERR_GRPO_INVALID_ARG', 'a root outside the world')
    const before = await read(a)
    await distributed.allReduce(a)
    submitted++
    expectEqual(await read(a), before, 'an all-reduce after the refusals')
    const w = distributed.info()
    expect(!w.broken, `expected a working world but it is broken: ${w.brokenReason}`)
    expect(w.collectives - collectivesBefore === submitted, `expected ${submitted} collectives submitted by this step but the world counted ${w.collectives - collectivesBefore}`)
  })

  await run(`the Trainer's data-parallel step on ${o.target} (ZeRO-0 and ZeRO-1) equals the plain Trainer's`, async () => {
    const prompts: TrainerPrompt[] = Array.from({ length: 6 }, (_, i) => ({ tokens: [1 + i, 2 + (i % 4)] }))
    const reward = (_text: string, prompt: TrainerPrompt, tokens: Int32Array) => {
      let last = (prompt.tokens as number[]).at(-1)!
      let good = 0
      for (const tok of tokens) if (tok === last + 1 || tok === 0) (good++, (last = tok))
      return good / tokens.length
    }
    const make = (dist: false | { zero: 0 | 1; bucketMB: number }) =>
      new Trainer({
        policy: new LogLinearPolicy({ vocabSize: 10, hashSize: 101, device }),
        decode: (tokens) => Array.from(tokens).join(' '),
        reward,
        stop: [0],
        maxNewTokens: 5,
        groupSize: 3,
        beta: 0.02,
        scale: 'batch',
        optimizer: { lr: 0.05, eps: 1e-3 },
        seed: o.seed % 1_000_000,
        distributed: dist,
      })
    const params = async (tr: Trainer) => (await Promise.all(tr.policy.parameters().map((p) => p.value.toFloat32Array()))).flatMap((x) => Array.from(x))
    const trainers = [make(false), make({ zero: 0, bucketMB: 0.001 }), make({ zero: 1, bucketMB: 25 })]
    try {
      const runs = []
      for (const tr of trainers) runs.push(await tr.train(prompts, { steps: 2, batchSize: 4 }))
      const [plain, ...dp] = runs
      const base = await params(trainers[0]!)
      for (let k = 0; k < dp.length; k++) {
        const label = `ZeRO-${k}`
        expect(trainers[k + 1]!.dataParallel?.size === 1, `${label}: expected a data-parallel world of one`)
        plain!.steps.forEach((m, i) => {
          const n = dp[k]!.steps[i]!
          expect(n.rewardMean === m.rewardMean, `${label} step ${i + 1}: expected the reward mean ${m.rewardMean} but received ${n.rewardMean}`)
          expect(Math.abs(n.loss - m.loss) <= 1e-6 * Math.max(1, Math.abs(m.loss)), `${label} step ${i + 1}: expected the loss ${m.loss} but received ${n.loss}`)
          expect(Math.abs(n.gradNorm - m.gradNorm) <= 1e-5 * Math.max(1e-3, m.gradNorm), `${label} step ${i + 1}: expected the gradient norm ${m.gradNorm} but received ${n.gradNorm}`)
        })
        const p = await params(trainers[k + 1]!)
        const worst = p.reduce((w, v, i) => Math.max(w, Math.abs(v - base[i]!)), p.length === base.length ? 0 : Infinity)
        expect(worst <= 1e-6, `${label}: expected the plain Trainer's parameters but the largest difference is ${worst}`)
      }
      o.log(`    2 steps, losses ${plain!.steps.map((s) => s.loss.toFixed(5)).join(', ')}, equal on ZeRO-0 (bucket of 1 KiB: one collective per parameter) and ZeRO-1`)
    } finally {
      for (const tr of trainers) (tr.policy.dispose(), tr.dispose())
    }
  })
  tally(report)
  return report
}

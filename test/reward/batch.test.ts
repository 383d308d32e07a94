import t, { type Test } from 'tap'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { LosslessNumber, isLosslessNumber, stringify } from 'lossless-json'
import { closeScoringPool, scoreBatch, scoreToolCall, type BatchItem, type ScoreResult } from '../../lib/reward/index.js'
import { ScoringPool, sharedPool } from '../../lib/reward/pool.js'
// @ts-expect-error: a plain .mjs helper shared with the benchmark
import { makeItems } from '../../bench/reward-data.mjs'
import { stallProbe } from '../helpers/stall.js'

t.teardown(() => closeScoringPool())

const summary = (r: ScoreResult) => [r.score, r.reason, r.calls === null ? null : stringify(r.calls)]

function expectSameAsSingle(t: Test, items: BatchItem[], results: ScoreResult[], options = {}) {
  t.equal(results.length, items.length)
  let mismatches = 0
  for (let i = 0; i < items.length; i++) {
    const single = scoreToolCall(items[i]!.completion, items[i]!.groundTruth, options)
    if (JSON.stringify(summary(single)) !== JSON.stringify(summary(results[i]!))) mismatches++
  }
  t.equal(mismatches, 0, 'every result equals the single form')
}

t.test('the generated completions are realistic: 300 to 1,000 characters, a mix of outcomes', async (t) => {
  const items: BatchItem[] = makeItems(200, 5, 7)
  const lengths = items.map((item) => item.completion.length)
  const inRange = lengths.filter((n) => n >= 300 && n <= 1100).length
  t.ok(inRange / lengths.length > 0.9, `${inRange} of ${lengths.length} in range`)
  const reasons = new Set(items.map((item) => scoreToolCall(item.completion, item.groundTruth).reason))
  t.ok(reasons.size >= 5, [...reasons].join(' '))
})

t.test('small batches score inline with the same results', async (t) => {
  const items: BatchItem[] = makeItems(20, 5, 3)
  expectSameAsSingle(t, items, await scoreBatch(items))
  expectSameAsSingle(t, items, await scoreBatch(items, { variant: 'partial-name', thinkOrder: 'strict' }), {
    variant: 'partial-name',
    thinkOrder: 'strict',
  })
  t.same(await scoreBatch([]), [])
})

t.test('large batches run on workers with the same results, numbers kept exact', async (t) => {
  const items: BatchItem[] = makeItems(120, 5, 11)
  items.push({
    completion: '<think>a</think><tool_call>[{"name": "f", "arguments": {"x": 5.0, "big": 12345678901234567890, "o": {"value": "1", "isLosslessNumber": true}}}]</tool_call>',
    groundTruth: [{ name: 'f', arguments: { x: new LosslessNumber('5.0'), big: 12345678901234567890n, o: { value: '1', isLosslessNumber: true } } }],
  })
  const results = await scoreBatch(items, { variant: 'partial' })
  expectSameAsSingle(t, items, results, { variant: 'partial' })
  const last = results.at(-1)!
  t.equal(last.score, 1)
  const args = last.calls![0]!.arguments as Record<string, unknown>
  t.ok(isLosslessNumber(args.x) && isLosslessNumber(args.big))
  t.equal(String(args.x), '5.0')
  t.notOk(isLosslessNumber(args.o), 'an object that looks like a LosslessNumber stays an object')
  t.ok(sharedPool().workerCount >= 1)
})

t.test('a malformed ground truth rejects with the lowest malformed index, inline and on workers', async (t) => {
  for (const size of [100, 700]) {
    const items: BatchItem[] = makeItems(size / 5, 5, 5)
    items[size - 10] = { completion: 'x', groundTruth: 'not json' }
    items[size - 50] = { completion: 'x', groundTruth: [{ name: 'f', arguments: { x: NaN } }] }
    items[size - 30] = { completion: 'x', groundTruth: '[{"name": "f"}]' }
    await t.rejects(scoreBatch(items), { code: 'ERR_GRPO_INVALID_ARG', message: new RegExp(`items\\[${size - 50}\\]\\.groundTruth`) })
    items[size - 50] = items[0]!
    await t.rejects(scoreBatch(items), { code: 'ERR_GRPO_INVALID_ARG', message: new RegExp(`items\\[${size - 30}\\]\\.groundTruth`) })
  }
})

t.test('bad arguments are rejected', async (t) => {
  await t.rejects(scoreBatch('x' as never), { code: 'ERR_GRPO_INVALID_ARG', message: /for items/ })
  await t.rejects(scoreBatch([null] as never), { code: 'ERR_GRPO_INVALID_ARG', message: /items\[0\]/ })
  await t.rejects(scoreBatch([{ completion: 1, groundTruth: '[]' }] as never), { message: /items\[0\]\.completion/ })
  await t.rejects(scoreBatch([], { workers: -1 }), { message: /options\.workers/ })
  await t.rejects(scoreBatch([], { workers: 1.5 }), { message: /options\.workers/ })
  await t.rejects(scoreBatch([], { variant: 'x' as never }), { message: /options\.variant/ })
})

t.test('workers: 0 scores a large batch inline, in slices', async (t) => {
  const items: BatchItem[] = makeItems(60, 5, 13)
  expectSameAsSingle(t, items, await scoreBatch(items, { workers: 0 }))
})

t.test('5,120 completions never block the event loop for more than 20 ms', async (t) => {
  const items: BatchItem[] = makeItems(1024, 5, 17)
  // Warm up: workers start (TypeScript compilation under the test loader), the code is optimized, and the
  // freshly built items move to the old generation (copying them is the caller's GC cost, not the scorer's).
  await scoreBatch(items)
  await scoreBatch(items)
  // The longest time the main thread held the event loop while a batch was scored: the most main-thread on-CPU
  // time between two 1 ms ticks (test/helpers/stall.ts). A wall-clock gap would also count the time the OS gave
  // the core to another process: under CI's load (two test files and their native threads on 2 cores) that
  // alone reached 63 ms, with no stall in this code. On-CPU time leaves that out and still sees what the test is
  // about: scoring (or parsing the workers' replies) in pieces longer than 20 ms. The count is read at the
  // kernel's scheduler tick (<= 4 ms late), well inside the bound: a healthy run holds the loop for a few ms.
  // A garbage collection in the middle of a run is on-CPU too; blocking shows in every run, so the best of up
  // to five runs is the one judged. Where the kernel gives no per-thread CPU time, the wall gap and the event
  // loop delay are judged instead.
  const attempts: number[] = []
  let results: ScoreResult[] = []
  for (let attempt = 0; attempt < 5; attempt++) {
    const histogram = monitorEventLoopDelay({ resolution: 1 })
    const probe = stallProbe()
    histogram.enable()
    const started = performance.now()
    results = await scoreBatch(items)
    const elapsed = performance.now() - started
    const stall = probe.stop()
    histogram.disable()
    const loopDelayMs = histogram.max / 1e6
    t.comment(
      `scored ${items.length} in ${elapsed.toFixed(1)} ms; longest tick gap ${stall.wallMs.toFixed(1)} ms wall, ` +
        `${stall.cpuMs === null ? 'n/a' : stall.cpuMs.toFixed(1)} ms on-CPU; max loop delay ${loopDelayMs.toFixed(1)} ms`,
    )
    attempts.push(stall.cpuMs ?? Math.max(stall.wallMs, loopDelayMs))
    if (attempts.at(-1)! < 20) break
  }
  t.equal(results.length, 5120)
  t.ok(Math.min(...attempts) < 20, `longest hold of the event loop in the best run: ${Math.min(...attempts).toFixed(1)} ms`)
  expectSameAsSingle(t, items.slice(0, 1000), results.slice(0, 1000))
})

t.test('a worker that dies mid-batch: its chunks are scored inline, the batch completes', async (t) => {
  const items: BatchItem[] = makeItems(200, 5, 19)
  const pool = sharedPool()
  const run = scoreBatch(items)
  // Kill a worker while chunks are in flight.
  const slots = (pool as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> }).slots
  await new Promise((resolve) => setImmediate(resolve))
  t.ok(slots.length > 0)
  await slots[0]!.worker.terminate()
  expectSameAsSingle(t, items, await run)
})

t.test('a pool whose workers cannot start hands chunks back', async (t) => {
  const pool = new ScoringPool(1)
  // Point the pool at a script that does not exist: every worker dies before answering.
  const proto = pool as unknown as { spawn(): unknown }
  const spawn = proto.spawn.bind(pool)
  const { Worker } = await import('node:worker_threads')
  proto.spawn = () => {
    const slot = spawn() as { worker: InstanceType<typeof Worker> } | null
    if (slot) {
      void slot.worker.terminate()
    }
    return slot
  }
  const request = () => ({ id: 0, base: 0, options: { variant: 'binary' as const, thinkOrder: 'presence' as const }, completions: [], truths: [] })
  await t.rejects(pool.run(request), { name: 'WorkerUnavailable', message: /exited/ })
  await t.rejects(pool.run(request), { name: 'WorkerUnavailable', message: /exited/ })
  await t.rejects(pool.run(request), { message: /cannot start/ })
  await pool.close()
  await t.rejects(pool.run(request), { message: /closed/ })
  // A chunk whose request cannot be built is rejected with that error.
  const other = new ScoringPool(1)
  await t.rejects(
    other.run(() => {
      throw new Error('bad chunk')
    }),
    { message: 'bad chunk' },
  )
  await other.close()
})

t.test('closeScoringPool stops the workers; the next batch starts new ones', async (t) => {
  const items: BatchItem[] = makeItems(60, 5, 23)
  await scoreBatch(items)
  await closeScoringPool()
  await closeScoringPool()
  expectSameAsSingle(t, items, await scoreBatch(items, { workers: 2 }))
})

t.test('a worker reporting an internal failure falls back to inline scoring', async (t) => {
  // A request the worker cannot process (no completions array) makes it answer `failed`.
  const pool = sharedPool()
  const reply = await pool.run(() => ({ id: 0, base: 0, options: { variant: 'binary', thinkOrder: 'presence' }, completions: null as never, truths: [] }))
  t.ok('failed' in reply)
})

t.test('the wire format: compact results whose calls are parsed on first read', async (t) => {
  const { encodeResults, decodeResult } = await import('../../lib/reward/wire.js')
  const singles = [
    scoreToolCall('<think>a</think><tool_call>[{"name": "f", "arguments": {"x": 5.0, "__proto__": [1]}}]</tool_call>', '[]'),
    scoreToolCall('nothing', '[]'),
  ]
  const wire = encodeResults(singles)
  t.same(Array.from(wire.scores), [0, 0])
  t.same(wire.calls, ['[{"name":"f","arguments":{"x":5.0,"__proto__":[1]}}]', null])
  const decoded = [decodeResult(wire, 0), decodeResult(wire, 1)]
  t.same(decoded.map(summary), singles.map(summary))
  t.equal(stringify(decoded[0]), stringify(singles[0]), 'calls is an own enumerable property')
  t.equal(stringify(decoded[0]), '{"score":0,"reason":"name-mismatch","calls":[{"name":"f","arguments":{"x":5.0,"__proto__":[1]}}]}')
  t.equal(decoded[0]!.calls, decoded[0]!.calls, 'parsed once')
  t.same({ ...decoded[1] }, { score: 0, reason: 'no-call', calls: null })
  decoded[1]!.calls = []
  t.same(decoded[1]!.calls, [])
})

t.test('a completion nested 5,000 levels deep scores the same alone, inline and on workers (issue 18 item 5)', async (t) => {
  // The parsers recursed without a limit and a worker's stack is not the main thread's: such a completion parsed
  // on one and overflowed on the other, so its score depended on the batch it came in.
  const GT = '[{"name": "f", "arguments": {"a": 1}}]'
  const deep = (depth: number) => `<think>x</think><tool_call>[{"name": "f", "arguments": ${'{"a": '.repeat(depth)}1${'}'.repeat(depth)}}]</tool_call>`
  const depths = [5000, 2000, 600, 511, 510, 509, 100]
  const filler: BatchItem[] = makeItems(300, 5, 29)
  const items: BatchItem[] = [...depths.map((d) => ({ completion: deep(d), groundTruth: GT })), ...filler]
  const alone = items.map((item) => scoreToolCall(item.completion, item.groundTruth))
  const inline = await scoreBatch(items, { workers: 0 })
  const pooled = await scoreBatch(items, { workers: 2 })
  for (let i = 0; i < depths.length; i++) {
    t.same(summary(inline[i]!), summary(alone[i]!), `depth ${depths[i]} inline`)
    t.same(summary(pooled[i]!), summary(alone[i]!), `depth ${depths[i]} on a worker`)
  }
  t.equal(alone[0]!.reason, 'bad-json', 'past the depth limit: not JSON, everywhere')
  t.equal(alone[depths.length - 1]!.reason, 'args-mismatch')
  expectSameAsSingle(t, items, pooled)
})

t.test('a few long items go to the workers even in a small batch; chunks are cut by size', async (t) => {
  // 4 items of 200 KB each: fewer than INLINE_LIMIT, but scoring them inline would hold the event loop.
  const GT = '[{"name": "f", "arguments": {"a": 1}}]'
  const long = '<think>' + 'x'.repeat(200_000) + '</think><tool_call>[{"name": "f", "arguments": {"a": 1}}]</tool_call>'
  const items: BatchItem[] = Array.from({ length: 4 }, () => ({ completion: long, groundTruth: GT }))
  const pool = sharedPool()
  const before = pool.workerCount
  const results = await scoreBatch(items)
  t.ok(pool.workerCount > before || pool.workerCount > 0, 'scored by the pool')
  t.same(results.map((r) => r.score), [1, 1, 1, 1])
})

t.test('an abort signal stops a batch: ERR_GRPO_ABORTED, inline and on workers', async (t) => {
  const items: BatchItem[] = makeItems(2000, 5, 31)
  await t.rejects(scoreBatch(items, { signal: AbortSignal.abort(new Error('stop')) }), { code: 'ERR_GRPO_ABORTED', message: /aborted: stop/ })
  for (const workers of [0, 2]) {
    const controller = new AbortController()
    const run = scoreBatch(items, { workers, signal: controller.signal })
    setTimeout(() => controller.abort(), 5)
    await t.rejects(run, { name: 'GrpoError', code: 'ERR_GRPO_ABORTED' }, `workers: ${workers}`)
  }
  await t.rejects(scoreBatch(items, { signal: 'soon' as never }), { code: 'ERR_GRPO_INVALID_ARG', message: /options\.signal/ })
  // The pool is usable after an aborted batch.
  expectSameAsSingle(t, items.slice(0, 400), await scoreBatch(items.slice(0, 400)))
})

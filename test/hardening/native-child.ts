/**
 * Child process of native.test.ts: one scenario per run, named by argv[2], printing one JSON line of results.
 * Scenarios that could take the process down run here, so a failure is a failed test, not a dead suite.
 */
import { readFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { GrpoError, Tensor, memoryInfo, modelOps, ops } from '../../lib/index.js'

const scenario = process.argv[2]
const out = (value: unknown) => process.stdout.write(JSON.stringify(value) + '\n')

/** Peak resident memory of this process so far, in bytes (Linux VmHWM). */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss
}

/**
 * What a call did and how long it took: `ms` of wall time and `cpuMs` of CPU time over all of this process's
 * threads (the native pool's too). A loop over 2^31 rows costs seconds of CPU whatever the load; wall time
 * also counts the time other processes had the cores, so tests judge `cpuMs`.
 */
async function outcome(call: () => unknown): Promise<{ ok: boolean; code?: string; message?: string; ms: number; cpuMs: number }> {
  const start = performance.now()
  const cpu = process.cpuUsage()
  const cpuMs = () => {
    const d = process.cpuUsage(cpu)
    return (d.user + d.system) / 1000
  }
  try {
    const value = await call()
    if (value && typeof value === 'object') for (const v of Object.values(value)) if (v instanceof Tensor) v.dispose()
    if (value instanceof Tensor) value.dispose()
    return { ok: true, ms: performance.now() - start, cpuMs: cpuMs() }
  } catch (error) {
    const e = error as GrpoError
    return { ok: false, code: e instanceof GrpoError ? e.code : `not a GrpoError: ${e?.constructor?.name}`, message: e?.message, ms: performance.now() - start, cpuMs: cpuMs() }
  }
}

switch (scenario) {
  case 'worker-exit':
  case 'worker-terminate': {
    const mode = scenario === 'worker-exit' ? 'exit' : 'terminate'
    for (let i = 0; i < Number(process.argv[3] ?? 5); i++) {
      const worker = new Worker(new URL('./worker-exit-worker.ts', import.meta.url), { workerData: { mode } })
      const exited = new Promise((resolve) => worker.on('exit', resolve))
      worker.on('error', () => {})
      await new Promise((resolve) => worker.once('message', resolve))
      if (mode === 'terminate') await worker.terminate()
      await exited
    }
    // The main thread's own ops still work after the workers' environments went away.
    using x = Tensor.from([1, 2, 3], [1, 1, 3])
    using y = Tensor.from(Int32Array.of(2), [1, 1])
    const { logp, lse } = await ops.tokenLogprobs(x, y)
    logp.dispose()
    lse.dispose()
    out({ survived: true })
    break
  }
  case 'empty-rows': {
    // Zero-size inputs with huge leading shapes: no per-row scratch, no loop over the rows.
    const before = peakRss()
    const results: Record<string, unknown> = {}
    for (const rows of [2 ** 26, 2 ** 31]) {
      using logp = Tensor.zeros([rows, 0])
      using adv = Tensor.zeros([rows, 0]) // per-token advantages: [B] would be a real tensor of B values
      results[`policyLoss [${rows}, 0]`] = await outcome(() => ops.policyLoss({ logp, advantages: adv }, { lossAgg: 'seq-mean-token-mean' }))
      using logits = Tensor.zeros([rows, 0, 8])
      using targets = Tensor.zeros([rows, 0], { dtype: 'i32' })
      results[`grpoLoss [${rows}, 0, 8]`] = await outcome(() => ops.grpoLossSync({ logits, targets, advantages: adv }))
      results[`tokenLogprobs [${rows}, 0, 8]`] = await outcome(() => ops.tokenLogprobs(logits, targets))
    }
    out({ results, peakGrowth: peakRss() - before })
    break
  }
  case 'size-limits': {
    const results: Record<string, unknown> = {}
    using weight = Tensor.zeros([4, 8])
    using ids = Tensor.zeros([2 ** 31, 2 ** 31, 0], { dtype: 'i32' })
    results.embeddingBagForward = await outcome(() => modelOps.embeddingBagForward(weight, ids))
    using ids1 = Tensor.zeros([2 ** 20, 2 ** 20, 0], { dtype: 'i32' })
    results.embeddingBagForwardBig = await outcome(() => modelOps.embeddingBagForward(weight, ids1))
    using ids2 = Tensor.zeros([2 ** 21, 2 ** 21, 2 ** 21, 0], { dtype: 'i32' })
    results.embeddingBagForwardWrap = await outcome(() => modelOps.embeddingBagForwardSync(weight, ids2))
    results.zeros = await outcome(() => Tensor.zeros([2 ** 45]))
    results.zerosProduct = await outcome(() => Tensor.zeros([2 ** 30, 2 ** 30, 2 ** 30]))
    results.sample = await outcome(() => modelOps.sampleTokens(ids2 as never))
    out({ results, live: memoryInfo().cpu.tensors })
    break
  }
  case 'external-memory': {
    // 250 tensors of 8 MB, never disposed: the garbage collector must know their size to collect them. They are
    // copies made by the native side (no JavaScript buffer whose size V8 would count anyway).
    const base = Tensor.zeros([2 * 1024 * 1024])
    let peak = 0
    for (let i = 0; i < 250; i++) {
      base.toSync('cpu')
      peak = Math.max(peak, memoryInfo().cpu.bytes)
      await new Promise((resolve) => setImmediate(resolve))
    }
    out({ peak })
    break
  }
  case 'disposed-loop': {
    // A training loop's pattern: a large tensor out, disposed, the next one of the same size in (its block comes
    // back from the reuse cache). The process holds no more memory from one step to the next, so V8 must not
    // see growth and run a full mark-compact each step. Counts the major collections over 30 steps.
    const { PerformanceObserver, constants } = await import('node:perf_hooks')
    let major = 0
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++
    })
    observer.observe({ entryTypes: ['gc'] })
    const held = Tensor.zeros([64 * 1024 * 1024]) // 256 MB live throughout
    for (let i = 0; i < 30; i++) {
      Tensor.zeros([32 * 1024 * 1024]).dispose() // 128 MB
      await new Promise((resolve) => setImmediate(resolve))
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
    observer.disconnect()
    held.dispose()
    out({ major, cached: memoryInfo().cpu.cachedBytes })
    break
  }
  default:
    throw new Error(`unknown scenario ${scenario}`)
}

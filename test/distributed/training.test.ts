/**
 * Data-parallel training equals one process: the same run (training-scenario.ts) on one process, on 2 ranks,
 * and with ZeRO-1 on 2 and 3 ranks (3 does not divide the parameter count: the padded shard), compared step by
 * step (losses, rewards, KL, gradient norms, token counts) and parameter by parameter after a checkpoint
 * round trip. Sampling is identical (same completions, so the same rewards and token counts, exactly); what
 * differs is the order of float sums (a gradient summed across ranks instead of in one pass), so the losses
 * agree to float32 rounding and the parameters to 1e-5 (measured: 1e-6).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { mpirun, needsMpi } from './mpi.js'
import { runScenario, type Mode, type ScenarioResult } from './training-scenario.js'

const scenario = join(import.meta.dirname, 'training-scenario.ts')
const dir = await mkdtemp(join(tmpdir(), 'node-grpo-dp-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

let single: ScenarioResult
t.before(async () => {
  single = await runScenario('single', join(dir, 'ckpt-single'))
})

// Each launch once: the 2-rank plain run serves two comparisons.
const launched = new Map<string, Promise<ScenarioResult[]>>()
function ranks(mode: Mode, size: number): Promise<ScenarioResult[]> {
  const key = `${mode}-${size}`
  if (!launched.has(key)) launched.set(key, launch(mode, size))
  return launched.get(key)!
}

async function launch(mode: Mode, size: number): Promise<ScenarioResult[]> {
  const out = join(dir, `${mode}-${size}`)
  const run = await mpirun(size, scenario, [mode, join(dir, `ckpt-${mode}-${size}`), out])
  if (run.code !== 0) throw new Error(`mpirun ${mode} x${size} exited ${run.code}: ${run.stderr.slice(-3000)}`)
  return Promise.all(Array.from({ length: size }, async (_, r) => JSON.parse(await readFile(`${out}.rank${r}`, 'utf8')) as ScenarioResult))
}

/** Largest |a - b| over every number of two results, per part (exact fields must match exactly). */
function compare(t: Tap.Test, a: ScenarioResult, b: ScenarioResult, what: string): void {
  const exact = ['step', 'rewardMean', 'rewardStd', 'zeroStdFraction', 'completions', 'completionLength', 'tokens', 'count', 'reward', 'solved', 'reasons']
  const worst: Record<string, number> = {}
  const walk = (x: unknown, y: unknown, part: string, key: string): void => {
    if (typeof x === 'number') {
      const d = Math.abs(x - (y as number))
      if (exact.includes(key) && x !== y) t.fail(`${what}: ${part}.${key} differs: ${x} vs ${y}`)
      worst[part] = Math.max(worst[part] ?? 0, Number.isNaN(d) ? Infinity : d)
    } else if (x && typeof x === 'object') {
      for (const k of Object.keys(x)) walk((x as Record<string, unknown>)[k], (y as Record<string, unknown> | undefined)?.[k], part, Array.isArray(x) ? key : k)
    } else if (x !== y) {
      t.fail(`${what}: ${part}.${key}: ${String(x)} vs ${String(y)}`)
    }
  }
  for (const part of ['warmStart', 'steps', 'evaluation', 'resumed', 'params'] as const) walk(a[part], b[part], part, part)
  t.ok(worst.warmStart! <= 1e-6, `${what}: warm start within 1e-6 (${worst.warmStart})`)
  t.ok(worst.steps! <= 1e-5, `${what}: every step's metrics within 1e-5 (${worst.steps})`)
  t.equal(worst.evaluation, 0, `${what}: the held-out evaluation, exactly`)
  t.ok(worst.resumed! <= 1e-5, `${what}: a step after the checkpoint round trip within 1e-5 (${worst.resumed})`)
  t.ok(worst.params! <= 1e-5, `${what}: the parameters after it within 1e-5 (${worst.params})`)
}

t.test('2 ranks equal one process', needsMpi(), async (t) => {
  const results = await ranks('dp', 2)
  t.same(results.map((r) => [r.rank, r.size]), [[0, 2], [1, 2]])
  compare(t, single, results[0]!, '2 ranks vs 1 process')
  t.same(results[1]!.params, results[0]!.params, 'the ranks hold the same parameters, bit for bit')
  t.same(results[1]!.steps, results[0]!.steps, 'and report the same metrics')
})

t.test('ZeRO-1 equals plain data parallel', needsMpi(), async (t) => {
  const [plain, zero] = [await ranks('dp', 2), await ranks('zero', 2)]
  compare(t, plain[0]!, zero[0]!, 'ZeRO-1 vs ZeRO-0 on 2 ranks')
  t.same(zero[1]!.params, zero[0]!.params, 'the ranks hold the same parameters, bit for bit')
})

t.test('ZeRO-1 on 3 ranks (a padded last shard) equals one process', needsMpi(), async (t) => {
  const results = await ranks('zero', 3)
  compare(t, single, results[0]!, 'ZeRO-1 on 3 ranks vs 1 process')
  t.same(results[2]!.params, results[0]!.params, 'the ranks hold the same parameters, bit for bit')
})

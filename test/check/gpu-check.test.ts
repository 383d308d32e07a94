/**
 * The GPU check (scripts/gpu-check.sh, lib/check/): its dry run end to end through npm, as a future session
 * with a device would start it, plus the pieces a dry run cannot reach (the refusal without a GPU, the
 * sanitizer's parsing, a backend that disagrees) and the measurement calls it stands on.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GrpoError, Tensor, backend, ops } from '../../lib/index.js'
import { probeDeviceBandwidth, randomUniform, timeKernels, withHostBackend } from '../../lib/bench/device.js'
import { ACCURACY, PAIR, compareOutput } from '../../lib/check/compare.js'
import { CASES, PLANNED_OPS, exportedOps, opExists, type CheckCase } from '../../lib/check/cases.js'
import { runCase, runCorrectness } from '../../lib/check/correctness.js'
import { Rng, logits, lossInputs } from '../../lib/check/inputs.js'
import { EXIT, main } from '../../lib/check/main.js'
import { PERF_CASES, joinTorch, torchSpecs, type PerfRow } from '../../lib/check/perf.js'
import { type GpuCheckOptions, type GpuCheckResults, correctnessInChildren, distributedChild, fatalOps, findNccl, judgeOwnGemm, ownGemmChild, runGpuCheck, sanitizerCases, summaryText } from '../../lib/check/run.js'
import { runDistributedCheck } from '../../lib/check/distributed.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const info = backend.info()
const hasGpu = info.cuda.available
const hasSimt = info.compiled.includes('simt')
const quiet = () => {}

t.test('npm run gpu:check -- --dry-run passes (the same script as on a device, on the SIMT executor)', { skip: hasSimt ? false : 'this build has no SIMT executor' }, async (t) => {
  const out = t.testdir()
  const t0 = Date.now()
  // About a minute at a normal load; the budget is for a machine shared by many builds (load average 40+).
  const r = spawnSync('npm', ['run', '--silent', 'gpu:check', '--', '--dry-run', '--out', out, '--budget', '900'], { cwd: root, encoding: 'utf8', timeout: 1_000_000 })
  const seconds = (Date.now() - t0) / 1000
  t.comment(`dry run: ${seconds.toFixed(0)} s`)
  t.equal(r.status, 0, 'exit code 0', { output: `${r.stdout}\n${r.stderr}`.slice(-6000) })
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as GpuCheckResults
  t.equal(results.mode, 'dry-run')
  t.equal(results.verdict, 'pass', 'the verdict is pass')
  const c = results.correctness!
  t.equal(c.target, 'simt', 'the backend under test is the SIMT executor')
  t.equal(c.failed + c.errors, 0, 'no case failed or errored')
  t.equal(c.skipped, 0, 'no case was skipped: every case ran once here before it runs on a device')
  t.equal(c.passed, CASES.length, `all ${CASES.length} cases passed`)
  t.same(c.unchecked, [], 'no exported op is left without a case')
  t.ok(c.cases.some((x) => x.edge && x.status === 'passed'), 'the edge cases ran (at their dry-run sizes)')
  t.ok(results.probe?.verified && results.probe.copyGBps > 0 && results.probe.backend === 'simt', 'the bandwidth probe ran on simt and its copy was verified')
  const loss = results.perf!.find((p) => p.id === 'grpoLoss bf16')!
  t.equal(loss.status, 'timed', 'our fused loss was timed')
  t.equal(loss.ours!.timing.clock, 'cuda-events', 'with the kernel timer')
  t.ok(loss.ours!.shareOfBandwidth! > 0 && loss.ours!.unfused, 'share of the probe bandwidth and the unfused path')
  const dist = results.steps.find((s) => s.name === 'distributed')!
  t.equal(dist.status, 'passed', 'the distributed step passed')
  const d = results.distributed!
  t.equal(d.target, 'simt', 'on host tensors')
  t.ok(d.passed >= 10 && d.failed + d.errors + d.skipped === 0, `every distributed case passed (${d.passed})`)
  t.ok(d.cases.some((c) => /Trainer's data-parallel step/.test(c.name) && c.status === 'passed'), "the Trainer's data-parallel step")
  for (const id of ['attentionDecode bf16', 'kvCacheWrite bf16', 'embeddingBackward bf16->f32']) {
    const row = results.perf!.find((p) => p.id === id)
    t.equal(row?.status, 'timed', `${id} was timed`)
    t.ok(row?.ours?.gbps! > 0 && row?.ours?.shareOfBandwidth! > 0, `${id}: GB/s and its share of the probe's bandwidth`)
  }
  const sanitizer = results.steps.find((s) => s.name === 'sanitizer')!
  t.equal(sanitizer.status, 'skipped', 'the sanitizer is skipped...')
  t.match(sanitizer.reason, /CUDA-only/, '...as CUDA-only')
  const summary = readFileSync(join(out, 'summary.txt'), 'utf8')
  t.match(summary, /verdict: PASS/, 'summary.txt has the verdict')
  t.match(summary, /distributed \(a world of one, host tensors on the SIMT executor\): \d+ passed, 0 failed/, 'summary.txt has the distributed step')
  t.match(summary, /skipped: step sanitizer: CUDA-only/, 'summary.txt lists what was skipped')
  t.ok(existsSync(join(out, 'gpu-check-log.txt')), 'the full log is kept')
})

t.test('without a GPU the check refuses clearly', { skip: hasGpu ? 'this machine has a GPU' : false }, async (t) => {
  const r = spawnSync('bash', [join(root, 'scripts', 'gpu-check.sh'), '--out', t.testdir()], { encoding: 'utf8' })
  t.equal(r.status, 3, 'exit code 3')
  t.match(r.stderr, /refusing to run: no CUDA GPU here/, r.stderr)
  t.match(r.stderr, /--dry-run/, 'it names the dry run')
  const lines: string[] = []
  t.equal(await main(['--out', t.testdir()], (l) => lines.push(l)), EXIT.noDevice, 'the entry refuses too (a machine with nvidia-smi but no usable device)')
  t.match(lines.join('\n'), /refusing to run: no usable CUDA GPU here/)
})

t.test('bad arguments', async (t) => {
  const lines: string[] = []
  const log = (l: string) => lines.push(l)
  t.equal(await main(['--budget', '3'], log), EXIT.usage, 'a budget under 10 s')
  t.equal(await main(['--seed', '-1'], log), EXIT.usage, 'a negative seed')
  t.equal(await main(['--steps', 'correctness,nope'], log), EXIT.usage, 'an unknown step')
  t.equal(await main(['--child', 'nope'], log), EXIT.usage, 'an unknown child mode')
  t.equal(await main(['--what'], log), EXIT.usage, 'an unknown flag')
  t.equal(await main(['--help'], log), EXIT.ok, '--help')
  const sh = spawnSync('bash', [join(root, 'scripts', 'gpu-check.sh'), '--budget', 'soon'], { encoding: 'utf8' })
  t.equal(sh.status, 2, 'the script rejects a budget that is not a number')
})

t.test('the case table covers every op, and a disagreeing backend is caught', { skip: hasSimt ? false : 'no SIMT executor' }, async (t) => {
  const names = CASES.map((c) => c.name)
  t.equal(new Set(names).size, names.length, 'case names are unique')
  const checked = new Set(CASES.map((c) => c.op))
  for (const op of exportedOps()) {
    if (PLANNED_OPS.includes(op) && !checked.has(op)) continue // no CUDA kernel yet: listed apart in the report
    t.ok(checked.has(op), `${op} has a case (add one to lib/check/cases.ts)`)
  }
  for (const c of CASES) t.ok(opExists(c.op), `${c.op} exists`)
  t.ok(PLANNED_OPS.every((op) => !checked.has(op) || opExists(op)), 'planned ops')
  const sanitized = CASES.filter(sanitizerCases)
  t.same([...new Set(sanitized.map((c) => c.op))].sort(), [...checked].sort(), 'the sanitizer runs a case of every op...')
  t.ok(sanitized.every((c) => !c.edge) && sanitized.length < CASES.length / 2, `...small ones, once per op and dtype (${sanitized.length} of ${CASES.length})`)

  // A case whose output depends on the backend: the comparison must report it, with the worst element.
  // runCase runs the reference side first, then the side under test: the second call plays the faulty backend.
  const secondCallDiffers = () => {
    let calls = 0
    return async () => ({ x: Float32Array.of(1, 2, 3 + (calls++ === 1 ? 1e-3 : 0)) })
  }
  const lying: CheckCase = {
    op: 'ops.tokenLogprobs',
    name: 'a backend that is off by 1e-3',
    async prepare() {
      return { shape: '[3]', tolerances: { x: { kind: 'norm', tol: 1e-5 } }, run: secondCallDiffers() }
    },
  }
  const r = await runCase(lying, { target: 'simt', seed: 1 })
  t.equal(r.status, 'failed', 'the case fails')
  t.equal(r.outputs![0]!.worst!.index, 2, 'at the element that differs')
  const throwing: CheckCase = {
    op: 'ops.grpoLoss',
    name: 'throws on the device',
    async prepare() {
      let calls = 0
      return { shape: '', tolerances: {}, run: async () => { if (calls++ === 1) throw new GrpoError('Expected x for y but received z', 'ERR_GRPO_CUDA'); return {} } }
    },
  }
  const e = await runCase(throwing, { target: 'simt', seed: 1 })
  t.equal(e.status, 'error')
  t.match(e.error, /on simt: ERR_GRPO_CUDA/)
  const undeclared: CheckCase = { op: 'ops.grpoLoss', name: 'an output without a tolerance', async prepare() { return { shape: '', tolerances: {}, run: async () => ({ y: 1 }) } } }
  t.equal((await runCase(undeclared, { target: 'simt', seed: 1 })).status, 'failed', 'an output with no declared tolerance fails')
  const report = await runCorrectness({ target: 'simt', seed: 1, deadline: 0, log: quiet, cases: [lying], filter: () => true })
  t.equal(report.skipped, 1, 'past the deadline, cases are skipped with a reason')
  t.equal(report.cases[0]!.reason, 'time budget')
  const absent = await runCorrectness({ target: 'simt', seed: 1, deadline: Infinity, log: quiet, cases: [{ ...lying, op: 'modelOps.linearNope' }] })
  t.match(absent.cases[0]!.reason, /not in this build/, 'a case for an op not in this build is skipped')
})

t.test('compareOutput follows the accuracy table', async (t) => {
  const tol = { kind: 'norm', tol: PAIR * ACCURACY.rowOutputs } as const
  t.ok(compareOutput('a', Float32Array.of(1, 2, 3), Float32Array.of(1, 2, 3), tol).ok, 'equal')
  t.notOk(compareOutput('a', Float32Array.of(1, NaN), Float32Array.of(1, NaN), tol).ok, 'NaN never passes')
  t.ok(compareOutput('a', Float32Array.of(-Infinity, 1), Float32Array.of(-Infinity, 1), tol).ok, 'the same infinity passes')
  t.notOk(compareOutput('a', Float32Array.of(Infinity, 1), Float32Array.of(-Infinity, 1), tol).ok, 'another infinity fails')
  t.notOk(compareOutput('a', Float32Array.of(0, 1e-3), Float32Array.of(0, 0), tol).ok, 'all-zero reference: the output itself must be ~0')
  t.notOk(compareOutput('a', Float32Array.of(1, 2), Float32Array.of(1, 2, 3), tol).ok, 'lengths differ')
  t.notOk(compareOutput('a', 1, Float32Array.of(1), tol).ok, 'a number against an array')
  t.notOk(compareOutput('a', undefined, 1, tol).ok, 'missing on one side')
  t.notOk(compareOutput('a', Float32Array.of(1, 2), Float32Array.of(1, 2.001), { kind: 'norm', tol: 1, elementwise: 1e-4 }).ok, 'elementwise limit')
  t.notOk(compareOutput('a', Int32Array.of(1, 2), Int32Array.of(1, 3), { kind: 'exact' }).ok, 'exact')
  t.ok(compareOutput('a', Int32Array.of(1, 2), Int32Array.of(1, 3), { kind: 'mismatches', max: 1 }).ok, 'one mismatch allowed')
  t.ok(compareOutput('loss', 1 + 1e-6, 1, { kind: 'scalar', rtol: 2e-5 }).ok, 'scalar within rtol')
  t.notOk(compareOutput('loss', 1e-3, 0, { kind: 'scalar', rtol: 2e-5, mass: 1 }).ok, 'a cancelling sum: relative to its mass')
  t.ok(compareOutput('loss', 1e-7, 0, { kind: 'scalar', rtol: 2e-5, mass: 1 }).ok, 'within rtol of the mass')
  t.ok(compareOutput('n', 0, 0, { kind: 'scalar', rtol: 0, atol: 0 }).ok, 'zero equals zero')
  t.notOk(compareOutput('n', NaN, NaN, { kind: 'scalar', rtol: 1 }).ok, 'a NaN scalar fails')
})

t.test('inputs stay off the branch points of the loss', async (t) => {
  const rng = new Rng(5)
  const g = logits(rng, 50, 300, 'bf16')
  t.equal(g.targets.length, 50)
  t.ok(g.targets.every((y, r) => Number.isFinite(g.values[r * 300 + y]!)), 'no target on a banned (−∞) token')
  const logp = Float32Array.from({ length: 20000 }, () => -rng.logUniform(1e-3, 10))
  const { old, ref } = lossInputs(rng, logp, { clipLow: 0.2, clipHigh: 0.28, dualClip: 3, logRatioClamp: 20 })
  const points = [Math.log(1.28), Math.log(0.8), Math.log(3), 20, -20]
  let nearest = Infinity
  for (let i = 0; i < logp.length; i++) for (const p of points) nearest = Math.min(nearest, Math.abs(logp[i]! - old[i]! - p))
  t.ok(nearest > 5e-4, `log-ratios stay away from the clip, dual-clip and clamp points (nearest ${nearest.toExponential(2)})`)
  t.ok(ref.every((r, i) => Math.abs(r - logp[i]!) > 5e-4), 'the abs estimator never sees d = 0')
})

t.test('measurement calls: random tensors, the probe, the kernel timer, the host-backend switch', { skip: hasSimt ? false : 'no SIMT executor' }, async (t) => {
  const a = await randomUniform([3, 7], { dtype: 'f16', device: 'cpu', seed: 9, low: -2, high: 5 })
  const b = await withHostBackend('simt', () => randomUniform([3, 7], { dtype: 'f16', device: 'cpu', seed: 9, low: -2, high: 5 }))
  const va = await a.toFloat32Array(), vb = await b.toFloat32Array()
  t.same(Array.from(va), Array.from(vb), 'the cpu and the CUDA source (on simt) fill the same values')
  t.ok(va.every((v) => v >= -2 && v <= 5) && new Set(va).size > 15, 'uniform in [low, high], not constant')
  const c = await randomUniform([1000], { seed: 10 })
  t.notSame(Array.from(await c.toFloat32Array()).slice(0, 21), Array.from(va), 'another seed, other values')
  for (const x of [a, b, c]) x.dispose()
  await t.rejects(randomUniform([2], { dtype: 'i32' as 'f32' }), { code: 'ERR_GRPO_INVALID_ARG' })
  await t.rejects(randomUniform([2], { low: 2, high: 1 }), { code: 'ERR_GRPO_INVALID_ARG' })
  await t.rejects(randomUniform([2], { seed: -1 }), { code: 'ERR_GRPO_INVALID_ARG' })
  await t.rejects(randomUniform('x' as unknown as number[]), { code: 'ERR_GRPO_INVALID_ARG' })
  await t.rejects(randomUniform([2], { sed: 1 } as object), { code: 'ERR_GRPO_INVALID_ARG', message: /did you mean seed/ }, 'an unknown option names the nearest')

  const probe = await withHostBackend('simt', () => probeDeviceBandwidth('cpu', { bytes: 1 << 17, reps: 2 }))
  t.ok(probe.verified && probe.backend === 'simt' && probe.copyGBps > 0 && probe.readGBps > 0 && probe.memcpyGBps > 0, 'the probe runs on the SIMT executor')
  await t.rejects(withHostBackend('cpu', () => probeDeviceBandwidth('cpu')), { code: 'ERR_GRPO_INVALID_ARG', message: /cuda or simt/ }, 'not on the CPU backend')
  await t.rejects(probeDeviceBandwidth('cpu', { bytes: 100 }), { code: 'ERR_GRPO_INVALID_ARG' })
  await t.rejects(probeDeviceBandwidth('tpu' as 'cpu'), { code: 'ERR_GRPO_INVALID_ARG' })
  if (!hasGpu) await t.rejects(probeDeviceBandwidth('cuda'), { code: 'ERR_GRPO_NO_CUDA' })

  const x = Tensor.from(new Float32Array(4 * 50).map((_, i) => Math.sin(i)), [1, 4, 50])
  const y = Tensor.from(Int32Array.of(1, 2, 3, 4), [1, 4])
  const timed = await withHostBackend('simt', () => timeKernels('cpu', () => ops.tokenLogprobs(x, y)))
  t.ok(timed.time && timed.time.launches >= 1 && timed.time.ms > 0 && timed.time.backend === 'simt', 'kernels launched on simt are timed')
  for (const v of Object.values(timed.result)) v?.dispose()
  const host = await withHostBackend('cpu', () => timeKernels('cpu', () => ops.tokenLogprobs(x, y)))
  t.equal(host.time, undefined, 'the CPU backend launches no kernels: no kernel time')
  for (const v of Object.values(host.result)) v?.dispose()
  await t.rejects(withHostBackend('simt', () => timeKernels('cpu', () => { throw new Error('boom') })), /boom/, 'an error inside closes the window')
  const before = backend.info().active
  await t.rejects(withHostBackend('gpu' as 'cpu', () => 1), { code: 'ERR_GRPO_INVALID_ARG' })
  await withHostBackend('simt', () => t.equal(backend.info().active, 'simt', 'switched'))
  t.equal(backend.info().active, before, 'restored')
  x.dispose()
  y.dispose()
})

t.test('PyTorch baselines: the table, the join, and the script', async (t) => {
  const specs = torchSpecs(true)
  t.equal(new Set(specs.map((s) => s.id)).size, specs.length, 'unique ids')
  t.ok(PERF_CASES.some((c) => c.targets?.speedupOverTorch), 'the headline targets are in the table')
  const rows: PerfRow[] = PERF_CASES.map((c) => ({ id: c.id, op: c.op, status: c.ours ? 'timed' : 'reference only', torch: [], targets: [], ours: c.ours ? { timing: { medianMs: 2, minMs: 2, maxMs: 2, reps: 1, clock: 'cuda-events', hostMedianMs: 2 }, shareOfBandwidth: 0.9 } : undefined }))
  const device = torchSpecs(false)
  t.ok(device.findIndex((s) => s.compile) > device.map((s) => !s.compile).lastIndexOf(true), 'the torch.compile rows run last')
  const failing = device.find((s) => s.compile && s.id.startsWith('grpoLoss bf16'))!.id
  const results = device.map((s) => (s.id === failing ? { id: s.id, kind: s.kind, ok: false, error: 'boom' } : { id: s.id, kind: s.kind, ok: true, medianMs: 12, rate: 1, rateUnit: 'TFLOP/s', compileSeconds: s.compile ? 30 : undefined }))
  joinTorch(rows, results, false)
  const loss = rows.find((r) => r.id === 'grpoLoss bf16')!
  t.equal(loss.torch[0]!.speedup, 6, 'the speed-up is the baseline over ours')
  t.match(loss.torch[1]!.note, /error: boom/)
  t.same(loss.targets.map((x) => x.met), [true, true], 'both headline targets judged')
  const distributed = {
    target: 'cuda' as const, device: 'cuda' as const, seed: 1, world: { cudaTransport: 'nccl', nccl: { available: true, version: 22703, reason: '' } },
    cases: [{ name: 'allReduce f32', status: 'failed' as const, seconds: 1, error: 'expected 1 at index 0 but received 2' }], passed: 0, failed: 1, errors: 0, skipped: 0,
  }
  const text = summaryText({ schema: 1, mode: 'device', startedAt: 'now', budgetSeconds: 420, elapsedSeconds: 1, seed: 1, environment: {}, steps: [], perf: rows, distributed, skipped: [], verdict: 'pass' })
  t.match(text, /target MET/, 'the summary shows the targets')
  t.match(text, /distributed \(a world of one, cuda tensors, transport nccl, NCCL 22703\): 0 passed, 1 failed/, 'and the distributed step')
  t.match(text, /FAILED allReduce f32: expected 1/, 'with its failures')
  const absent = summaryText({ schema: 1, mode: 'device', startedAt: 'now', budgetSeconds: 420, elapsedSeconds: 1, seed: 1, environment: {}, steps: [], distributed: { ...distributed, world: { cudaTransport: 'host (MPI)', nccl: { available: false, version: 0, reason: 'libnccl.so.2: not found' } }, cases: [], failed: 0 }, skipped: [], verdict: 'incomplete' })
  t.match(absent, /NCCL absent \(libnccl.so.2: not found\)/, 'an absent NCCL says why')

  // Any python3 runs the script: without PyTorch it must say so; with one (Debian's python3-torch here, maybe
  // PyTorch 1) every row must run or be skipped for a missing feature, never error.
  const pythons = ['python3', '/usr/bin/python3'].filter((py) => spawnSync(py, ['--version']).status === 0)
  if (pythons.length === 0) {
    t.comment('no python3 here')
    return
  }
  const py = pythons.find((p) => spawnSync(p, ['-c', 'import torch']).status === 0) ?? pythons[0]!
  const dir = t.testdir()
  const spec = join(dir, 'spec.json'), out = join(dir, 'out.json')
  writeFileSync(spec, JSON.stringify({ device: 'cpu', budgetSeconds: 120, warmup: 1, reps: 2, cases: specs }))
  const r = spawnSync(py, [join(root, 'scripts', 'gpu_check_torch.py'), spec, out], { encoding: 'utf8', timeout: 300_000 })
  t.equal(r.status, 0, `${py} runs the script`, { output: `${r.stdout}${r.stderr}`.slice(-3000) })
  const got = JSON.parse(readFileSync(out, 'utf8'))
  if (got.error) {
    t.match(got.error, /PyTorch is not importable/, 'without PyTorch it says so')
  } else {
    t.equal(got.results.length, specs.length, `PyTorch ${got.torch}: a result per baseline`)
    for (const x of got.results) t.ok(x.ok || x.skipped, `${x.id}: ${x.ok ? `${x.medianMs.toFixed(3)} ms` : x.skipped ?? x.error}`)
  }
})

t.test('the sanitizer step, with a stand-in for compute-sanitizer', async (t) => {
  const dir = t.testdir()
  const fake = join(dir, 'compute-sanitizer')
  // Prints what compute-sanitizer prints last; writes the child's report where --json says.
  writeFileSync(
    fake,
    `#!/usr/bin/env bash\ntool=$2\nwhile [ $# -gt 0 ]; do [ "$1" = --json ] && echo '{"cases":[1,2],"passed":2,"failed":0,"errors":0}' > "$2"; shift; done\n` +
      `if [ "$tool" = racecheck ]; then echo "========= Error: Device not supported"; exit 1; fi\necho "========= ERROR SUMMARY: 0 errors"\n`,
  )
  chmodSync(fake, 0o755)
  const results = await runGpuCheck({
    mode: 'device', out: join(dir, 'out'), budgetSeconds: 60, seed: 3, python: 'python3', torchScript: '', sanitizer: fake,
    nodeCommand: ['node', 'main.js'], steps: ['sanitizer'], log: quiet,
  })
  const [mem, race] = results.sanitizer!
  t.equal(mem!.status, 'clean', 'memcheck: clean')
  t.match(mem!.summary, /ERROR SUMMARY: 0 errors; the 2 cases under it: 2 passed/)
  t.equal(race!.status, 'did not run', 'racecheck: reported as not run, with why')
  t.match(race!.summary, /Device not supported/)
  t.equal(results.verdict, 'incomplete', 'steps not asked for and a sanitizer that did not run: incomplete, not pass')
  t.ok(existsSync(join(dir, 'out', 'sanitizer-memcheck.txt')), 'the sanitizer log is kept')
})

t.test('the linear ops with GRPO_CUDA_GEMM=own, in a child process (on simt here)', { skip: hasSimt ? false : 'no SIMT executor' }, async (t) => {
  const o = { nodeCommand: [process.execPath, join(root, 'dist', 'check', 'main.js')], seed: 5 } as GpuCheckOptions
  const c = await ownGemmChild(o, 'correctness', 'simt', 300)
  t.ok(c.cases && c.cases.length === CASES.filter((x) => x.op.startsWith('modelOps.linear')).length, 'every linear case ran in the child', { error: c.error })
  t.ok(c.cases?.every((x) => x.status === 'passed' && x.name.endsWith('[GRPO_CUDA_GEMM=own]')), 'passed, and marked as our GEMM')
  const p = await ownGemmChild(o, 'perf', 'simt', 300)
  t.ok(p.rows && p.rows.length === PERF_CASES.filter((x) => x.op === 'modelOps.linear').length && p.rows.every((r) => r.status === 'timed' && r.ours!.tflops! > 0), 'the GEMM rows were timed', { error: p.error })
  const broken = await ownGemmChild({ ...o, nodeCommand: [process.execPath, join(t.testdir(), 'missing.js')] }, 'perf', 'simt', 60)
  t.match(broken.error, /no results/, 'a child that fails is reported, not fatal')
  const timing = (ms: number) => ({ timing: { medianMs: ms, minMs: ms, maxMs: ms, reps: 1, clock: 'cuda-events' as const, hostMedianMs: ms } })
  const rows: PerfRow[] = [
    { id: 'linear bf16 4096^3', status: 'timed', torch: [], targets: [], ours: timing(1) },
    { id: 'linear bf16 4096^3 [GRPO_CUDA_GEMM=own]', status: 'timed', torch: [], targets: [], ours: timing(1.6) },
  ]
  judgeOwnGemm(rows)
  t.equal(rows[1]!.targets[0]!.value, 0.625, 'our GEMM as a share of cuBLASLt: 1 / 1.6')
  t.ok(rows[1]!.targets[0]!.met, '>= 50%: met')
})

t.test('a case that kills its process costs that case only: a new process takes the rest', { skip: hasSimt ? false : 'no SIMT executor' }, async (t) => {
  const ops = ['modelOps.cast', 'modelOps.castInto']
  const names = CASES.filter((c) => ops.includes(c.op)).map((c) => c.name)
  t.equal(names.length, 2, 'two cases')
  const out = t.testdir()
  const o = { nodeCommand: [process.execPath, join(root, 'dist', 'check', 'main.js')], seed: 9, out } as GpuCheckOptions
  const lines: string[] = []
  o.log = (l) => lines.push(l)
  process.env.GRPO_CHECK_FAULT = `crash:${names[0]}`
  let progress = 0
  const report = await correctnessInChildren(o, 'simt', Date.now() + 120_000, () => progress++, ops).finally(() => delete process.env.GRPO_CHECK_FAULT)
  t.equal(report.cases.length, 2, 'both cases are reported')
  t.equal(report.cases[0]!.status, 'error', 'the case that was running when its process died is an error...')
  t.match(report.cases[0]!.error, /the check process was killed by SIGKILL while running this case/, '...saying how the process ended')
  t.equal(report.cases[1]!.status, 'passed', 'the next case ran in a new process and passed')
  t.same([report.errors, report.passed], [1, 1], 'tallied')
  t.ok(progress >= 2, 'progress reported as it went')
  t.ok(existsSync(join(out, 'correctness-log-2.txt')), 'each process keeps its log')
  t.match(lines.join('\n'), /a new process takes over at case 1/)
  t.same([...fatalOps(report)], ['modelOps.cast'], 'the op is kept out of the timing step')

  const late = await correctnessInChildren(o, 'simt', Date.now() + 1000, () => {}, ops)
  t.ok(late.cases.every((c) => c.status === 'skipped' && c.reason === 'time budget'), 'no time left: every case skipped with the reason')
})

t.test('the distributed step in this process: a world of one, its refusals, the deadline, the child and NCCL search', { skip: hasSimt ? false : 'no SIMT executor' }, async (t) => {
  const lines: string[] = []
  const report = await withHostBackend('simt', () => runDistributedCheck({ target: 'simt', seed: 5, deadline: Infinity, log: (l) => lines.push(l) }))
  t.equal(report.failed + report.errors + report.skipped, 0, lines.join('\n'))
  t.equal(report.passed, report.cases.length)
  t.match(report.world, { size: 1, rank: 0, initialized: true }, 'a world of one')
  const late = await runDistributedCheck({ target: 'simt', seed: 5, deadline: 0, log: quiet })
  t.ok(late.cases.slice(1).every((c) => c.status === 'skipped' && c.reason === 'time budget'), 'past the deadline, cases are skipped with a reason')

  // The child: its report comes back; a child that dies is an error with how it ended.
  const out = t.testdir()
  const base: GpuCheckOptions = { mode: 'dry-run', out, budgetSeconds: 60, seed: 3, python: 'python3', torchScript: '', nodeCommand: [process.execPath, join(root, 'dist', 'check', 'main.js')], log: quiet }
  const child = await distributedChild(base, 'simt', 120)
  t.equal(child.failed + child.errors, 0, 'the child passed')
  t.ok(child.passed >= 10)
  if (!hasGpu) {
    const noNccl = await distributedChild(base, 'cuda', 60)
    t.equal(noNccl.skipped, noNccl.cases.length - 1, 'on cuda without NCCL (no GPU here) every case after init is skipped...')
    t.match(noNccl.cases[1]!.reason, /NCCL is not available: /, "...with the loader's reason")
    t.type(noNccl.ncclSearch, 'string', 'and the search for libnccl.so.2 is reported')
  }
  const dead = await distributedChild({ ...base, nodeCommand: [process.execPath, '-e', 'process.exit(9)'] }, 'simt', 30)
  t.equal(dead.errors, 1)
  t.match(dead.childError, /exited with code 9/)

  // NCCL: GRPO_NCCL_LIBRARY first; else PyTorch's wheel layout under the Python's site-packages.
  const saved = process.env.GRPO_NCCL_LIBRARY
  t.teardown(() => (saved === undefined ? delete process.env.GRPO_NCCL_LIBRARY : (process.env.GRPO_NCCL_LIBRARY = saved)))
  process.env.GRPO_NCCL_LIBRARY = '/opt/nccl/libnccl.so.2'
  t.same(findNccl('python3'), { path: '/opt/nccl/libnccl.so.2', how: 'GRPO_NCCL_LIBRARY' })
  delete process.env.GRPO_NCCL_LIBRARY
  // Two fake site-packages (PyTorch's CUDA 12 and CUDA 13 wheel layouts) and a python3 that sees one of them.
  const scratch = mkdtempSync(join(tmpdir(), 'grpo-nccl-search-'))
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
  const site = join(scratch, 'cu12'), cu13 = join(scratch, 'cu13')
  mkdirSync(join(site, 'nvidia', 'nccl', 'lib'), { recursive: true })
  writeFileSync(join(site, 'nvidia', 'nccl', 'lib', 'libnccl.so.2'), '')
  mkdirSync(join(cu13, 'nvidia', 'cu13', 'lib'), { recursive: true })
  writeFileSync(join(cu13, 'nvidia', 'cu13', 'lib', 'libnccl.so.2'), '')
  const fakePython = join(scratch, 'python3')
  writeFileSync(fakePython, `#!/bin/sh\nPYTHONPATH=${site} exec python3 "$@"\n`)
  chmodSync(fakePython, 0o755)
  t.same(findNccl(fakePython), { path: join(site, 'nvidia', 'nccl', 'lib', 'libnccl.so.2'), how: `found by ${fakePython} in site-packages` })
  writeFileSync(fakePython, `#!/bin/sh\nPYTHONPATH=${cu13} exec python3 "$@"\n`)
  t.equal(findNccl(fakePython).path, join(cu13, 'nvidia', 'cu13', 'lib', 'libnccl.so.2'), 'the CUDA 13 wheels\' layout')
  t.match(findNccl('/nonexistent/python3'), { path: undefined, how: /did not run/ })
  t.match(findNccl('true'), { path: undefined, how: /no libnccl.so.2/ })
})

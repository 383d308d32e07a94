/**
 * The benchmark and the tour on tiny shapes: every op and baseline runs, results and chart are written, the
 * plain TypeScript baseline agrees with the native loss, and bad flags fail with GrpoError codes.
 */
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { GrpoError } from '../../lib/index.js'
import { pairTimings, runBench } from '../../lib/bench/run.js'
import { ALL_OPS } from '../../lib/bench/types.js'
import { plainGrpoLoss } from '../../lib/bench/baselines.js'

// Commands print to stdout; keep that out of the TAP stream.
async function quietly<T>(fn: () => Promise<T>): Promise<{ value: T; output: string }> {
  const write = process.stdout.write.bind(process.stdout)
  let output = ''
  process.stdout.write = ((chunk: string | Uint8Array) => {
    output += String(chunk)
    return true
  }) as typeof process.stdout.write
  try {
    return { value: await fn(), output }
  } finally {
    process.stdout.write = write
  }
}

t.test('paired timings: each repetition against the limit measured just before it', async (t) => {
  // A slow phase of the machine (the second repetition) slows the op and the probe alike: the paired ratios are
  // 1.25, 1.5, 1.2 (median 1.25), where the op's median over the probe's best would read 12 / 8 = 1.5.
  const p = pairTimings([10, 30, 12], [8, 20, 10])
  t.same(p.ratios, [1.25, 1.5, 1.2])
  t.equal(p.timesLimit, 1.25)
  t.equal(p.limitMedianMs, 10)
  t.throws(() => pairTimings([1, 2], [1]), /2 times for 1 limits/)
})

t.test('the machine probe leaves the block cache alone', async (t) => {
  // The bench probes before each repetition of a large row op: cached probe blocks would push the op's own output
  // out of the cache, and the op would pay its page faults again in every timed run.
  const { native } = await import('../../lib/native.js')
  const { memoryInfo } = await import('../../lib/index.js')
  const before = memoryInfo().cpu.cachedBytes
  const m = native().measureMachine({ bytes: 8 * 2 ** 20, reps: 1 })
  t.ok(m.copyGBps > 0 && m.readGBps > 0 && m.expPerSecond > 0, 'limits measured')
  t.equal(memoryInfo().cpu.cachedBytes, before, 'no probe block kept in the cache')
  t.throws(() => native().measureMachine({ bytes: 1024, reps: 1 }), { code: 'ERR_GRPO_INVALID_ARG' })
})

t.test('runBench: every op on tiny shapes, results, chart and baselines', async (t) => {
  const out = t.testdir()
  const lines: string[] = []
  const result = await runBench({
    device: 'cpu', ops: ALL_OPS, vocab: [64, 100], tokens: [8], dtypes: ['f32', 'bf16'], attentionLengths: [8, 40], transformerTokens: 80,
    reps: 2, warmup: 1, baselineReps: 1, out, seed: 3, log: (l) => lines.push(l),
    gemmTokens: 4, gemmSizes: [16, 33], gemmTorch: false,
  })
  t.ok(result.machine.copyGBps > 0 && result.machine.readGBps > 0 && result.machine.expPerSecond > 0, 'machine limits measured')
  const timed = (op: string) => (op === 'transformerOps' ? ['rmsNorm', 'rope', 'swiglu', 'add', 'embedding'].every((x) => result.cases.some((c) => c.op === x)) : result.cases.some((c) => c.op === op))
  for (const op of ALL_OPS.filter((o) => o !== 'gemm')) t.ok(timed(op), `${op} was timed`)
  t.ok(result.cases.some((c) => c.op === ('attention+backward' as string)), 'attention forward+backward was timed')
  const gemm = result.gemm!
  t.ok(gemm.peak.f32GFlops > 0, 'the FMA peak was measured')
  for (const pass of ['forward', 'gradInput', 'gradWeight'] as const) {
    for (const dtype of ['f32', 'bf16'] as const) {
      t.ok(gemm.cases.some((c) => c.pass === pass && c.dtype === dtype && c.impl === 'node-grpo' && c.gflops > 0), `gemm ${pass} ${dtype} was timed`)
    }
  }
  t.ok(gemm.cases.some((c) => c.shape.startsWith('lm_head') && c.N === 151936), 'the LM head shape is in the table')
  if (gemm.openblas.available) t.ok(gemm.cases.some((c) => c.impl === 'openblas'), 'OpenBLAS ran where it is installed')
  t.equal(gemm.torch.available, false, 'the PyTorch baseline was skipped as asked')
  for (const impl of ['native', 'unfused-ops', 'plain-ts'] as const) {
    t.ok(result.cases.some((c) => c.op === 'grpoLoss' && c.impl === impl), `grpoLoss ${impl} was timed`)
  }
  const plain = result.cases.filter((c) => c.impl === 'plain-ts')
  t.ok(plain.length > 0 && plain.every((c) => /losses agree/.test(c.note ?? '')), 'plain TypeScript agrees with the native loss')
  for (const c of result.cases) {
    t.ok(c.timing.medianMs >= c.timing.minMs && c.timing.maxMs >= c.timing.medianMs, `${c.op} ${c.impl} ${c.dtype}: min <= median <= max`)
    if (c.bytesPerToken > 0 && c.op !== 'scoreBatch') t.ok(c.gbps > 0 && c.shareOfLimit > 0, `${c.op} ${c.impl}: GB/s and share of limit`)
  }
  t.equal(result.files.length, 3, 'a JSON, an SVG and the GEMM table')
  t.match(readFileSync(result.files[2]!, 'utf8'), /\| shape \(M×N×K of the GEMM\) \| pass \|/, 'the GEMM table is Markdown')
  const json = JSON.parse(readFileSync(result.files[0]!, 'utf8'))
  t.equal(json.cases.length, result.cases.length, 'the JSON holds every case')
  t.match(readFileSync(result.files[1]!, 'utf8'), /<svg/, 'the chart is an SVG')
  t.ok(lines.some((l) => /fused is/.test(l)), 'the log prints the fusion ratio')
})

t.test('gemm bench: the PyTorch/oneDNN baseline where python3 has torch, a reason where not', async (t) => {
  const { runGemmBench, gemmMarkdown } = await import('../../lib/bench/gemm.js')
  const r = await runGemmBench({ device: 'cpu', reps: 1, tokens: 2, sizes: [16], log: () => {}, torch: true })
  if (r.torch.available) {
    t.ok(r.cases.some((c) => c.impl === 'onednn-torch' && c.dtype === 'bf16' && c.gflops > 0), 'oneDNN bf16 through torch was timed')
    t.ok(r.cases.some((c) => c.impl === 'torch' && c.dtype === 'f32'), 'torch f32 was timed')
  } else {
    t.match(r.torch.reason, /\S/, `no torch: ${r.torch.reason}`)
  }
  t.match(gemmMarkdown(r), /square 16 \(16×16×16\) \| forward/, 'the table has the square case')
})

t.test('the plain TypeScript baseline follows the math', async (t) => {
  // One row, V = 2, no ratio change (old = logp), A = 1: the loss is -1 and the gradient is -(e_y - p).
  const logits = Float32Array.of(0, Math.log(3))
  const logp = Math.log(1 / 4)
  const r = plainGrpoLoss({ logits, targets: Int32Array.of(0), oldLogp: Float32Array.of(logp), refLogp: Float32Array.of(logp), advantages: Float32Array.of(1), V: 2, temperature: 1, clip: 0.2, beta: 0 })
  t.ok(Math.abs(r.loss + 1) < 1e-6, `loss ${r.loss}`)
  t.ok(Math.abs(r.grad[0]! + 0.75) < 1e-6 && Math.abs(r.grad[1]! - 0.75) < 1e-6, `gradient ${Array.from(r.grad)}`)
})

t.test('bench command: --help, a small run, and bad flags', async (t) => {
  const { run } = await import('../../lib/commands/bench.js')
  t.equal((await quietly(() => run(['--help']))).value, 0, '--help')
  const dir = t.testdir()
  const small = await quietly(() => run(['--ops', 'tokenLogprobs,groupAdvantages', '--vocab', '32', '--tokens', '4', '--dtypes', 'f16', '--reps', '1', '--warmup', '0', '--out', dir]))
  t.equal(small.value, 0, 'a small run succeeds')
  t.match(small.output, /wrote .*\.json/, 'it names its results')
  t.ok(existsSync(join(dir)), 'the results folder exists')
  for (const [flag, value] of [['--ops', 'nope'], ['--dtypes', 'i32'], ['--vocab', '0'], ['--device', 'tpu'], ['--tokens', ',']]) {
    await t.rejects(quietly(() => run([flag!, value!])), GrpoError, `${flag} ${value} is rejected`)
  }
})

t.test('tour command', async (t) => {
  const { run } = await import('../../lib/commands/tour.js')
  t.equal((await quietly(() => run(['--help']))).value, 0, '--help')
  const tour = await quietly(() => run(['--vocab', '50', '--tokens', '16', '--group', '2', '--dtype', 'f16']))
  t.equal(tour.value, 0, 'the tour runs')
  t.match(tour.output, /grpoLoss \(forward \+ backward\)/, 'it shows the fused loss')
  t.match(tour.output, /live native tensors after dispose: 0/, 'it frees what it made')
})

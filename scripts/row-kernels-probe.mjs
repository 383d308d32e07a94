// Where the time of the CPU row ops goes (issue 19): in one process, the machine's probes (copy, read, exp)
// and the ops at 256 x 151936 (f32, bf16), each the median of `reps`, alternating two input sets so a run
// never finds the previous run's rows in cache; plus each op on 2 rows per thread, the same row repeated, and how
// much of the memory time and the exp time overlap. Run with GRPO_NUM_THREADS=1 and 2 to see the scaling (the
// per-core limits with 1). The 2-row case is not grpoLoss' fused loop in L2: at V = 151936 its working set (2 rows
// of logits, their gradient, the kept exponentials: 3 MB in f32) exceeds the 2 MB L2, and with 2 rows a thread
// runs only the pipeline's ends (the first row's statistics alone, the last row's gradient alone). For the loops
// themselves, in cache and from memory, see scripts/row-kernels-loop.cc.
//   node scripts/row-kernels-probe.mjs [reps]
import { ops, Tensor } from '../dist/index.js'
import { native } from '../dist/native.js'

const V = 151936, N = 256, reps = Number(process.argv[2] ?? 9)
const m = native().measureMachine({ bytes: 512 * 1024 * 1024, reps: 5 })
const ms = (bytes, gbps) => bytes / gbps / 1e6
console.log(`threads ${m.threads}: copy ${m.copyGBps.toFixed(1)} GB/s, read ${m.readGBps.toFixed(1)} GB/s, exp ${(m.expPerSecond / 1e9).toFixed(2)} G/s`)
const median = (ts) => ts.sort((a, b) => a - b)[ts.length >> 1]
// Median wall ms; `cpu` (set as a side result): median process CPU ms per run divided by the thread count,
// which other processes on a loaded machine disturb far less than wall time.
let cpu = 0
async function time(fs) {
  const ts = [], cs = []
  for (let r = 0; r < reps; r++) {
    const c0 = process.cpuUsage(), t0 = performance.now(); const out = await fs[r % fs.length](); ts.push(performance.now() - t0)
    const c = process.cpuUsage(c0); cs.push((c.user + c.system) / 1e3 / m.threads)
    for (const v of Object.values(out)) if (v?.dispose) v.dispose()
  }
  cpu = median(cs)
  return median(ts)
}
for (const dtype of ['f32', 'bf16']) {
  const make = (rows, repeatOne) => {
    const x = new Float32Array(rows * V)
    for (let i = 0; i < (repeatOne ? V : x.length); i++) x[i] = (Math.random() - 0.5) * 10
    if (repeatOne) for (let r = 1; r < rows; r++) x.copyWithin(r * V, 0, V)
    return {
      logits: Tensor.from(x, [1, rows, V], { dtype }),
      targets: Tensor.from(Int32Array.from({ length: rows }, () => (Math.random() * V) | 0), [1, rows]),
      advantages: Tensor.from([1], [1]),
    }
  }
  const sets = [make(N), make(N)]
  const bytes = sets[0].logits.byteLength
  const tl = await time(sets.map((s) => () => ops.tokenLogprobs(s.logits, s.targets))), tlc = cpu
  const tg = await time(sets.map((s) => () => ops.grpoLoss(s))), tgc = cpu
  const copyLimit = ms(2 * bytes, m.copyGBps), readLimit = ms(bytes, m.readGBps)
  const expMs = (N * V) / m.expPerSecond * 1e3
  // How much of the smaller of the two costs (memory alone, exponentials alone) the op hides under the other:
  // 1 = the op costs max(memory, exp), 0 = it costs their sum.
  const overlap = (t, mem) => ((mem + expMs - t) / Math.min(mem, expMs)).toFixed(2)
  console.log(`${dtype} overlap of memory and exp time: tokenLogprobs ${overlap(tl, readLimit)}, grpoLoss ${overlap(tg, copyLimit)}`)
  console.log(`${dtype} 256 rows from memory: tokenLogprobs ${tl.toFixed(2)} ms (${(tl / readLimit).toFixed(2)}x 1R ${readLimit.toFixed(2)} ms; cpu/thread ${tlc.toFixed(2)} ms), ` +
    `grpoLoss ${tg.toFixed(2)} ms (${(tg / copyLimit).toFixed(2)}x 1R+1W ${copyLimit.toFixed(2)} ms; cpu/thread ${tgc.toFixed(2)} ms); exp limit ${expMs.toFixed(2)} ms`)
  // 2 rows per thread, the same row repeated (see the header: not all in L2 for grpoLoss)
  const rowsSmall = 2 * m.threads
  const small = make(rowsSmall, true)
  await time([() => ops.tokenLogprobs(small.logits, small.targets)]); const tls = cpu
  await time([() => ops.grpoLoss(small)]); const tgs = cpu
  console.log(`${dtype} cpu/thread per 256 rows, the same ${rowsSmall} rows again and again: tokenLogprobs ${(tls / rowsSmall * N).toFixed(2)} ms, grpoLoss ${(tgs / rowsSmall * N).toFixed(2)} ms`)
}

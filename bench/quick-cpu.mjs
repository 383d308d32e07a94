// Quick CPU timing of tokenLogprobs and the fused grpoLoss at B*L = 256, V = 151936 (f32 and bf16), with a
// TypedArray copy of the same size as the bandwidth yardstick. Run after `npm install`: node bench/quick-cpu.mjs
import { ops, Tensor, backend } from '../dist/index.js'
const V = 151936, N = 256, reps = 10
console.log(backend.info().cpu)
for (const dtype of ['f32', 'bf16']) {
  const x = new Float32Array(N * V); for (let i = 0; i < x.length; i++) x[i] = (Math.random() - 0.5) * 10
  const logits = Tensor.from(x, [1, N, V], { dtype })
  const targets = Tensor.from(Int32Array.from({ length: N }, () => (Math.random() * V) | 0), [1, N])
  const adv = Tensor.from([1], [1])
  const time = async (f) => { const ts = []; for (let r = 0; r < reps; r++) { const t0 = performance.now(); const out = await f(); ts.push(performance.now() - t0); for (const v of Object.values(out)) if (v?.dispose) v.dispose() } ts.sort((a, b) => a - b); return ts[reps >> 1] }
  const tl = await time(() => ops.tokenLogprobs(logits, targets))
  const tle = await time(() => ops.tokenLogprobs(logits, targets, { entropy: true }))
  const tg = await time(() => ops.grpoLoss({ logits, targets, advantages: adv }))
  const tgi = await time(async () => { const r = await ops.grpoLoss({ logits, targets, advantages: adv }, { inplace: true }); return { logp: r.logp } })
  const bytes = logits.byteLength
  console.log(`${dtype}: tokenLogprobs ${tl.toFixed(2)} ms (${(bytes / tl / 1e6).toFixed(1)} GB/s), +entropy ${tle.toFixed(2)} ms, grpoLoss ${tg.toFixed(2)} ms (${(2 * bytes / tg / 1e6).toFixed(1)} GB/s), inplace ${tgi.toFixed(2)} ms`)
}
// memory bandwidth reference: copy
const a = new Float64Array(N * V / 2), b = new Float64Array(N * V / 2); const ts = []
for (let r = 0; r < 5; r++) { const t0 = performance.now(); b.set(a); ts.push(performance.now() - t0) }
ts.sort(); console.log(`JS TypedArray.set copy of ${(a.byteLength / 1e6).toFixed(0)} MB: ${ts[2].toFixed(2)} ms = ${(2 * a.byteLength / ts[2] / 1e6).toFixed(1)} GB/s (read+write)`)

/**
 * `node-grpo tour`: one GRPO step's numerical core on the active backend, on synthetic data, with timings.
 * A quick way to see that the addon loads, which backend and ISA it uses, and what the ops return.
 */
import { parseArgs } from 'node:util'
import * as backend from '../backend.js'
import { groupAdvantages, grpoLoss, tokenLogprobs } from '../ops.js'
import { Tensor, memoryInfo } from '../tensor.js'

function lcg(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      vocab: { type: 'string', default: '32000' },
      tokens: { type: 'string', default: '256' },
      group: { type: 'string', default: '4' },
      dtype: { type: 'string', default: 'bf16' },
      seed: { type: 'string', default: '1' },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    process.stdout.write('Usage: node-grpo tour [--vocab 32000] [--tokens 256] [--group 4] [--dtype bf16|f16|f32] [--seed 1]\n')
    return 0
  }
  const V = Number(values.vocab), group = Number(values.group), dtype = values.dtype as 'f32' | 'bf16' | 'f16'
  const B = group * 2
  const L = Math.max(1, Math.round(Number(values.tokens) / B))
  const random = lcg(Number(values.seed))
  const info = backend.info()
  const out = (line = '') => process.stdout.write(line + '\n')
  out(`node-grpo tour: backend ${info.active} (${info.reason}); cpu ${info.cpu.isa} x${info.cpu.threads} threads`)
  out(`cuda: ${info.cuda.available ? info.cuda.devices.map((d) => d.name).join(', ') : info.cuda.reason}`)
  out(`shape: ${B} completions (2 prompts x group ${group}) x ${L} tokens x vocab ${V}, ${dtype} logits\n`)

  // 1. Rewards of each completion (as the Tool-N1 reward gives them: 0 or 1) → group-relative advantages.
  const rewards = Array.from({ length: B }, () => (random() < 0.4 ? 1 : 0))
  const adv = await groupAdvantages(rewards, { groupSize: group })
  out(`1. rewards ${JSON.stringify(rewards)}`)
  out(`   advantages ${Array.from(await adv.advantages.toArray(), (a) => a.toFixed(3)).join(' ')}`)
  out(`   group means ${Array.from(adv.groupMean, (m) => m.toFixed(2)).join(' ')}, zero-spread groups ${(adv.zeroStdFraction * 100).toFixed(0)}%`)

  // 2. Logits of the sampled completions (random here; a Policy produces them in training).
  const logitValues = new Float32Array(B * L * V)
  for (let i = 0; i < logitValues.length; i++) logitValues[i] = (random() - 0.5) * 8
  const targetValues = Int32Array.from({ length: B * L }, () => Math.floor(random() * V))
  const maskValues = Uint8Array.from({ length: B * L }, (_, i) => ((i % L) < L - (i % 3) ? 1 : 0))
  await using logits = Tensor.from(logitValues, [B, L, V], { dtype })
  await using targets = Tensor.from(targetValues, [B, L])
  await using mask = Tensor.from(maskValues, [B, L])

  let t0 = performance.now()
  const lp = await tokenLogprobs(logits, targets, { temperature: 0.7, entropy: true, mask })
  const tLogp = performance.now() - t0
  const oldValues = await lp.logp.toArray() as Float32Array
  const old = Tensor.from(oldValues.map((v) => v + (random() - 0.5) * 0.3), [B, L])
  const ref = Tensor.from(oldValues.map((v) => v + (random() - 0.5) * 0.1), [B, L])
  out(`\n2. tokenLogprobs: ${tLogp.toFixed(2)} ms; first log-probs ${Array.from(oldValues.slice(0, 4), (v) => v.toFixed(3)).join(' ')}`)

  // 3. The fused GRPO loss and its gradient with respect to the logits (Tool-N1 settings).
  t0 = performance.now()
  const loss = await grpoLoss(
    { logits, targets, mask, oldLogp: old, refLogp: ref, advantages: adv.advantages },
    { temperature: 0.7, clipLow: 0.2, clipHigh: 0.2, beta: 1e-3, kl: 'k3', lossAgg: 'token-mean' },
  )
  const tLoss = performance.now() - t0
  const bytes = logits.byteLength + loss.gradLogits.byteLength
  out(`3. grpoLoss (forward + backward): ${tLoss.toFixed(2)} ms, ${(bytes / tLoss / 1e6).toFixed(2)} GB/s of logits read + gradient written`)
  for (const [k, v] of Object.entries(loss.stats)) out(`   ${k.padEnd(14)} ${Number.isInteger(v) ? v : v.toPrecision(6)}`)

  for (const t of [adv.advantages, lp.logp, lp.lse, lp.entropy!, old, ref, loss.logp, loss.gradLogits]) t.dispose()
  out(`\nlive native tensors after dispose: ${memoryInfo().cpu.tensors - 3} (plus the 3 inputs, freed on scope exit)`)
  return 0
}

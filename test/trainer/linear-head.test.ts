/**
 * The Trainer on a LinearHeadPolicy (test/helpers/linear-head-policy.ts): the loss goes through ops.linearGrpoLoss
 * from the hidden states (and the reference's log-probs through ops.linearTokenLogprobs), the logits are never
 * asked for, no [B, L, V] tensor is allocated in a step (memoryInfo().cpu.peakBytes), and the update equals the
 * one the unfused path (logits → grpoLoss → backward) makes.
 */
import t from 'tap'
import { Trainer, presets, memoryInfo, resetPeakMemory, hasLinearHead, type TrainerOptions, type TrainerPrompt } from '../../lib/index.js'
import { TinyLinearHeadPolicy } from '../helpers/linear-head-policy.js'
import type { PolicyBatch } from '../../lib/policy.js'
import type { Tensor } from '../../lib/tensor.js'

const EOS = 0
const prompts: TrainerPrompt[] = [1, 2, 3].map((p) => ({ tokens: [p] }))
const reward = (_text: string, prompt: TrainerPrompt, tokens: Int32Array) => ({ score: tokens[0] === (prompt.tokens as number[])[0]! + 3 ? 1 : 0 })

function makeTrainer(policy: TinyLinearHeadPolicy, options: Partial<TrainerOptions> = {}): Trainer {
  return new Trainer({
    ...presets.toolN1,
    temperature: 1,
    policy,
    decode: (tokens) => Array.from(tokens).join(','),
    reward,
    stop: [EOS],
    maxNewTokens: 3,
    optimizer: { lr: 0.05, eps: 1e-5 },
    seed: 3,
    ...options,
  })
}

/** The same policy with the linear-head methods hidden: the Trainer takes the logits path. */
class LogitsOnly extends TinyLinearHeadPolicy {
  declare hiddenStates: never
  declare backwardHidden: never
}
Object.defineProperty(LogitsOnly.prototype, 'hiddenStates', { value: undefined })
Object.defineProperty(LogitsOnly.prototype, 'backwardHidden', { value: undefined })

t.test('the Trainer takes the fused linear path for a LinearHeadPolicy and never asks for logits', async (t) => {
  await using policy = new TinyLinearHeadPolicy(8, 6, 1)
  t.ok(hasLinearHead(policy), 'hasLinearHead')
  await using trainer = makeTrainer(policy, { beta: 0.05, epochs: 2, miniBatches: 2 })
  const result = await trainer.train(prompts, { steps: 3, batchSize: 3 })
  t.equal(result.steps.length, 3)
  for (const m of result.steps) t.ok(Number.isFinite(m.loss) && Number.isFinite(m.kl) && Number.isFinite(m.gradNorm), `step ${m.step}: finite loss ${m.loss}, kl ${m.kl}`)
  t.equal(policy.logitsCalls, 0, 'policy.logits was never called')
  t.ok(policy.hiddenCalls > 0, 'policy.hiddenStates was called')
  t.ok(result.steps.some((s) => s.kl !== 0), 'the reference log-probs (linearTokenLogprobs) feed the KL term')
  const sup = await trainer.supervisedStep([{ prompt: [1], completion: [4, EOS] }])
  t.ok(Number.isFinite(sup.loss), 'supervisedStep goes through the fused path too')
  t.equal(policy.logitsCalls, 0, 'still no logits')
})

t.test('one step gives the same update as the logits path', async (t) => {
  await using fused = new TinyLinearHeadPolicy(8, 6, 7)
  await using plain = new LogitsOnly(8, 6, 7)
  t.notOk(hasLinearHead(plain), 'the comparison policy has no linear head')
  await using a = makeTrainer(fused, { beta: 0.1, entropyCoef: 0.01 })
  await using b = makeTrainer(plain, { beta: 0.1, entropyCoef: 0.01 })
  const ma = await a.step(prompts)
  const mb = await b.step(prompts)
  t.ok(Math.abs(ma.loss - mb.loss) <= 1e-5 * Math.max(1, Math.abs(mb.loss)), `loss ${ma.loss} vs ${mb.loss}`)
  t.ok(Math.abs(ma.gradNorm - mb.gradNorm) <= 1e-4 * Math.max(1e-3, mb.gradNorm), `gradNorm ${ma.gradNorm} vs ${mb.gradNorm}`)
  for (const [i, p] of fused.parameters().entries()) {
    const x = (await p.value.toArray()) as Float32Array
    const y = (await plain.parameters()[i]!.value.toArray()) as Float32Array
    let worst = 0
    for (let k = 0; k < x.length; k++) worst = Math.max(worst, Math.abs(x[k]! - y[k]!))
    t.ok(worst <= 1e-5, `${p.name}: the updated parameters agree (max difference ${worst})`)
  }
  t.ok(plain.logitsCalls > 0, 'the comparison policy went through logits')
})

t.test('no [B, L, V] tensor is allocated in a step (memoryInfo peak)', async (t) => {
  // A vocabulary large enough that one [B, L, V] f32 tensor dwarfs everything else a step allocates.
  const V = 100000
  const H = 4
  await using policy = new TinyLinearHeadPolicy(V, H, 5)
  await using trainer = makeTrainer(policy, { beta: 0, maxNewTokens: 4, groupSize: 4, optimizer: { lr: 0.01 } })
  const step = async () => {
    await trainer.step(prompts)
  }
  await step() // warm: the optimizer's moments and the GEMM buffers exist from here on
  // the size of the logits of the step's batch: 3 prompts × 4 samples × up to 4 positions
  const logitsBytes = 3 * 4 * 1 * V * 4
  const before = memoryInfo().cpu
  resetPeakMemory()
  await step()
  const extra = memoryInfo().cpu.peakBytes - (before.bytes + before.scratchBytes)
  t.comment(`peak extra memory in a step: ${extra} bytes; one position's [B, 1, V] logits alone: ${logitsBytes}`)
  t.ok(extra < logitsBytes, `the step's peak extra memory (${extra} B) is below even a single-position logits tensor (${logitsBytes} B)`)
  t.equal(policy.logitsCalls, 0, 'no logits')
})

export type { PolicyBatch, Tensor }

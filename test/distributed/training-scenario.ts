/**
 * The training run that training.test.ts compares across world sizes: a LogLinearPolicy learning to count up
 * from the prompt's last token, with everything that has to be global in a data-parallel run switched on: a
 * reference policy and k3 KL, `scale: 'batch'` advantages, two micro-batches, a supervised warm start, sampled
 * (not greedy) evaluation across chunk boundaries, and a checkpoint written, read back into a fresh trainer and
 * trained on; and issue 14's per-completion features (two rewards normalized per group, the overlong penalty,
 * truncated completions masked out). The policy reports its gradients through BackwardOptions.onGradients and
 * the buckets are tiny, so the bucket-by-bucket all-reduce runs too.
 *
 * Imported by the test for the one-process run; run by mpirun for the others (argv: mode, checkpoint dir, out file).
 */
import { writeFileSync } from 'node:fs'
import { LogLinearPolicy } from '../../lib/log-linear-policy.js'
import type { BackwardOptions, PolicyBatch } from '../../lib/policy.js'
import type { Tensor } from '../../lib/tensor.js'
import { Trainer, type TrainerPrompt } from '../../lib/trainer.js'

export type Mode = 'single' | 'dp' | 'zero'

/** Reports the bias, then the weight, as complete (both are finished by one op, so this only exercises the order). */
class ReportingPolicy extends LogLinearPolicy {
  override async backward(batch: PolicyBatch, gradLogits: Tensor, options?: BackwardOptions): Promise<void> {
    await super.backward(batch, gradLogits)
    options?.onGradients?.(['bias'])
    options?.onGradients?.(['weight'])
  }
}

function countUp(_text: string, prompt: TrainerPrompt, tokens: Int32Array): number {
  let last = (prompt.tokens as number[]).at(-1)!
  let good = 0
  for (const t of tokens) if (t === last + 1 || t === 0) (good++, (last = t))
  return good / tokens.length
}

function trainer(mode: Mode): Trainer {
  const policy = new ReportingPolicy({ vocabSize: 12, hashSize: 257, device: 'cpu' })
  return new Trainer({
    policy,
    decode: (tokens) => Array.from(tokens).join(' '),
    // Issue 14's per-completion features must split across ranks too: two rewards normalized per group (GDPO),
    // the overlong penalty, and truncated completions masked out of the loss.
    rewards: [
      { name: 'count-up', fn: countUp },
      { name: 'short', fn: (_text, _prompt, tokens) => (tokens.length <= 3 ? 1 : 0), weight: 0.5 },
    ],
    rewardAggregation: 'normalize-then-sum',
    overlongPenalty: { buffer: 2 },
    maskTruncated: true,
    stop: [0],
    maxNewTokens: 6,
    groupSize: 4,
    beta: 0.01,
    kl: 'k3',
    scale: 'batch',
    miniBatches: 2,
    // eps well above the gradients' rounding noise: Adam would otherwise turn the last-bit differences of a
    // differently ordered sum into visible parameter differences (lr * noise / eps).
    optimizer: { lr: 0.05, eps: 1e-3 },
    seed: 3,
    distributed: mode === 'single' ? false : { zero: mode === 'zero' ? 1 : 0, bucketMB: 1e-4, timeout: 900 },
  })
}

export interface ScenarioResult {
  rank: number
  size: number
  warmStart: object
  steps: object[]
  evaluation: object
  resumed: object
  params: Record<string, number[]>
}

export async function runScenario(mode: Mode, checkpointDir: string): Promise<ScenarioResult> {
  const prompts = Array.from({ length: 9 }, (_, i) => ({ tokens: [1 + (i % 9), 2 + (i % 7)] }))
  const first = trainer(mode)
  try {
    const { time: _t, ...warmStart } = await first.supervisedStep(prompts.slice(0, 6).map((p) => ({ prompt: p.tokens, completion: [p.tokens[1]! + 1, 0] })))
    const run = await first.train(prompts, { steps: 4, batchSize: 6 })
    const { time: _e, ...evaluation } = await first.evaluate(prompts, { greedy: false, n: 3, batchSize: 4 })
    await first.saveCheckpoint(checkpointDir)
    const second = trainer(mode)
    try {
      await second.loadCheckpoint(checkpointDir)
      const { time: _r, tokensPerSecond: _s, ...resumed } = await second.step(prompts.slice(2, 8))
      const params: Record<string, number[]> = {}
      for (const p of second.policy.parameters()) params[p.name] = Array.from(await p.value.toFloat32Array())
      return {
        rank: first.dataParallel?.rank ?? 0,
        size: first.dataParallel?.size ?? 1,
        warmStart,
        steps: run.steps.map(({ time: _x, tokensPerSecond: _y, ...m }) => m),
        evaluation,
        resumed,
        params,
      }
    } finally {
      second.policy.dispose()
      second.dispose()
    }
  } finally {
    first.policy.dispose()
    first.dispose()
  }
}

if (process.argv[1] === import.meta.filename) {
  const [mode, checkpointDir, out] = process.argv.slice(2)
  const result = await runScenario(mode as Mode, checkpointDir!)
  writeFileSync(`${out}.rank${result.rank}`, JSON.stringify(result))
}

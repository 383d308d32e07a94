/**
 * The README's worked example: a Policy of one's own (a bigram table), built on the model ops, trained by the
 * Trainer. If this file needs a change, the README's copy does too.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import {
  Tensor,
  Trainer,
  modelOps,
  readSafetensors,
  writeSafetensors,
  type Policy,
  type PolicyBatch,
  type PolicyParameter,
  type SampleOptions,
  type SampledCompletion,
} from '../../lib/index.js'

// ---- README example begins ----
/** Logits of the next token = the row of the previous token (the last prompt token at the first position). */
class BigramPolicy implements Policy {
  readonly device = 'cpu' as const
  disposed = false
  #table: Tensor // [V, V]
  #grad: Tensor | null

  constructor(readonly vocabSize: number, trainable = true) {
    this.#table = Tensor.zeros([vocabSize, vocabSize], { device: this.device })
    this.#grad = trainable ? Tensor.zeros([vocabSize, vocabSize], { device: this.device }) : null
  }

  /** The previous token of every completion position, as [B, L, 1] feature ids (-1 past the end). */
  #ids(batch: PolicyBatch): Tensor {
    const L = batch.length
    const ids = new Int32Array(batch.completions.length * L).fill(-1)
    batch.completions.forEach((c, b) => {
      for (let l = 0; l < c.length; l++) ids[b * L + l] = l === 0 ? (batch.prompts[b]!.at(-1) ?? 0) : c[l - 1]!
    })
    return Tensor.from(ids, [batch.completions.length, L, 1], { device: this.device })
  }

  async logits(batch: PolicyBatch): Promise<Tensor> {
    using ids = this.#ids(batch)
    return await modelOps.embeddingBagForward(this.#table, ids)
  }

  async backward(batch: PolicyBatch, gradLogits: Tensor): Promise<void> {
    using ids = this.#ids(batch)
    await modelOps.embeddingBagBackward(gradLogits, ids, this.#grad!)
  }

  parameters(): PolicyParameter[] {
    return [{ name: 'table', value: this.#table, grad: this.#grad }]
  }

  async zeroGrad(): Promise<void> {
    if (this.#grad) await modelOps.zeroTensors([this.#grad])
  }

  async sample(prompts: readonly ArrayLike<number>[], o: SampleOptions = {}): Promise<SampledCompletion[]> {
    const n = o.n ?? 1
    const rows = prompts.flatMap((p, i) => Array.from({ length: n }, (_, j) => ({ prompt: i, sample: j, last: p[p.length - 1] ?? 0, tokens: [] as number[], logprobs: [] as number[], done: false })))
    for (let step = 0; step < (o.maxNewTokens ?? 64) && rows.some((r) => !r.done); step++) {
      const active = rows.filter((r) => !r.done)
      using ids = Tensor.from(Int32Array.from(active, (r) => r.last), [active.length, 1])
      using streams = Tensor.from(Int32Array.from(active, (r) => rows.indexOf(r)), [active.length])
      using logits = await modelOps.embeddingBagForward(this.#table, ids)
      const drawn = await modelOps.sampleTokens(logits, { temperature: o.temperature, topP: o.topP, greedy: o.greedy, seed: o.seed, step, streams })
      using tokens = drawn.tokens
      using logp = drawn.logp
      const [tv, lv] = [tokens.toArraySync(), logp.toArraySync()]
      active.forEach((r, i) => {
        r.tokens.push(tv[i]!)
        r.logprobs.push(lv[i]!)
        r.last = tv[i]!
        r.done = (o.stop ?? []).includes(tv[i]!)
      })
    }
    return rows.map((r) => ({ prompt: r.prompt, sample: r.sample, tokens: Int32Array.from(r.tokens), logprobs: Float32Array.from(r.logprobs), finishReason: r.done ? 'stop' : 'length' }))
  }

  async clone(): Promise<BigramPolicy> {
    const copy = new BigramPolicy(this.vocabSize, false)
    copy.#table.dispose()
    copy.#table = Tensor.from(await this.#table.toArray(), this.#table.shape, { device: this.device })
    return copy
  }

  async save(path: string): Promise<void> {
    await writeSafetensors(path, { table: this.#table })
  }

  async load(path: string): Promise<void> {
    const { table } = (await readSafetensors(path)).tensors
    this.#table.dispose()
    this.#table = Tensor.from(table!.data, table!.shape, { device: this.device })
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.#table.dispose()
    this.#grad?.dispose()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose()
  }
}

// Reward: completions that count up from the prompt's last token (3 → 4 → 5 …) until the stop token 0.
async function trainBigram(): Promise<{ before: number; after: number }> {
  await using policy = new BigramPolicy(10)
  await using trainer = new Trainer({
    policy,
    decode: (tokens) => Array.from(tokens).join(' '),
    reward: (_text, prompt, tokens) => {
      let last = (prompt.tokens as number[]).at(-1)!
      let good = 0
      for (const t of tokens) if (t === last + 1 || t === 0) (good++, (last = t))
      return good / tokens.length
    },
    groupSize: 5,
    stop: [0],
    maxNewTokens: 4,
    optimizer: { lr: 0.1, eps: 1e-5 },
  })
  const prompts = [1, 2, 3, 4].map((p) => ({ tokens: [p] }))
  const before = (await trainer.evaluate(prompts, { greedy: false, n: 10 })).reward
  await trainer.train(prompts, { steps: 40, batchSize: 4 })
  const after = (await trainer.evaluate(prompts, { greedy: false, n: 10 })).reward
  return { before, after }
}
// ---- README example ends ----

t.test('a custom Policy trains with the Trainer', async (t) => {
  const { before, after } = await trainBigram()
  t.ok(after > before + 0.3, `reward ${before} → ${after}`)
})

t.test('the custom Policy saves, loads and clones', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'node-grpo-bigram-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await using policy = new BigramPolicy(4)
  const path = join(dir, 'bigram.safetensors')
  await policy.save(path)
  await policy.load(path)
  await using copy = await policy.clone()
  t.equal(copy.parameters()[0]!.grad, null)
  await policy.zeroGrad()
  await copy.zeroGrad()
  t.equal((await policy.sample([[1]], { maxNewTokens: 2 }))[0]!.tokens.length, 2)
})

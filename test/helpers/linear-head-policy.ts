/**
 * A tiny LinearHeadPolicy for the Trainer tests: the hidden state of a position is the embedding row of the token
 * before it (the prompt's last token for position 0), and the logits are hidden · headᵀ. It implements the whole
 * Policy contract (logits/backward too, so the unfused path can be compared) with the native ops; sampling runs in
 * JavaScript on the same math. `logitsCalls` counts how often the [B, L, V] logits were asked for.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { modelOps, ops, Tensor, type HiddenStates, type LinearHeadPolicy, type PolicyBatch, type PolicyParameter, type SampleOptions, type SampledCompletion } from '../../lib/index.js'
import { Rng } from './random.js'

export class TinyLinearHeadPolicy implements LinearHeadPolicy {
  readonly device = 'cpu' as const
  logitsCalls = 0
  hiddenCalls = 0
  #embedding: Tensor
  #head: Tensor
  #gradEmbedding: Tensor | null
  #gradHead: Tensor | null
  #disposed = false

  constructor(readonly vocabSize: number, readonly hiddenSize: number, seed: number, frozen = false, values?: [Float32Array, Float32Array]) {
    const rng = new Rng(seed)
    const V = vocabSize
    const H = hiddenSize
    const e = values?.[0] ?? Float32Array.from({ length: V * H }, () => rng.normal() * 0.5)
    const w = values?.[1] ?? Float32Array.from({ length: V * H }, () => rng.normal() * 0.5)
    this.#embedding = Tensor.from(e, [V, H])
    this.#head = Tensor.from(w, [V, H])
    this.#gradEmbedding = frozen ? null : Tensor.from(new Float32Array(V * H), [V, H])
    this.#gradHead = frozen ? null : Tensor.from(new Float32Array(V * H), [V, H])
  }

  get disposed(): boolean {
    return this.#disposed
  }

  // The token before each completion position, [B, L] (0 past a completion's end: any token will do).
  #previous(batch: PolicyBatch): Int32Array {
    const L = batch.length
    const ids = new Int32Array(batch.completions.length * L)
    batch.completions.forEach((c, b) => {
      const prompt = batch.prompts[b]!
      for (let l = 0; l < Math.min(L, c.length); l++) ids[b * L + l] = l === 0 ? prompt[prompt.length - 1] ?? 0 : c[l - 1]!
    })
    return ids
  }

  async hiddenStates(batch: PolicyBatch): Promise<HiddenStates> {
    this.hiddenCalls++
    using ids = Tensor.from(this.#previous(batch), [batch.completions.length * batch.length])
    const hidden = await modelOps.embedding(this.#embedding, ids)
    return { hidden, head: { weight: this.#head, gradWeight: this.#gradHead } }
  }

  async backwardHidden(batch: PolicyBatch, gradHidden: Tensor): Promise<void> {
    if (!this.#gradEmbedding) return
    using ids = Tensor.from(this.#previous(batch), [batch.completions.length * batch.length])
    await modelOps.embeddingBackward(gradHidden, ids, this.#gradEmbedding)
  }

  async logits(batch: PolicyBatch): Promise<Tensor> {
    this.logitsCalls++
    using ids = Tensor.from(this.#previous(batch), [batch.completions.length, batch.length])
    using hidden = await modelOps.embedding(this.#embedding, ids)
    return modelOps.linear(hidden, this.#head, { outDtype: 'f32' })
  }

  async backward(batch: PolicyBatch, gradLogits: Tensor): Promise<void> {
    if (!this.#gradEmbedding || !this.#gradHead) return
    using ids = Tensor.from(this.#previous(batch), [batch.completions.length, batch.length])
    using hidden = await modelOps.embedding(this.#embedding, ids)
    using dx = (await modelOps.linearBackward(gradLogits, hidden, this.#head, { gradWeight: this.#gradHead }))!
    await modelOps.embeddingBackward(dx, ids, this.#gradEmbedding)
  }

  parameters(): PolicyParameter[] {
    return [
      { name: 'embedding', value: this.#embedding, grad: this.#gradEmbedding },
      { name: 'head', value: this.#head, grad: this.#gradHead },
    ]
  }

  async zeroGrad(): Promise<void> {
    const grads = [this.#gradEmbedding, this.#gradHead].filter((g): g is Tensor => g !== null)
    if (grads.length) await modelOps.zeroTensors(grads)
  }

  async sample(prompts: readonly ArrayLike<number>[], options: SampleOptions = {}): Promise<SampledCompletion[]> {
    const n = options.n ?? 1
    const T = options.temperature ?? 1
    const stop = new Set(options.stop ?? [])
    const rng = new Rng(options.seed ?? 0)
    const V = this.vocabSize
    const H = this.hiddenSize
    const e = (await this.#embedding.toArray()) as Float32Array
    const w = (await this.#head.toArray()) as Float32Array
    const out: SampledCompletion[] = []
    prompts.forEach((prompt, p) => {
      for (let s = 0; s < n; s++) {
        const tokens: number[] = []
        const logprobs: number[] = []
        let prev = prompt[prompt.length - 1] ?? 0
        let finishReason: 'stop' | 'length' = 'length'
        for (let step = 0; step < (options.maxNewTokens ?? 64); step++) {
          const z = new Float64Array(V)
          for (let v = 0; v < V; v++) {
            let acc = 0
            for (let k = 0; k < H; k++) acc += e[prev * H + k]! * w[v * H + k]!
            z[v] = acc / T
          }
          const max = Math.max(...z)
          const lse = max + Math.log(z.reduce((a, x) => a + Math.exp(x - max), 0))
          let pick = 0
          if (options.greedy) {
            pick = z.indexOf(max)
          } else {
            let u = rng.uniform()
            for (pick = 0; pick < V - 1; pick++) {
              u -= Math.exp(z[pick]! - lse)
              if (u <= 0) break
            }
          }
          tokens.push(pick)
          logprobs.push(z[pick]! - lse)
          prev = pick
          if (stop.has(pick)) {
            finishReason = 'stop'
            break
          }
        }
        out.push({ prompt: p, sample: s, tokens: Int32Array.from(tokens), logprobs: Float32Array.from(logprobs), finishReason })
      }
    })
    return out
  }

  async clone(): Promise<TinyLinearHeadPolicy> {
    const values: [Float32Array, Float32Array] = [(await this.#embedding.toArray()) as Float32Array, (await this.#head.toArray()) as Float32Array]
    return new TinyLinearHeadPolicy(this.vocabSize, this.hiddenSize, 0, true, values)
  }

  async save(path: string): Promise<void> {
    const e = (await this.#embedding.toArray()) as Float32Array
    const w = (await this.#head.toArray()) as Float32Array
    await writeFile(path, JSON.stringify({ e: [...e], w: [...w] }))
  }

  async load(path: string): Promise<void> {
    const { e, w } = JSON.parse(await readFile(path, 'utf8')) as { e: number[]; w: number[] }
    this.#embedding.dispose()
    this.#head.dispose()
    this.#embedding = Tensor.from(Float32Array.from(e), [this.vocabSize, this.hiddenSize])
    this.#head = Tensor.from(Float32Array.from(w), [this.vocabSize, this.hiddenSize])
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    for (const t of [this.#embedding, this.#head, this.#gradEmbedding, this.#gradHead]) t?.dispose()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose()
  }
}

export { ops }

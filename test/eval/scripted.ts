/**
 * A scripted model for the evaluation tests: a Policy that answers each prompt with a completion chosen by a
 * function of the prompt's text, over a character tokenizer. Its log-probs are those of logits with a margin
 * `MARGIN` on the scripted token, so the sampler's log-probs and a forward pass agree, and a test can compute
 * them. A model folder holding `scripted.json` loads as this model through registerModelLoader, which is how the
 * CLI tests (eval --model, serve --model) get a deterministic model.
 */
import { readFile, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { Tensor } from '../../lib/index.js'
import { modelFromPolicy, registerModelLoader, type LoadedModel } from '../../lib/eval/model.js'
import type { Policy, PolicyBatch, SampleOptions, SampledCompletion } from '../../lib/policy.js'

export const MARGIN = 5

/** Characters as tokens: id 0 ends a completion; every other id is one character of `alphabet`. */
export class CharTokenizer {
  readonly chars: string[]
  readonly #ids: Map<string, number>
  constructor(alphabet: string) {
    this.chars = ['', ...new Set(alphabet)]
    this.#ids = new Map(this.chars.map((c, i) => [c, i]))
  }
  get vocabSize(): number {
    return this.chars.length
  }
  encode(text: string): Int32Array {
    return Int32Array.from([...text].map((c) => this.#ids.get(c) ?? this.#ids.get('?')!))
  }
  decode(tokens: ArrayLike<number>): string {
    let out = ''
    for (let i = 0; i < tokens.length; i++) out += this.chars[tokens[i]!] ?? ''
    return out
  }
  tokenText(id: number): string {
    return this.chars[id] ?? ''
  }
}

/** log p of the scripted token when its logit is MARGIN above V-1 zeros, at temperature T. */
export function scriptedLogprob(vocabSize: number, temperature = 1): number {
  const a = MARGIN / temperature
  return a - Math.log(Math.exp(a) + vocabSize - 1)
}

export class ScriptedPolicy implements Policy {
  readonly device = 'cpu' as const
  disposed = false
  /** Prompts of every sample() call, for tests that check batching. */
  readonly calls: number[] = []
  /** A pause in sample(), so that requests can queue up behind a call in progress. */
  delayMs = 0
  constructor(
    readonly tokenizer: CharTokenizer,
    readonly script: (prompt: string) => string,
  ) {}
  get vocabSize(): number {
    return this.tokenizer.vocabSize
  }
  #completion(prompt: ArrayLike<number>): Int32Array {
    return Int32Array.from([...this.tokenizer.encode(this.script(this.tokenizer.decode(prompt))), 0])
  }
  async logits(batch: PolicyBatch): Promise<Tensor> {
    const V = this.vocabSize
    const L = batch.length
    const values = new Float32Array(batch.prompts.length * L * V)
    batch.prompts.forEach((p, b) => {
      const want = this.#completion(p)
      for (let l = 0; l < L; l++) values[(b * L + l) * V + (want[l] ?? 0)] = MARGIN
    })
    return Tensor.from(values, [batch.prompts.length, L, V], { device: 'cpu' })
  }
  async backward(): Promise<void> {
    throw new Error('ScriptedPolicy does not train')
  }
  parameters() {
    return []
  }
  async zeroGrad(): Promise<void> {}
  async sample(prompts: readonly ArrayLike<number>[], options: SampleOptions = {}): Promise<SampledCompletion[]> {
    this.calls.push(prompts.length)
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs))
    const n = options.n ?? 1
    const max = options.maxNewTokens ?? 64
    const lp = scriptedLogprob(this.vocabSize, options.temperature ?? 1)
    return prompts.flatMap((p, i) => {
      const full = this.#completion(p)
      const tokens = full.slice(0, max)
      const stopped = tokens.length === full.length
      return Array.from({ length: n }, (_, j) => ({ prompt: i, sample: j, tokens, logprobs: new Float32Array(tokens.length).fill(lp), finishReason: stopped ? ('stop' as const) : ('length' as const) }))
    })
  }
  async clone(): Promise<ScriptedPolicy> {
    return new ScriptedPolicy(this.tokenizer, this.script)
  }
  async save(): Promise<void> {}
  async load(): Promise<void> {}
  dispose(): void {
    this.disposed = true
  }
  [Symbol.dispose](): void {
    this.dispose()
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose()
  }
}

/** The characters any test prompt or completion uses. */
export const ALPHABET = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\n\t…—éü中文'

/** A scripted LoadedModel: `answers` maps a substring of the prompt to the completion. */
export function scriptedModel(answers: readonly [string, string][], fallback = 'I cannot help with that.', name = 'scripted'): LoadedModel & { policy: ScriptedPolicy } {
  const tokenizer = new CharTokenizer(ALPHABET)
  const policy = new ScriptedPolicy(tokenizer, (prompt) => {
    // The last user turn decides (the system prompt lists every tool).
    const user = prompt.slice(Math.max(0, prompt.lastIndexOf('<|im_start|>user')))
    return answers.find(([key]) => user.includes(key))?.[1] ?? fallback
  })
  return modelFromPolicy({ name, policy, tokenizer, stop: [0], maxNewTokens: 512 }) as LoadedModel & { policy: ScriptedPolicy }
}

let registered = false
/** Lets `loadModel(dir)` read a folder with scripted.json ({"answers": [[key, completion], …]}). */
export function registerScriptedLoader(): void {
  if (registered) return
  registered = true
  registerModelLoader({
    name: 'scripted (tests)',
    async canLoad(dir) {
      try {
        return (await stat(join(dir, 'scripted.json'))).isFile()
      } catch {
        return false
      }
    },
    async load(dir, options) {
      const { answers } = JSON.parse(await readFile(join(dir, 'scripted.json'), 'utf8')) as { answers: [string, string][] }
      return scriptedModel(answers, undefined, options.name ?? basename(dir))
    },
  })
}

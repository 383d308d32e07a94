/**
 * LogLinearPolicy, the built-in trainable Policy (lib/policy.ts): a log-linear language model over hashed
 * features:
 *
 *     logits(position) = bias + Σ_{feature f active at the position} W[hash(f) mod H]
 *
 * with W an [H, V] table and these features at completion position l (c1, c2, c3: the previous completion
 * tokens; q: the last `promptWindow` prompt tokens, without `ignoreTokens` such as whitespace):
 *
 * - the context: (c1), (c1, c2), (c1, c2, c3);
 * - each prompt token paired with the context: (q_i, seen_i, c1), (q_i, c1, c2), (q_{i-1}, q_i, c1, c2),
 *   (q_i, q_{i+1}, c1, c2), where seen_i says whether q_i already occurs in the completion. This is what lets it
 *   copy a value from the request into an argument, and fill the second of two slots with the other value;
 * - each distinct token already in the completion, with its count (capped at 3), paired with c1 (so a second
 *   call need not repeat the first, and a list of calls knows when to close).
 *
 * Its forward is one embedding-bag gather, its backward one scatter-add (model-ops), and its sampling runs on
 * the policy's device. Its supervised (nll) loss is convex in W; the GRPO loss is not (the clip, the ratio and
 * the sampled data all depend on W). Small, but it learns, and it exercises every kernel.
 */
import type { Device } from './dtype.js'
import { GrpoError, fail, invalidArg, numberArray } from './errors.js'
import { embeddingBagBackward, embeddingBagForward, sampleTokens, zeroTensors } from './model-ops.js'
import { parseOptions } from './options.js'
import { SAMPLE_OPTIONS_SCHEMA, tokenIds, type Policy, type PolicyBatch, type PolicyParameter, type SampleOptions, type SampledCompletion } from './policy.js'
import { readSafetensors, writeSafetensors } from './safetensors.js'
import { Tensor, defaultDevice } from './tensor.js'

export interface LogLinearPolicyOptions {
  vocabSize: number
  /** Rows of the hashed feature table (default 32768). */
  hashSize?: number
  /** Default: the active backend's device (cuda under the CUDA backend, else cpu). */
  device?: Device
  /** Prompt tokens that take part in the prompt features, counted from the end (default 48). */
  promptWindow?: number
  /** Prompt token ids left out of the prompt features (whitespace, padding). */
  ignoreTokens?: Iterable<number>
  /**
   * A token sequence that opens the part of the prompt the features see (e.g. the start of the last user
   * turn): the window begins after its last occurrence. Default: none (the window is the prompt's tail).
   */
  windowAfter?: readonly number[]
  /** Frozen: no gradient tensors, backward() throws. Default true. */
  trainable?: boolean
}

// ---------------------------------------------------------------------------------------------------------
// Feature hashing

// Sentinels for the context before the first completion token and around the prompt window.
const START1 = -2
const START2 = -3
const START3 = -4
const EDGE = -5

const enum Kind {
  C1 = 1,
  C2,
  C3,
  PromptSeen,
  PromptContext,
  PromptPrev,
  PromptNext,
  History,
}

function fmix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h
}

/** A 32-bit key of (kind, a, b): the part of a feature that does not change from position to position. */
function key(kind: number, a: number, b: number): number {
  return fmix(Math.imul(kind, 0x27d4eb2f) ^ fmix(Math.imul(a + 7, 0x9e3779b1) ^ Math.imul(b + 7, 0x85ebca77)))
}

/**
 * Per-sequence state of the featurizer: the prompt window with its precomputed keys, and the completion so far.
 * A feature id is fmix(key ^ contextKey) reduced to [0, H): one mix per feature and position, since the
 * prompt side of every key is computed once per sequence.
 */
class SequenceState {
  readonly window: Int32Array
  readonly tokens: number[] = []
  /** Distinct completion tokens and their counts, in order of first appearance (Maps iterate in insertion order). */
  readonly seen = new Map<number, number>()
  // Keys per prompt token: (q_i, unseen), (q_i, seen), (q_i), (q_{i-1}, q_i), (q_i, q_{i+1}).
  readonly #unseen: Int32Array
  readonly #seenKey: Int32Array
  readonly #alone: Int32Array
  readonly #prev: Int32Array
  readonly #next: Int32Array
  readonly #history = new Map<number, number>()

  constructor(window: Int32Array) {
    this.window = window
    const n = window.length
    this.#unseen = new Int32Array(n)
    this.#seenKey = new Int32Array(n)
    this.#alone = new Int32Array(n)
    this.#prev = new Int32Array(n)
    this.#next = new Int32Array(n)
    for (let i = 0; i < n; i++) {
      const q = window[i]!
      this.#unseen[i] = key(Kind.PromptSeen, q, 0)
      this.#seenKey[i] = key(Kind.PromptSeen, q, 1)
      this.#alone[i] = key(Kind.PromptContext, q, 0)
      this.#prev[i] = key(Kind.PromptPrev, i > 0 ? window[i - 1]! : EDGE, q)
      this.#next[i] = key(Kind.PromptNext, q, i + 1 < n ? window[i + 1]! : EDGE)
    }
  }

  push(token: number): void {
    this.tokens.push(token)
    const count = (this.seen.get(token) ?? 0) + 1
    this.seen.set(token, count)
    // Counts (capped at 3) tell a second call from a third, or a key already filled from a fresh one.
    this.#history.set(token, key(Kind.History, token, count < 3 ? count : 3))
  }

  featureCount(): number {
    return 3 + 4 * this.window.length + this.seen.size
  }

  /** Writes the feature ids of the next position into out[at …]; returns the count. */
  features(out: Int32Array, at: number, H: number): number {
    const n = this.tokens.length
    const c1 = n >= 1 ? this.tokens[n - 1]! : START1
    const c2 = n >= 2 ? this.tokens[n - 2]! : START2
    const c3 = n >= 3 ? this.tokens[n - 3]! : START3
    const k1 = key(Kind.C1, c1, 0)
    const k12 = key(Kind.C2, c1, c2)
    const pow2 = (H & (H - 1)) === 0
    const mask = H - 1
    const id = (h: number): number => (pow2 ? fmix(h) & mask : (fmix(h) >>> 0) % H)
    let k = at
    out[k++] = id(k1)
    out[k++] = id(k12)
    out[k++] = id(key(Kind.C3, c1, c2) ^ Math.imul(c3 + 7, 0xc2b2ae3d))
    const q = this.window
    for (let i = 0; i < q.length; i++) {
      out[k++] = id((this.seen.has(q[i]!) ? this.#seenKey[i]! : this.#unseen[i]!) ^ k1)
      out[k++] = id(this.#alone[i]! ^ k12)
      // The neighbours of q_i are its cue ("from Paris", "8 people"); paired with both context tokens they
      // say which slot the cue fills.
      out[k++] = id(this.#prev[i]! ^ k12)
      out[k++] = id(this.#next[i]! ^ k12)
    }
    for (const h of this.#history.values()) out[k++] = id(h ^ k1)
    return k - at
  }
}

// ---------------------------------------------------------------------------------------------------------
// Validation helpers

function positiveInt(value: unknown, what: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || (value as number) < 1) invalidArg('a positive integer', what, value)
  return value as number
}

function checkBatch(batch: PolicyBatch, V: number): void {
  if (typeof batch !== 'object' || batch === null) invalidArg('a batch with prompts, completions and length', 'batch', batch)
  const { prompts, completions, length } = batch
  if (!Array.isArray(prompts) || !Array.isArray(completions) || prompts.length !== completions.length) {
    invalidArg('prompts and completions arrays of the same length', 'batch', batch)
  }
  if (!Number.isSafeInteger(length) || length < 0) invalidArg('a non-negative integer', 'batch.length', length)
  completions.forEach((c, b) => {
    if (!(c instanceof Int32Array)) invalidArg('an Int32Array', `batch.completions[${b}]`, c)
    if (c.length > length) fail('ERR_GRPO_SHAPE', `at most ${length} tokens (batch.length)`, `batch.completions[${b}]`, `${c.length} tokens`)
    for (let i = 0; i < c.length; i++) if (c[i]! < 0 || c[i]! >= V) invalidArg(`a token id in [0, ${V})`, `batch.completions[${b}][${i}]`, c[i])
  })
  prompts.forEach((p, b) => {
    if (!(p instanceof Int32Array)) invalidArg('an Int32Array', `batch.prompts[${b}]`, p)
  })
}

// ---------------------------------------------------------------------------------------------------------

const FORMAT = 'node-grpo/log-linear-policy'

export class LogLinearPolicy implements Policy {
  readonly vocabSize: number
  readonly hashSize: number
  readonly device: Device
  readonly promptWindow: number
  readonly ignoreTokens: ReadonlySet<number>
  readonly windowAfter: readonly number[]
  readonly trainable: boolean
  #weight: Tensor
  #bias: Tensor
  #gradWeight: Tensor | null
  #gradBias: Tensor | null
  #disposed = false
  // The feature ids of the last batch seen when the batch has no cache of its own.
  #cache: { batch: PolicyBatch; ids: Tensor } | null = null
  // Policies whose features agree (a clone and its source) share the ids in a batch's cache under this key.
  #featureKey = ''

  constructor(options: LogLinearPolicyOptions) {
    if (typeof options !== 'object' || options === null) invalidArg('an options object', 'LogLinearPolicy options', options)
    if (options.vocabSize === undefined) invalidArg('a positive integer', 'vocabSize', undefined)
    this.vocabSize = positiveInt(options.vocabSize, 'vocabSize', 1)
    this.hashSize = positiveInt(options.hashSize, 'hashSize', 32768)
    if (this.hashSize > 2 ** 31 - 1) invalidArg('an integer below 2^31', 'hashSize', this.hashSize)
    if (this.hashSize * this.vocabSize > 2 ** 30) {
      invalidArg('a table of at most 2^30 weights (hashSize × vocabSize)', 'hashSize', `${this.hashSize} × vocabSize ${this.vocabSize}`)
    }
    this.promptWindow = options.promptWindow === 0 ? 0 : positiveInt(options.promptWindow, 'promptWindow', 48)
    const device = options.device ?? defaultDevice()
    if (device !== 'cpu' && device !== 'cuda') invalidArg("'cpu' or 'cuda'", 'device', device)
    this.device = device
    const ignore = new Set<number>()
    const ignored = options.ignoreTokens ?? []
    if (typeof ignored !== 'object' || ignored === null || typeof (ignored as Iterable<number>)[Symbol.iterator] !== 'function') {
      invalidArg('an iterable of token ids', 'ignoreTokens', ignored)
    }
    for (const t of ignored) {
      if (!Number.isInteger(t)) invalidArg('an integer token id', 'ignoreTokens[]', t)
      ignore.add(t)
    }
    this.ignoreTokens = ignore
    const after = options.windowAfter ?? []
    if (!Array.isArray(after) || after.some((t) => !Number.isInteger(t))) invalidArg('an array of token ids', 'windowAfter', after)
    this.windowAfter = Object.freeze([...after])
    if (options.trainable !== undefined && typeof options.trainable !== 'boolean') invalidArg('a boolean', 'trainable', options.trainable)
    this.trainable = options.trainable ?? true
    // Zero weights: the uniform distribution, the natural start of a log-linear model (its nll loss is convex).
    this.#weight = Tensor.zeros([this.hashSize, this.vocabSize], { device })
    this.#bias = Tensor.zeros([this.vocabSize], { device })
    const { hashSize, promptWindow, ignoreTokens, windowAfter } = this.config
    this.#featureKey = `log-linear-features:${JSON.stringify({ hashSize, promptWindow, ignoreTokens: ignoreTokens.sort((a, b) => a - b), windowAfter })}`
    this.#gradWeight = this.trainable ? Tensor.zeros([this.hashSize, this.vocabSize], { device }) : null
    this.#gradBias = this.trainable ? Tensor.zeros([this.vocabSize], { device }) : null
  }

  /** Loads a policy saved with save(); `device` and `trainable` as in the constructor. */
  static async fromFile(path: string, options: { device?: Device; trainable?: boolean } = {}): Promise<LogLinearPolicy> {
    const file = await readSafetensors(path)
    const config = LogLinearPolicy.#config(file.metadata, path)
    const policy = new LogLinearPolicy({ ...config, ...options })
    try {
      policy.#assign(file.tensors, path)
    } catch (error) {
      policy.dispose()
      throw error
    }
    return policy
  }

  get disposed(): boolean {
    return this.#disposed
  }

  /** The options that define the model's function (saved with it). */
  get config(): Required<Omit<LogLinearPolicyOptions, 'device' | 'trainable' | 'ignoreTokens' | 'windowAfter'>> & {
    ignoreTokens: number[]
    windowAfter: number[]
  } {
    return {
      vocabSize: this.vocabSize,
      hashSize: this.hashSize,
      promptWindow: this.promptWindow,
      ignoreTokens: [...this.ignoreTokens],
      windowAfter: [...this.windowAfter],
    }
  }

  parameters(): PolicyParameter[] {
    this.#live()
    return [
      { name: 'weight', value: this.#weight, grad: this.#gradWeight },
      { name: 'bias', value: this.#bias, grad: this.#gradBias },
    ]
  }

  async zeroGrad(): Promise<void> {
    this.#live()
    if (this.#gradWeight && this.#gradBias) await zeroTensors([this.#gradWeight, this.#gradBias])
  }

  /** The prompt tokens the features see: the last `promptWindow` ones after `windowAfter` that are not ignored. */
  promptContext(prompt: ArrayLike<number>): Int32Array {
    numberArray(prompt, 'prompt')
    const kept: number[] = []
    const m = this.windowAfter.length
    let first = 0
    if (m > 0) {
      for (let i = prompt.length - m; i >= 0; i--) {
        let match = true
        for (let j = 0; j < m && match; j++) match = prompt[i + j] === this.windowAfter[j]
        if (match) {
          first = i + m
          break
        }
      }
    }
    for (let i = prompt.length - 1; i >= first && kept.length < this.promptWindow; i--) {
      if (!this.ignoreTokens.has(prompt[i]!)) kept.push(prompt[i]!)
    }
    return Int32Array.from(kept.reverse())
  }

  /** Feature ids of every completion position of the batch: i32 [B, L, F], -1 padded. */
  features(batch: PolicyBatch): Tensor {
    checkBatch(batch, this.vocabSize)
    const B = batch.prompts.length
    const L = batch.length
    const states = batch.prompts.map((p) => new SequenceState(this.promptContext(p)))
    let F = 1
    for (let b = 0; b < B; b++) {
      const len = batch.completions[b]!.length
      // The widest position is the last: the history only grows.
      const distinct = new Set(batch.completions[b]!.subarray(0, Math.max(0, len - 1))).size
      if (len > 0) F = Math.max(F, 3 + 4 * states[b]!.window.length + distinct)
    }
    const ids = new Int32Array(B * L * F).fill(-1)
    for (let b = 0; b < B; b++) {
      const c = batch.completions[b]!
      const s = states[b]!
      for (let l = 0; l < c.length; l++) {
        s.features(ids, (b * L + l) * F, this.hashSize)
        s.push(c[l]!)
      }
    }
    return Tensor.from(ids, [B, L, F], { device: this.device })
  }

  #featuresFor(batch: PolicyBatch): Tensor {
    if (typeof batch !== 'object' || batch === null) invalidArg('a batch with prompts, completions and length', 'batch', batch)
    if (batch.cache instanceof Map) {
      const key = this.#featureKey
      const hit = batch.cache.get(key)
      if (hit && !hit.disposed) return hit
      const ids = this.features(batch)
      batch.cache.set(key, ids)
      return ids
    }
    if (this.#cache && this.#cache.batch === batch && !this.#cache.ids.disposed) return this.#cache.ids
    this.#cache?.ids.dispose()
    this.#cache = null
    const ids = this.features(batch)
    this.#cache = { batch, ids }
    return ids
  }

  async logits(batch: PolicyBatch): Promise<Tensor> {
    this.#live()
    return embeddingBagForward(this.#weight, this.#featuresFor(batch), { bias: this.#bias })
  }

  async backward(batch: PolicyBatch, gradLogits: Tensor): Promise<void> {
    this.#live()
    if (!this.#gradWeight || !this.#gradBias) {
      throw new GrpoError('Expected a trainable policy for backward but received a frozen one (a clone or trainable: false)', 'ERR_GRPO_INVALID_ARG')
    }
    const ids = this.#featuresFor(batch)
    const mask = batch.mask && batch.mask.shape.length === 2 && batch.mask.shape[0] === ids.shape[0] && batch.mask.shape[1] === ids.shape[1] ? batch.mask : undefined
    await embeddingBagBackward(gradLogits, ids, this.#gradWeight, { gradBias: this.#gradBias, mask })
  }

  async sample(prompts: readonly ArrayLike<number>[], options: SampleOptions = {}): Promise<SampledCompletion[]> {
    this.#live()
    if (!Array.isArray(prompts)) invalidArg('an array of prompts (arrays of token ids)', 'prompts', prompts)
    return this.#sample(prompts, null, options)
  }

  /**
   * Samples after partial completions (the next turn of a multi-turn trajectory): the features see
   * `completions[i]` as completion tokens, as `logits()` does for the whole trajectory, so the sampled log-probs
   * are the ones the loss computes.
   */
  async sampleContinuations(prompts: readonly ArrayLike<number>[], completions: readonly ArrayLike<number>[], options: SampleOptions = {}): Promise<SampledCompletion[]> {
    this.#live()
    if (!Array.isArray(prompts)) invalidArg('an array of prompts (arrays of token ids)', 'prompts', prompts)
    if (!Array.isArray(completions) || completions.length !== prompts.length) {
      invalidArg(`an array of ${prompts.length} partial completions (one per prompt)`, 'completions', completions)
    }
    return this.#sample(prompts, completions, options)
  }

  async #sample(prompts: readonly ArrayLike<number>[], prefixes: readonly ArrayLike<number>[] | null, options: SampleOptions): Promise<SampledCompletion[]> {
    const o = parseOptions(SAMPLE_OPTIONS_SCHEMA, options, 'sample options')
    const V = this.vocabSize
    const n = o.n!
    const maxNewTokens = o.maxNewTokens!
    const seed = o.seed!
    const streamOffset = o.streamOffset!
    const stop = new Set(tokenIds(o.stop, 'stop', V))
    const sampling = { temperature: o.temperature, topP: o.topP, greedy: o.greedy, seed }
    if (streamOffset + prompts.length * n > 2 ** 31 - 1) invalidArg('fewer than 2^31 rows', 'streamOffset + prompts × n', streamOffset + prompts.length * n)
    const windows = prompts.map((p, i) => this.promptContext(tokenIds(p, `prompts[${i}]`, V)))
    const prefixTokens = prefixes?.map((c, i) => tokenIds(c, `completions[${i}]`, V))
    const rows: { state: SequenceState; start: number; logprobs: number[]; finish: 'stop' | 'length' | null }[] = []
    for (let p = 0; p < prompts.length; p++) {
      for (let j = 0; j < n; j++) {
        const state = new SequenceState(windows[p]!)
        for (const t of prefixTokens?.[p] ?? []) state.push(t)
        rows.push({ state, start: state.tokens.length, logprobs: [], finish: null })
      }
    }
    let active = rows.map((_, r) => r)
    for (let step = 0; step < maxNewTokens && active.length > 0; step++) {
      let F = 1
      for (const r of active) F = Math.max(F, rows[r]!.state.featureCount())
      const idValues = new Int32Array(active.length * F).fill(-1)
      active.forEach((r, i) => rows[r]!.state.features(idValues, i * F, this.hashSize))
      const ids = Tensor.from(idValues, [active.length, F], { device: this.device })
      const streams = Tensor.from(Int32Array.from(active, (r) => r + streamOffset), [active.length], { device: this.device })
      let logits: Tensor | undefined
      let drawn: { tokens: Tensor; logp: Tensor } | undefined
      let tokens: Int32Array, logp: Float32Array
      try {
        logits = await embeddingBagForward(this.#weight, ids, { bias: this.#bias })
        drawn = await sampleTokens(logits, { ...sampling, step, streams })
        tokens = (await drawn.tokens.toArray()) as Int32Array
        logp = (await drawn.logp.toArray()) as Float32Array
      } finally {
        for (const t of [ids, streams, logits, drawn?.tokens, drawn?.logp]) t?.dispose()
      }
      const next: number[] = []
      active.forEach((r, i) => {
        const row = rows[r]!
        row.state.push(tokens[i]!)
        row.logprobs.push(logp[i]!)
        if (stop.has(tokens[i]!)) row.finish = 'stop'
        else if (step + 1 === maxNewTokens) row.finish = 'length'
        else next.push(r)
      })
      active = next
    }
    return rows.map((row, r) => ({
      prompt: Math.floor(r / n),
      sample: r % n,
      tokens: Int32Array.from(row.state.tokens.slice(row.start)),
      logprobs: Float32Array.from(row.logprobs),
      finishReason: row.finish ?? 'length',
    }))
  }

  async clone(): Promise<LogLinearPolicy> {
    this.#live()
    const copy = new LogLinearPolicy({ ...this.config, device: this.device, trainable: false })
    copy.#weight.dispose()
    copy.#bias.dispose()
    copy.#weight = await this.#weight.to(this.device)
    copy.#bias = await this.#bias.to(this.device)
    return copy
  }

  async save(path: string): Promise<void> {
    this.#live()
    await writeSafetensors(path, { weight: this.#weight, bias: this.#bias }, { format: FORMAT, config: JSON.stringify(this.config) })
  }

  /** Replaces the parameters with those of a file saved by a policy of the same configuration. */
  async load(path: string): Promise<void> {
    this.#live()
    const file = await readSafetensors(path)
    const config = LogLinearPolicy.#config(file.metadata, path)
    const mine = this.config
    for (const key of ['vocabSize', 'hashSize', 'promptWindow'] as const) {
      if (config[key] !== mine[key]) fail('ERR_GRPO_SHAPE', `${key} ${mine[key]} (this policy's)`, `${key} of ${path}`, config[key])
    }
    // Weights learned on other features would load without error and mean nothing.
    const sorted = (a: readonly number[] | undefined) => JSON.stringify([...(a ?? [])].sort((x, y) => x - y))
    if (sorted(config.ignoreTokens ? [...config.ignoreTokens] : []) !== sorted(mine.ignoreTokens)) {
      invalidArg(`ignoreTokens ${sorted(mine.ignoreTokens)} (this policy's)`, `ignoreTokens of ${path}`, sorted(config.ignoreTokens ? [...config.ignoreTokens] : []))
    }
    if (JSON.stringify(config.windowAfter ?? []) !== JSON.stringify(mine.windowAfter)) {
      invalidArg(`windowAfter ${JSON.stringify(mine.windowAfter)} (this policy's)`, `windowAfter of ${path}`, JSON.stringify(config.windowAfter ?? []))
    }
    this.#assign(file.tensors, path)
  }

  static #config(metadata: Record<string, string>, path: string): LogLinearPolicyOptions & { vocabSize: number; hashSize: number; promptWindow: number } {
    if (metadata.format !== FORMAT) invalidArg(`a file saved by LogLinearPolicy (format ${FORMAT})`, path, metadata.format)
    let config: unknown
    try {
      config = JSON.parse(metadata.config ?? '')
    } catch {
      invalidArg('JSON policy config in the metadata', path, metadata.config)
    }
    return config as LogLinearPolicyOptions & { vocabSize: number; hashSize: number; promptWindow: number }
  }

  #assign(tensors: Record<string, { dtype: string; shape: number[]; data: ArrayLike<number> }>, path: string): void {
    const want = { weight: [this.hashSize, this.vocabSize], bias: [this.vocabSize] }
    for (const [name, shape] of Object.entries(want)) {
      const t = tensors[name]
      if (!t) invalidArg(`a tensor named ${name}`, path, Object.keys(tensors).join(', ') || 'no tensors')
      if (t.dtype !== 'f32') fail('ERR_GRPO_DTYPE', 'an f32 tensor', `${name} of ${path}`, `a ${t.dtype} tensor`)
      if (t.shape.join() !== shape.join()) fail('ERR_GRPO_SHAPE', `shape [${shape.join(', ')}]`, `${name} of ${path}`, `shape [${t.shape.join(', ')}]`)
    }
    const weight = Tensor.from(tensors.weight!.data, want.weight, { device: this.device })
    const bias = Tensor.from(tensors.bias!.data, want.bias, { device: this.device })
    this.#weight.dispose()
    this.#bias.dispose()
    this.#weight = weight
    this.#bias = bias
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    this.#cache?.ids.dispose()
    this.#cache = null
    for (const t of [this.#weight, this.#bias, this.#gradWeight, this.#gradBias]) t?.dispose()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose()
  }

  #live(): void {
    if (this.#disposed) throw new GrpoError('Expected a live policy for this operation but received a disposed LogLinearPolicy', 'ERR_GRPO_DISPOSED')
  }
}

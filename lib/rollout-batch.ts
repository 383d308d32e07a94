/**
 * RolloutBatch: completions and their rewards, as the padded [B, L] tensors the loss reads, on the policy's
 * device. Built from rollouts sampled here (Trainer.step) or elsewhere (an inference server that returned the
 * sampled tokens' log-probs): `RolloutBatch.fromRollouts(...)` validates everything and computes the
 * group-relative advantages.
 *
 * Layout: row b holds completion b left-aligned; `targets[b, l]` is its l-th token (0 past its end),
 * `mask[b, l]` is 1 on its tokens, `oldLogp[b, l]` the sampling log-prob of that token, `advantages[b]`
 * its advantage. `refLogp` is attached later by whoever computes it (the Trainer, from the reference policy).
 * Host copies are kept, so `split()` cuts micro-batches without reading the device back.
 */
import type { Device } from './dtype.js'
import { GrpoError, fail, invalidArg } from './errors.js'
import { groupAdvantages } from './ops.js'
import { tokenIds, type PolicyBatch } from './policy.js'
import { Tensor, defaultDevice } from './tensor.js'

export interface Rollout {
  /** Prompt token ids. */
  prompt: ArrayLike<number>
  /** Completion token ids (the stop token included, when the completion ended on one). */
  completion: ArrayLike<number>
  /** Log-prob of each completion token under the sampling policy, at the sampling temperature. */
  logprobs?: ArrayLike<number>
  reward: number
  /** Completions of one prompt share a group id (any integer). */
  group: number
  /**
   * Which completion tokens take part in the loss (1) and which do not (0): tool responses in a multi-turn
   * trajectory, a completion cut at the length limit. Default: every token.
   */
  mask?: ArrayLike<number>
}

export interface RolloutBatchOptions {
  /** Default: the active backend's device. */
  device?: Device
  /** The longest completion allowed (default: no limit). L is the longest completion of the batch. */
  maxLength?: number
  /** When given, every token id must lie in [0, vocabSize). */
  vocabSize?: number
  /** Advantage options of ops.groupAdvantages. */
  baseline?: 'mean' | 'leave-one-out'
  scale?: 'group' | 'batch' | 'none'
  eps?: number
  /**
   * Advantages computed elsewhere, one per rollout, with the statistics of their groups: a data-parallel
   * trainer computes them over the whole batch of every rank (so `scale: 'batch'` means the same as on one
   * process) and passes each rank its share. The advantage options are then unused.
   */
  advantages?: { values: ArrayLike<number>; groupStats: GroupStatistics }
}

export interface SupervisedExample {
  prompt: ArrayLike<number>
  completion: ArrayLike<number>
  /** The tokens the nll covers (1) and those it skips (0), e.g. tool responses. Default: every token. */
  mask?: ArrayLike<number>
}

interface HostData {
  prompts: Int32Array[]
  completions: Int32Array[]
  L: number
  rewards: Float64Array
  groupIds: Int32Array
  advantages: Float32Array
  oldLogp: Float32Array | null
  /** Per-token loss masks (null: every completion token counts). */
  masks: Uint8Array[] | null
}

export interface GroupStatistics {
  groupIds: Int32Array
  mean: Float64Array
  std: Float64Array
  /** Share of groups whose rewards are all equal (they carry no learning signal). */
  zeroStdFraction: number
}

/** A 0/1 mask of one completion (`length` entries), or null when every token counts (and none is 0). */
function tokenMask(value: unknown, length: number, what: string): Uint8Array | null {
  if (value === undefined) return null
  const isArrayLike = Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView))
  if (!isArrayLike) invalidArg('an array of 0/1 mask values', what, value)
  const a = value as ArrayLike<number>
  if (a.length !== length) fail('ERR_GRPO_SHAPE', `${length} mask values (one per completion token)`, what, `${a.length} values`)
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) {
    const m = a[i]
    if (m !== 0 && m !== 1) invalidArg('0 or 1', `${what}[${i}]`, m)
    out[i] = m
  }
  return out
}

function checkOptions(options: RolloutBatchOptions): { device: Device; maxLength: number; vocabSize: number | undefined } {
  if (typeof options !== 'object' || options === null) invalidArg('an options object', 'RolloutBatch options', options)
  const device = options.device ?? defaultDevice()
  if (device !== 'cpu' && device !== 'cuda') invalidArg("'cpu' or 'cuda'", 'device', device)
  const maxLength = options.maxLength ?? Infinity
  if (maxLength !== Infinity && (!Number.isSafeInteger(maxLength) || maxLength < 1)) invalidArg('a positive integer', 'maxLength', maxLength)
  const V = options.vocabSize
  if (V !== undefined && (!Number.isSafeInteger(V) || V < 1)) invalidArg('a positive integer', 'vocabSize', V)
  return { device, maxLength, vocabSize: V }
}

export class RolloutBatch implements PolicyBatch, Disposable, AsyncDisposable {
  /** B: number of sequences. */
  readonly size: number
  /** L: padded completion length (the longest completion). */
  readonly length: number
  readonly device: Device
  readonly prompts: readonly Int32Array[]
  readonly completions: readonly Int32Array[]
  readonly rewards: Float64Array
  readonly groupIds: Int32Array
  /** Σ mask: counted completion tokens. */
  readonly tokens: number
  /** Sequences with at least one counted token (the Bn of the sequence-mean aggregations). */
  readonly sequences: number
  /** i32 [B, L], u8 [B, L], f32 [B, L] (when log-probs were given), f32 [B]. */
  readonly targets: Tensor
  readonly mask: Tensor
  readonly oldLogp: Tensor | undefined
  readonly advantages: Tensor
  /** Per-group reward statistics of the batch this one was built (or split) from. */
  readonly groupStats: GroupStatistics | null
  /** Tensors that policies derive from this batch (feature ids); disposed with the batch. */
  readonly cache = new Map<string, Tensor>()
  #refLogp: Tensor | undefined
  #host: HostData
  #disposed = false

  private constructor(host: HostData, device: Device, groupStats: GroupStatistics | null) {
    if (typeof host !== 'object' || host === null || !Array.isArray(host.prompts) || !Array.isArray(host.completions)) {
      invalidArg('a batch made by RolloutBatch.fromRollouts', 'new RolloutBatch()', host)
    }
    const B = host.prompts.length
    const L = host.L
    this.#host = host
    this.size = B
    this.length = L
    this.device = device
    this.prompts = Object.freeze(host.prompts)
    this.completions = Object.freeze(host.completions)
    this.rewards = host.rewards
    this.groupIds = host.groupIds
    this.groupStats = groupStats
    const targets = new Int32Array(B * L)
    const mask = new Uint8Array(B * L)
    let tokens = 0
    let sequences = 0
    host.completions.forEach((c, b) => {
      targets.set(c, b * L)
      const m = host.masks?.[b]
      if (m) mask.set(m, b * L)
      else mask.fill(1, b * L, b * L + c.length)
      const n = m ? m.reduce((a, x) => a + x, 0) : c.length
      tokens += n
      if (n > 0) sequences++
    })
    this.tokens = tokens
    this.sequences = sequences
    const made: Tensor[] = []
    try {
      made.push((this.targets = Tensor.from(targets, [B, L], { device })))
      made.push((this.mask = Tensor.from(mask, [B, L], { device })))
      made.push((this.advantages = Tensor.from(host.advantages, [B], { device })))
      this.oldLogp = host.oldLogp ? Tensor.from(host.oldLogp, [B, L], { device }) : undefined
    } catch (error) {
      for (const t of made) t.dispose()
      throw error
    }
  }

  /**
   * Validates rollouts (token ids, lengths, log-probs, rewards, groups of at least 2) and builds the batch,
   * with group-relative advantages (ops.groupAdvantages with the groups' ids).
   */
  static async fromRollouts(rollouts: readonly Rollout[], options: RolloutBatchOptions = {}): Promise<RolloutBatch> {
    const { device, maxLength, vocabSize } = checkOptions(options)
    if (!Array.isArray(rollouts) || rollouts.length === 0) invalidArg('a non-empty array of rollouts', 'rollouts', rollouts)
    const B = rollouts.length
    const prompts: Int32Array[] = []
    const completions: Int32Array[] = []
    const rewards = new Float64Array(B)
    const groupIds = new Int32Array(B)
    const withLogprobs = rollouts[0] !== null && typeof rollouts[0] === 'object' && rollouts[0].logprobs !== undefined
    const logprobs: Float32Array[] = []
    const masks: (Uint8Array | null)[] = []
    rollouts.forEach((r, i) => {
      const what = `rollouts[${i}]`
      if (typeof r !== 'object' || r === null) invalidArg('a {prompt, completion, reward, group} object', what, r)
      prompts.push(tokenIds(r.prompt, `${what}.prompt`, vocabSize))
      const c = tokenIds(r.completion, `${what}.completion`, vocabSize)
      if (c.length === 0) fail('ERR_GRPO_SHAPE', 'a completion of at least 1 token', `${what}.completion`, 'an empty completion')
      if (c.length > maxLength) fail('ERR_GRPO_SHAPE', `a completion of at most ${maxLength} tokens (maxLength)`, `${what}.completion`, `${c.length} tokens`)
      completions.push(c)
      masks.push(tokenMask(r.mask, c.length, `${what}.mask`))
      if (typeof r.reward !== 'number' || !Number.isFinite(r.reward)) fail('ERR_GRPO_NONFINITE', 'a finite number', `${what}.reward`, r.reward)
      rewards[i] = r.reward
      if (!Number.isInteger(r.group) || r.group < -2147483648 || r.group > 2147483647) invalidArg('a 32-bit integer', `${what}.group`, r.group)
      groupIds[i] = r.group
      if ((r.logprobs !== undefined) !== withLogprobs) {
        invalidArg(withLogprobs ? 'logprobs (rollouts[0] has them)' : 'no logprobs (rollouts[0] has none)', `${what}.logprobs`, r.logprobs)
      }
      if (withLogprobs) {
        const lp = r.logprobs as ArrayLike<number>
        const isArrayLike = Array.isArray(lp) || (ArrayBuffer.isView(lp) && !(lp instanceof DataView))
        if (!isArrayLike) invalidArg('an array of log-probs', `${what}.logprobs`, lp)
        if (lp.length !== c.length) fail('ERR_GRPO_SHAPE', `${c.length} log-probs (one per completion token)`, `${what}.logprobs`, `${lp.length} values`)
        for (let k = 0; k < lp.length; k++) {
          // Sampled log-probs are <= 0; a little slack absorbs another engine's rounding.
          if (typeof lp[k] !== 'number' || !Number.isFinite(lp[k]) || lp[k]! > 1e-4) {
            fail('ERR_GRPO_NONFINITE', 'a finite log-prob <= 0', `${what}.logprobs[${k}]`, lp[k])
          }
        }
        logprobs.push(Float32Array.from(lp))
      }
    })
    const sizes = new Map<number, number>()
    for (const g of groupIds) sizes.set(g, (sizes.get(g) ?? 0) + 1)
    for (const [g, n] of sizes) {
      if (n < 2) fail('ERR_GRPO_SHAPE', 'at least 2 completions per group (a single one has no baseline)', `group ${g}`, `${n} completion`)
    }
    const L = Math.max(...completions.map((c) => c.length))
    let oldLogp: Float32Array | null = null
    if (withLogprobs) {
      oldLogp = new Float32Array(B * L)
      logprobs.forEach((lp, b) => oldLogp!.set(lp, b * L))
    }
    const anyMask = masks.some((m) => m !== null)
    const full = (c: Int32Array) => new Uint8Array(c.length).fill(1)
    const hostMasks = anyMask ? masks.map((m, b) => m ?? full(completions[b]!)) : null
    const given = options.advantages
    if (given !== undefined) {
      const values = given?.values
      const isArrayLike = Array.isArray(values) || (ArrayBuffer.isView(values) && !(values instanceof DataView))
      if (!isArrayLike || (values as ArrayLike<number>).length !== B) invalidArg(`${B} advantages (one per rollout)`, 'advantages.values', values)
      const advantages = Float32Array.from(values as ArrayLike<number>)
      const bad = advantages.findIndex((a) => !Number.isFinite(a))
      if (bad >= 0) fail('ERR_GRPO_NONFINITE', 'a finite advantage', `advantages.values[${bad}]`, (values as ArrayLike<number>)[bad])
      return new RolloutBatch({ prompts, completions, L, rewards, groupIds, advantages, oldLogp, masks: hostMasks }, device, given.groupStats ?? null)
    }
    const adv = await groupAdvantages(Float32Array.from(rewards), {
      groupIds,
      baseline: options.baseline,
      scale: options.scale,
      eps: options.eps,
    })
    let advantages: Float32Array
    try {
      advantages = (await adv.advantages.toArray()) as Float32Array
    } finally {
      adv.advantages.dispose()
    }
    const stats: GroupStatistics = { groupIds: adv.groupIds, mean: adv.groupMean, std: adv.groupStd, zeroStdFraction: adv.zeroStdFraction }
    return new RolloutBatch({ prompts, completions, L, rewards, groupIds, advantages, oldLogp, masks: hostMasks }, device, stats)
  }

  /** A batch for supervised (nll) steps: reference completions, advantages 0, no groups or log-probs. */
  static fromExamples(examples: readonly SupervisedExample[], options: RolloutBatchOptions = {}): RolloutBatch {
    const { device, maxLength, vocabSize } = checkOptions(options)
    if (!Array.isArray(examples) || examples.length === 0) invalidArg('a non-empty array of {prompt, completion} examples', 'examples', examples)
    const prompts: Int32Array[] = []
    const completions: Int32Array[] = []
    const masks: (Uint8Array | null)[] = []
    examples.forEach((e, i) => {
      if (typeof e !== 'object' || e === null) invalidArg('a {prompt, completion} object', `examples[${i}]`, e)
      prompts.push(tokenIds(e.prompt, `examples[${i}].prompt`, vocabSize))
      const c = tokenIds(e.completion, `examples[${i}].completion`, vocabSize)
      if (c.length === 0) fail('ERR_GRPO_SHAPE', 'a completion of at least 1 token', `examples[${i}].completion`, 'an empty completion')
      if (c.length > maxLength) fail('ERR_GRPO_SHAPE', `a completion of at most ${maxLength} tokens (maxLength)`, `examples[${i}].completion`, `${c.length} tokens`)
      completions.push(c)
      masks.push(tokenMask(e.mask, c.length, `examples[${i}].mask`))
    })
    const B = examples.length
    const hostMasks = masks.some((m) => m !== null) ? masks.map((m, b) => m ?? new Uint8Array(completions[b]!.length).fill(1)) : null
    const L = Math.max(...completions.map((c) => c.length))
    const host = { prompts, completions, L, rewards: new Float64Array(B), groupIds: Int32Array.from(completions, (_, i) => i), advantages: new Float32Array(B), oldLogp: null, masks: hostMasks }
    return new RolloutBatch(host, device, null)
  }

  get disposed(): boolean {
    return this.#disposed
  }

  /** f32 [B, L] log-probs of the targets under the reference policy, when attached. */
  get refLogp(): Tensor | undefined {
    return this.#refLogp
  }

  /** Attaches reference log-probs (the batch owns them from now on and disposes them with itself). */
  setRefLogp(refLogp: Tensor): void {
    this.#live()
    if (!(refLogp instanceof Tensor)) invalidArg('a Tensor', 'refLogp', refLogp)
    if (refLogp.dtype !== 'f32') fail('ERR_GRPO_DTYPE', 'an f32 tensor', 'refLogp', `a ${refLogp.dtype} tensor`)
    if (refLogp.shape.length !== 2 || refLogp.shape[0] !== this.size || refLogp.shape[1] !== this.length) {
      fail('ERR_GRPO_SHAPE', `shape [${this.size}, ${this.length}]`, 'refLogp', `a tensor of shape [${refLogp.shape.join(', ')}]`)
    }
    if (refLogp.device !== this.device) invalidArg(`a tensor on ${this.device}`, 'refLogp', `a tensor on ${refLogp.device}`)
    if (this.#refLogp !== refLogp) this.#refLogp?.dispose()
    this.#refLogp = refLogp
  }

  /**
   * Cuts the batch into `parts` contiguous micro-batches of nearly equal size, each padded to this batch's L
   * (so aggregations that use L see the same value). Their tensors are new; dispose them separately.
   */
  split(parts: number): RolloutBatch[] {
    this.#live()
    if (!Number.isSafeInteger(parts) || parts < 1 || parts > this.size) invalidArg(`an integer in [1, ${this.size}]`, 'parts', parts)
    if (parts === 1) return [this.#slice(0, this.size)]
    const out: RolloutBatch[] = []
    try {
      for (let p = 0; p < parts; p++) {
        out.push(this.#slice(Math.floor((p * this.size) / parts), Math.floor(((p + 1) * this.size) / parts)))
      }
    } catch (error) {
      for (const b of out) b.dispose()
      throw error
    }
    return out
  }

  #slice(start: number, end: number): RolloutBatch {
    const h = this.#host
    const L = h.L
    return new RolloutBatch(
      {
        prompts: h.prompts.slice(start, end),
        completions: h.completions.slice(start, end),
        L,
        rewards: h.rewards.slice(start, end),
        groupIds: h.groupIds.slice(start, end),
        advantages: h.advantages.slice(start, end),
        oldLogp: h.oldLogp ? h.oldLogp.slice(start * L, end * L) : null,
        masks: h.masks ? h.masks.slice(start, end) : null,
      },
      this.device,
      this.groupStats,
    )
  }

  /** Host copy of the advantages (one per sequence). */
  advantageValues(): Float32Array {
    return this.#host.advantages.slice()
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    for (const t of [this.targets, this.mask, this.oldLogp, this.advantages, this.#refLogp, ...this.cache.values()]) t?.dispose()
    this.cache.clear()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose()
  }

  #live(): void {
    if (this.#disposed) throw new GrpoError('Expected a live RolloutBatch for this operation but received a disposed one', 'ERR_GRPO_DISPOSED')
  }
}

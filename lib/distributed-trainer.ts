/**
 * Data-parallel training for the Trainer: what a rank does differently from a lone process, kept here so that the
 * Trainer itself only asks "which share is mine" and "what is the global value".
 *
 * - Every rank receives the same global batch of prompts and samples whole groups from its contiguous share, with
 *   the random streams the whole batch would give those rows (SampleOptions.streamOffset), so the ranks together
 *   draw exactly the completions one process would.
 * - Rewards (a few numbers) are gathered so that advantages, with any baseline and `scale` (including 'batch'),
 *   are computed over the global batch; the loss normalizer (tokens, sequences, the longest length) is global, so
 *   the sum of the ranks' gradients is the one-process gradient.
 * - Gradients are summed across ranks in buckets (ZeRO-0) as soon as a policy reports them complete
 *   (BackwardOptions.onGradients), overlapping the rest of its backward; or (ZeRO-1, llm.c's choice) reduce-scattered
 *   so each rank updates only its shard of the parameters with its shard of the AdamW moments, and the updated
 *   shards are all-gathered back into every rank's parameters.
 * - Parameters are broadcast from rank 0 before the first step, so the ranks start equal and (all-reduced
 *   gradients, identical updates) stay equal.
 */
import * as distributed from './distributed.js'
import { GrpoError, expectObject, fail, invalidArg } from './errors.js'
import { adamw, gradNorm, zeroTensors } from './model-ops.js'
import { groupAdvantages } from './ops.js'
import { ADAMW_STEP_SCHEMA, AdamW, type AdamWOptions, type AdamWStepOverrides, type OptimizerStepResult } from './optimizer.js'
import { numberOption, parseOptions, valueOption, type OptionSpec, type Schema } from './options.js'
import type { BackwardOptions, Policy, PolicyParameter } from './policy.js'
import type { GroupStatistics } from './rollout-batch.js'
import { Tensor, type TensorData } from './tensor.js'

export interface DataParallelOptions {
  /**
   * 0 (default): every rank keeps the whole AdamW state and gradients are all-reduced. 1: ZeRO-1, the AdamW
   * moments (and an f32 copy of the parameters) are sharded across ranks: 1/size of the optimizer memory each.
   */
  zero?: 0 | 1
  /** Gradient bucket size in MiB for the all-reduce (ZeRO-0), default 25. */
  bucketMB?: number
  /** Seconds a collective may wait for the other ranks (distributed.init's timeout). */
  timeout?: number
}

const DATA_PARALLEL_SCHEMA: Schema<DataParallelOptions> = {
  zero: valueOption<0 | 1>('0 or 1', (v) => v === 0 || v === 1, 0),
  bucketMB: numberOption('a number of MiB > 0', (v) => v > 0, 25) as OptionSpec<number>,
  timeout: numberOption('a number of seconds > 0', (v) => v > 0) as OptionSpec<number>,
}

/** A rank's contiguous share [start, end) of `count` items (the first ranks take the larger shares). */
export function shareOf(count: number, rank: number, size: number): { start: number; end: number } {
  return { start: Math.floor((rank * count) / size), end: Math.floor(((rank + 1) * count) / size) }
}

export class DataParallel {
  readonly rank: number
  readonly size: number
  readonly zero: 0 | 1
  readonly bucketBytes: number
  #synced = false
  #optimizer: DataParallelAdamW | null = null

  private constructor(rank: number, size: number, o: DataParallelOptions) {
    // Made by fromOption; a direct call (new on the class) gets the same errors as every export.
    if (!Number.isSafeInteger(size) || size < 1) invalidArg('a world size >= 1', 'size', size)
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= size) invalidArg(`a rank in [0, ${size})`, 'rank', rank)
    expectObject(o, 'DataParallel options')
    this.rank = rank
    this.size = size
    this.zero = o.zero!
    this.bucketBytes = Math.max(1, Math.round(o.bucketMB! * 1024 * 1024))
  }

  /**
   * From the Trainer's `distributed` option: false → none; true or options → data-parallel (a world of one when
   * the process was started alone); undefined → data-parallel exactly when a launcher started several processes.
   */
  static fromOption(option: boolean | DataParallelOptions | undefined): DataParallel | null {
    if (option === false) return null
    if (option === undefined && !distributed.launched()) return null
    if (option !== undefined && option !== true && (typeof option !== 'object' || option === null)) {
      invalidArg('a boolean or data-parallel options ({ zero, bucketMB, timeout })', 'distributed', option)
    }
    const o = parseOptions(DATA_PARALLEL_SCHEMA, typeof option === 'object' ? option : {}, 'distributed options')
    const world = distributed.init(o.timeout === undefined ? {} : { timeout: o.timeout })
    return new DataParallel(world.rank, world.size, o)
  }

  /** Rank 0 writes checkpoints, metrics and charts. */
  get writer(): boolean {
    return this.rank === 0
  }

  /** This rank's share of a global batch that every rank received whole. */
  share<T>(items: readonly T[], what: string): { items: T[]; start: number } {
    if (items.length < this.size) {
      fail('ERR_GRPO_SHAPE', `at least ${this.size} ${what} (one per rank of the data-parallel world)`, what, `${items.length}`)
    }
    const { start, end } = shareOf(items.length, this.rank, this.size)
    return { items: items.slice(start, end), start }
  }

  /** Broadcasts the parameters of the policy (and of a given reference) from rank 0, once (again after markStale). */
  async syncParameters(policies: readonly (Policy | null | undefined)[]): Promise<void> {
    if (this.#synced) return
    const values = policies.flatMap((p) => (p ? p.parameters().map((q) => q.value) : []))
    if (values.length > 0 && this.size > 1) await distributed.broadcast(values, { root: 0 })
    this.#synced = true
  }

  /** The parameters changed on this rank alone (a checkpoint was loaded): broadcast them again before the next step. */
  markStale(): void {
    this.#synced = false
  }

  /** Sums of a few numbers across ranks. */
  async sum(values: readonly number[]): Promise<number[]> {
    return this.size === 1 ? [...values] : Array.from(await distributed.allReduceValues(values))
  }

  /** Every rank's value, by rank. */
  async gather<T>(value: T): Promise<T[]> {
    return this.size === 1 ? [value] : await distributed.allGatherJSON(value)
  }

  /**
   * Runs `write` on rank 0 only, then makes every rank agree on the outcome: when rank 0 failed, every rank throws
   * its error (so no rank carries on alone, or waits for it at the next collective).
   */
  async onWriter(write: () => Promise<void>): Promise<void> {
    let message: string | null = null
    let error: unknown
    if (this.writer) {
      try {
        await write()
      } catch (e) {
        error = e
        message = (e as Error).message ?? String(e)
      }
    }
    const outcome = await this.gather(message)
    if (error) throw error
    if (outcome[0] !== null) throw new GrpoError(`Expected rank 0 to write the files but it failed: ${outcome[0]}`, 'ERR_GRPO_DIST')
  }

  /**
   * Advantages over the global batch. Each rank passes its rollouts' rewards, group ids (unique within the rank)
   * and reward reasons; every rank computes the same advantages for the whole batch (groups numbered in order of
   * first appearance, rank by rank, as one process numbers them) and keeps its own.
   */
  async advantages(
    rewards: readonly number[],
    groups: readonly number[],
    reasons: Record<string, number>,
    options: { baseline: 'mean' | 'leave-one-out'; scale: 'group' | 'batch' | 'none'; eps: number },
  ): Promise<{ advantages: { values: Float32Array; groupStats: GroupStatistics }; reasons: Record<string, number> }> {
    rewards.forEach((r, i) => {
      if (typeof r !== 'number' || !Number.isFinite(r)) fail('ERR_GRPO_NONFINITE', 'a finite number', `rollouts[${i}].reward`, r)
      if (!Number.isInteger(groups[i])) invalidArg('a 32-bit integer', `rollouts[${i}].group`, groups[i])
    })
    const parts = await this.gather({ rewards, groups, reasons })
    const allRewards: number[] = []
    const ids: number[] = []
    const numbering = new Map<string, number>()
    let start = 0
    parts.forEach((p, k) => {
      if (k === this.rank) start = allRewards.length
      p.rewards.forEach((r, i) => {
        const key = `${k}:${p.groups[i]}`
        if (!numbering.has(key)) numbering.set(key, numbering.size)
        allRewards.push(r)
        ids.push(numbering.get(key)!)
      })
    })
    const adv = await groupAdvantages(Float32Array.from(allRewards), { groupIds: ids, baseline: options.baseline, scale: options.scale, eps: options.eps })
    let values: Float32Array
    try {
      values = (await adv.advantages.toArray()) as Float32Array
    } finally {
      adv.advantages.dispose()
    }
    const merged: Record<string, number> = {}
    for (const p of parts) for (const [k, v] of Object.entries(p.reasons)) merged[k] = (merged[k] ?? 0) + v
    return {
      advantages: {
        values: values.slice(start, start + rewards.length),
        groupStats: { groupIds: adv.groupIds, mean: adv.groupMean, std: adv.groupStd, zeroStdFraction: adv.zeroStdFraction },
      },
      reasons: merged,
    }
  }

  /** The AdamW the Trainer uses: gradients summed across ranks before each update (ZeRO-0), or sharded (ZeRO-1). */
  createOptimizer(params: () => PolicyParameter[], options: AdamWOptions = {}): AdamW {
    this.#optimizer = new DataParallelAdamW(this, params, options)
    return this.#optimizer
  }

  /** What the Trainer passes to the backward that completes a pass's gradients: bucket by bucket reduction. */
  backwardOptions(): BackwardOptions | undefined {
    const o = this.#optimizer
    if (!o || this.zero === 1 || this.size === 1) return undefined
    return { onGradients: (names) => o.gradientsReady(names) }
  }

  /** The optimizer state to save: the moments of every parameter, whole (gathered from the shards under ZeRO-1). */
  async optimizerState(optimizer: AdamW): Promise<{ tensors: Record<string, Tensor>; owned: boolean }> {
    if (optimizer instanceof DataParallelAdamW && this.zero === 1) return { tensors: await optimizer.gatherState(), owned: true }
    return { tensors: optimizer.stateTensors(), owned: false }
  }
}

type Trainable = PolicyParameter & { grad: Tensor }

interface Bucket {
  names: Set<string>
  grads: Tensor[]
}

interface Shards {
  /** The trainable tensors this layout was made for (a loaded checkpoint replaces them). */
  values: Tensor[]
  size: number
  pad: number
  param: Tensor
  grad: Tensor
  m: Tensor
  v: Tensor
  padGrad: Tensor | null
  padParam: Tensor | null
}

/**
 * AdamW with the gradients of every rank. ZeRO-0: gradients all-reduced in buckets (those a policy reported
 * complete are already in flight), then the ordinary AdamW step, identical on every rank. ZeRO-1: gradients
 * reduce-scattered into this rank's shard of the concatenated parameters; the global norm from the shards' norms;
 * one fused AdamW step on the shard; the shards all-gathered back into the parameters.
 */
export class DataParallelAdamW extends AdamW {
  #dp: DataParallel
  #params: () => PolicyParameter[]
  // ZeRO-0
  #buckets: Bucket[] = []
  #bucketKey = ''
  #launched: Promise<void>[] = []
  #ready = new Set<string>()
  // ZeRO-1
  #shards: Shards | null = null
  #pending: { m: Float32Array; v: Float32Array } | null = null
  #zeroStep = 0

  constructor(dp: DataParallel, params: () => PolicyParameter[], options: AdamWOptions) {
    super(params, options)
    this.#dp = dp
    this.#params = params
  }

  override get stepCount(): number {
    return this.#dp.zero === 1 ? this.#zeroStep : super.stepCount
  }

  #trainable(): Trainable[] {
    const out = this.#params().filter((p): p is Trainable => p.grad !== null)
    if (out.length === 0) throw new GrpoError('Expected at least one parameter with a gradient for the optimizer but received none (a frozen policy?)', 'ERR_GRPO_INVALID_ARG')
    return out
  }

  // ---- ZeRO-0: buckets ----------------------------------------------------------------------------------

  /** Buckets of about bucketBytes, in reverse parameter order (the order a backward usually finishes them). */
  #prepareBuckets(params: Trainable[]): void {
    const key = params.map((p) => `${p.name}:${p.grad.size}`).join('|')
    if (key === this.#bucketKey && this.#buckets.every((b) => b.grads.every((g) => !g.disposed))) {
      // The same layout; the grad tensors may still be new objects (a loaded policy).
      const byName = new Map(params.map((p) => [p.name, p.grad]))
      for (const b of this.#buckets) b.grads = [...b.names].map((n) => byName.get(n)!)
      return
    }
    this.#buckets = []
    let current: Bucket = { names: new Set(), grads: [] }
    let bytes = 0
    for (const p of [...params].reverse()) {
      const size = p.grad.size * 4
      if (current.grads.length > 0 && bytes + size > this.#dp.bucketBytes) {
        this.#buckets.push(current)
        current = { names: new Set(), grads: [] }
        bytes = 0
      }
      current.names.add(p.name)
      current.grads.push(p.grad)
      bytes += size
    }
    if (current.grads.length > 0) this.#buckets.push(current)
    this.#bucketKey = key
  }

  /** Launches, in bucket order, every bucket whose gradients are all complete. */
  gradientsReady(names: readonly string[]): void {
    if (this.#launched.length === 0 && this.#ready.size === 0) this.#prepareBuckets(this.#trainable())
    for (const n of names) this.#ready.add(n)
    while (this.#launched.length < this.#buckets.length) {
      const b = this.#buckets[this.#launched.length]!
      if (![...b.names].every((n) => this.#ready.has(n))) break
      this.#launch(b)
    }
  }

  #launch(b: Bucket): void {
    const p = distributed.allReduce(b.grads)
    p.catch(() => {}) // awaited in #reduceAll; this only keeps an early failure from being reported as unhandled
    this.#launched.push(p)
  }

  async #reduceAll(params: Trainable[]): Promise<void> {
    if (this.#launched.length === 0) this.#prepareBuckets(params)
    while (this.#launched.length < this.#buckets.length) this.#launch(this.#buckets[this.#launched.length]!)
    const launched = this.#launched
    this.#launched = []
    this.#ready.clear()
    await Promise.all(launched)
  }

  override async step(options: AdamWStepOverrides = {}): Promise<OptimizerStepResult> {
    if (this.#dp.zero === 0) {
      if (this.#dp.size > 1) await this.#reduceAll(this.#trainable())
      return super.step(options)
    }
    return this.#zeroStepOnce(options)
  }

  // ---- ZeRO-1 -------------------------------------------------------------------------------------------

  async #layout(params: Trainable[]): Promise<Shards> {
    const s = this.#shards
    if (s && s.values.length === params.length && s.values.every((v, i) => v === params[i]!.value && !v.disposed)) return s
    const W = this.#dp.size
    const total = params.reduce((n, p) => n + p.value.size, 0)
    const size = Math.ceil(total / W)
    const pad = size * W - total
    const start = this.#dp.rank * size
    const device = params[0]!.value.device
    // This rank's slice of the concatenated parameters, read whenever the parameter tensors change (first step,
    // a loaded checkpoint). The moments: those of a loaded checkpoint, else the current shard's (same layout).
    const flat = new Float32Array(size * W)
    let at = 0
    for (const p of params) {
      flat.set((await p.value.toArray()) as Float32Array, at)
      at += p.value.size
    }
    const m = new Float32Array(size)
    const v = new Float32Array(size)
    if (this.#pending) {
      m.set(this.#pending.m.subarray(start, start + size))
      v.set(this.#pending.v.subarray(start, start + size))
    } else if (s && s.size === size) {
      m.set((await s.m.toArray()) as Float32Array)
      v.set((await s.v.toArray()) as Float32Array)
    }
    const made: Tensor[] = []
    const mk = (data: Float32Array) => {
      const t = Tensor.from(data, [data.length], { device })
      made.push(t)
      return t
    }
    try {
      const next: Shards = {
        values: params.map((p) => p.value),
        size,
        pad,
        param: mk(flat.slice(start, start + size)),
        grad: mk(new Float32Array(size)),
        m: mk(m),
        v: mk(v),
        padGrad: pad > 0 ? mk(new Float32Array(pad)) : null,
        padParam: pad > 0 ? mk(new Float32Array(pad)) : null,
      }
      if (s) this.#disposeShards(s)
      this.#shards = next
      this.#pending = null
      return next
    } catch (error) {
      for (const t of made) t.dispose()
      throw error
    }
  }

  async #zeroStepOnce(options: AdamWStepOverrides): Promise<OptimizerStepResult> {
    const o = parseOptions(ADAMW_STEP_SCHEMA, options, 'AdamW step options')
    const params = this.#trainable()
    const s = await this.#layout(params)
    const grads = params.map((p) => p.grad)
    await distributed.reduceScatter(s.padGrad ? [...grads, s.padGrad] : grads, s.grad)
    await zeroTensors(grads)
    const local = await gradNorm([s.grad])
    const [squares] = await this.#dp.sum([local.norm * local.norm])
    const norm = Math.sqrt(squares!)
    if (!Number.isFinite(norm)) {
      await zeroTensors([s.grad])
      throw new GrpoError(`Expected a finite gradient norm for the optimizer step but received ${norm}`, 'ERR_GRPO_NONFINITE')
    }
    // The clip coefficient of modelOps.gradNorm, from the global norm.
    const coef = this.maxGradNorm !== null && norm > this.maxGradNorm ? this.maxGradNorm / (norm + 1e-6) : 1
    this.#zeroStep++
    await adamw(
      { params: [s.param], grads: [s.grad], m: [s.m], v: [s.v] },
      {
        lr: o.lr ?? this.lr,
        beta1: this.beta1,
        beta2: this.beta2,
        eps: this.eps,
        weightDecay: this.weightDecay,
        step: this.#zeroStep,
        gradScale: coef,
        zeroGrad: true,
      },
    )
    const values = params.map((p) => p.value)
    await distributed.allGather(s.param, s.padParam ? [...values, s.padParam] : values)
    return { gradNorm: norm, clipCoef: coef }
  }

  /** ZeRO-1: the whole moments (`m.<param>`, `v.<param>`), gathered from every rank's shard; the caller disposes them. */
  async gatherState(): Promise<Record<string, Tensor>> {
    const out: Record<string, Tensor> = {}
    const s = this.#shards
    if (!s || this.#zeroStep === 0) return out
    const params = this.#trainable()
    const device = params[0]!.value.device
    const made: Tensor[] = []
    try {
      for (const which of ['m', 'v'] as const) {
        const whole = params.map((p) => {
          const t = Tensor.zeros(p.value.shape, { device })
          made.push(t)
          out[`${which}.${p.name}`] = t
          return t
        })
        const pad = s.pad > 0 ? Tensor.zeros([s.pad], { device }) : null
        if (pad) made.push(pad)
        await distributed.allGather(s[which], pad ? [...whole, pad] : whole)
        pad?.dispose()
      }
    } catch (error) {
      for (const t of made) t.dispose()
      throw error
    }
    return out
  }

  override stateTensors(): Record<string, Tensor> {
    if (this.#dp.zero === 1) {
      throw new GrpoError('Expected await optimizer.gatherState() for the moments of a ZeRO-1 optimizer (they are sharded across ranks) but received stateTensors()', 'ERR_GRPO_INVALID_ARG')
    }
    return super.stateTensors()
  }

  override loadState(tensors: Record<string, { dtype: string; shape: number[]; data: TensorData }>, stepCount: number): void {
    if (this.#dp.zero === 0) {
      super.loadState(tensors, stepCount)
      return
    }
    if (!Number.isSafeInteger(stepCount) || stepCount < 0) invalidArg('a non-negative integer', 'stepCount', stepCount)
    const params = this.#trainable()
    const total = params.reduce((n, p) => n + p.value.size, 0)
    const m = new Float32Array(total)
    const v = new Float32Array(total)
    let at = 0
    for (const p of params) {
      const tm = tensors[`m.${p.name}`]
      const tv = tensors[`v.${p.name}`]
      if (!tm || !tv) {
        if (stepCount !== 0) invalidArg(`moments m.${p.name} and v.${p.name}`, 'optimizer state', Object.keys(tensors).join(', ') || 'no tensors')
      } else {
        for (const [t, what] of [[tm, `m.${p.name}`], [tv, `v.${p.name}`]] as const) {
          if (t.dtype !== 'f32' || t.shape.join() !== p.value.shape.join()) {
            invalidArg(`an f32 tensor of shape [${p.value.shape.join(', ')}]`, what, `a ${t.dtype} tensor of shape [${t.shape.join(', ')}]`)
          }
        }
        m.set(tm.data as Float32Array, at)
        v.set(tv.data as Float32Array, at)
      }
      at += p.value.size
    }
    // Applied at the next step, when the (possibly reloaded) parameters are sharded again.
    if (this.#shards) this.#disposeShards(this.#shards)
    this.#shards = null
    this.#pending = { m, v }
    this.#zeroStep = stepCount
  }

  #disposeShards(s: Shards): void {
    for (const t of [s.param, s.grad, s.m, s.v, s.padGrad, s.padParam]) t?.dispose()
  }

  override dispose(): void {
    if (this.#shards) this.#disposeShards(this.#shards)
    this.#shards = null
    super.dispose()
  }
}

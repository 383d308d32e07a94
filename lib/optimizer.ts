/**
 * AdamW over a policy's parameters, on the policy's device: one global-norm pass (model-ops gradNorm), then one
 * fused AdamW pass that reads the gradient scaled by the clip coefficient and zeroes it for the next step. The
 * moments live in f32 tensors beside the parameters and can be saved and restored (checkpoints).
 */
import { GrpoError, invalidArg } from './errors.js'
import { adamw, gradNorm, zeroTensors } from './model-ops.js'
import { ADAMW_SCHEMA, parseOptions, type AdamWOptions, type Schema } from './options.js'
import type { PolicyParameter } from './policy.js'
import { Tensor, type TensorData } from './tensor.js'

export type { AdamWOptions } from './options.js'

/** Options of one step: the learning rate for this step only (default: the optimizer's). */
export interface AdamWStepOverrides {
  lr?: number
}
export const ADAMW_STEP_SCHEMA: Schema<AdamWStepOverrides> = { lr: { ...ADAMW_SCHEMA.lr, default: undefined } }

export interface OptimizerStepResult {
  /** Global L2 norm of the gradients before clipping. */
  gradNorm: number
  /** The factor the gradients were scaled by (1 when not clipped). */
  clipCoef: number
}

export class AdamW implements Disposable {
  readonly lr: number
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  readonly maxGradNorm: number | null
  #params: () => PolicyParameter[]
  #state = new Map<string, { m: Tensor; v: Tensor }>()
  #step = 0
  #disposed = false

  /** `params` is called at every step, so a policy that replaces its tensors (load) stays in sync. */
  constructor(params: () => PolicyParameter[], options: AdamWOptions = {}) {
    if (typeof params !== 'function') invalidArg('a function returning the parameters', 'params', params)
    const o = parseOptions(ADAMW_SCHEMA, options, 'AdamW options')
    this.#params = params
    this.lr = o.lr!
    this.beta1 = o.beta1!
    this.beta2 = o.beta2!
    this.eps = o.eps!
    this.weightDecay = o.weightDecay!
    this.maxGradNorm = o.maxGradNorm ?? null
  }

  /** Steps taken so far (the bias correction uses stepCount + 1 for the next). */
  get stepCount(): number {
    return this.#step
  }

  #trainable(): (PolicyParameter & { grad: Tensor })[] {
    const params = this.#params()
    const out = params.filter((p): p is PolicyParameter & { grad: Tensor } => p.grad !== null)
    if (out.length === 0) throw new GrpoError('Expected at least one parameter with a gradient for the optimizer but received none (a frozen policy?)', 'ERR_GRPO_INVALID_ARG')
    return out
  }

  #moments(p: PolicyParameter): { m: Tensor; v: Tensor } {
    let s = this.#state.get(p.name)
    if (!s || s.m.disposed || s.m.shape.join() !== p.value.shape.join()) {
      s?.m.dispose()
      s?.v.dispose()
      s = { m: Tensor.zeros(p.value.shape, { device: p.value.device }), v: Tensor.zeros(p.value.shape, { device: p.value.device }) }
      this.#state.set(p.name, s)
    }
    return s
  }

  /**
   * Clips by global norm and applies one AdamW step at learning rate `lr` (default: the constructor's), then
   * zeroes the gradients. A non-finite gradient norm skips the update (gradients are zeroed) and throws
   * ERR_GRPO_NONFINITE.
   */
  async step(options: AdamWStepOverrides = {}): Promise<OptimizerStepResult> {
    this.#live()
    const o = parseOptions(ADAMW_STEP_SCHEMA, options, 'AdamW step options')
    const params = this.#trainable()
    const grads = params.map((p) => p.grad)
    const norm = await gradNorm(grads, this.maxGradNorm === null ? {} : { maxNorm: this.maxGradNorm })
    if (!Number.isFinite(norm.norm)) {
      await zeroTensors(grads)
      throw new GrpoError(`Expected a finite gradient norm for the optimizer step but received ${norm.norm}`, 'ERR_GRPO_NONFINITE')
    }
    const state = params.map((p) => this.#moments(p))
    this.#step++
    await adamw(
      { params: params.map((p) => p.value), grads, m: state.map((s) => s.m), v: state.map((s) => s.v) },
      {
        lr: o.lr ?? this.lr,
        beta1: this.beta1,
        beta2: this.beta2,
        eps: this.eps,
        weightDecay: this.weightDecay,
        step: this.#step,
        gradScale: norm.coef,
        zeroGrad: true,
      },
    )
    return { gradNorm: norm.norm, clipCoef: norm.coef }
  }

  /** The moments as named tensors (`m.<param>`, `v.<param>`) for a checkpoint. */
  stateTensors(): Record<string, Tensor> {
    this.#live()
    const out: Record<string, Tensor> = {}
    for (const [name, s] of this.#state) {
      out[`m.${name}`] = s.m
      out[`v.${name}`] = s.v
    }
    return out
  }

  /** Restores the moments and the step count saved by stateTensors(). */
  loadState(tensors: Record<string, { dtype: string; shape: number[]; data: TensorData }>, stepCount: number): void {
    this.#live()
    if (!Number.isSafeInteger(stepCount) || stepCount < 0) invalidArg('a non-negative integer', 'stepCount', stepCount)
    const next = new Map<string, { m: Tensor; v: Tensor }>()
    try {
      for (const p of this.#trainable()) {
        const m = tensors[`m.${p.name}`]
        const v = tensors[`v.${p.name}`]
        if (!m || !v) {
          if (stepCount === 0) continue
          invalidArg(`moments m.${p.name} and v.${p.name}`, 'optimizer state', Object.keys(tensors).join(', ') || 'no tensors')
        }
        for (const [t, what] of [[m, `m.${p.name}`], [v, `v.${p.name}`]] as const) {
          if (t.dtype !== 'f32' || t.shape.join() !== p.value.shape.join()) {
            invalidArg(`an f32 tensor of shape [${p.value.shape.join(', ')}]`, what, `a ${t.dtype} tensor of shape [${t.shape.join(', ')}]`)
          }
        }
        const device = p.value.device
        const mt = Tensor.from(m.data, m.shape, { device })
        try {
          next.set(p.name, { m: mt, v: Tensor.from(v.data, v.shape, { device }) })
        } catch (error) {
          mt.dispose()
          throw error
        }
      }
    } catch (error) {
      for (const s of next.values()) {
        s.m.dispose()
        s.v.dispose()
      }
      throw error
    }
    this.#disposeState()
    this.#state = next
    this.#step = stepCount
  }

  #disposeState(): void {
    for (const s of this.#state.values()) {
      s.m.dispose()
      s.v.dispose()
    }
    this.#state.clear()
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    this.#disposeState()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  #live(): void {
    if (this.#disposed) throw new GrpoError('Expected a live optimizer for this operation but received a disposed AdamW', 'ERR_GRPO_DISPOSED')
  }
}
